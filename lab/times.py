"""Time values of the lab: one rule for what a time given by a user or a row means.

Naive datetimes are UTC (the lake stores UTC; a naive value is never read as local
time); ISO text and dates are accepted where a user types a time; integers are
already microseconds since the epoch (the unit of the lake's timestamps).

>>> import datetime as dt
>>> epoch_us(dt.datetime(1970, 1, 1, 0, 0, 1)), epoch_us(1_500), epoch_us("1970-01-01T00:00:02Z")
(1000000, 1500, 2000000)
>>> to_utc("2026-11-22 12:00"), to_utc(dt.date(2026, 11, 22))
(datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.timezone.utc), datetime.datetime(2026, 11, 22, 0, 0, tzinfo=datetime.timezone.utc))
"""

from __future__ import annotations

import datetime as dt
from typing import Any

__all__ = ["UTC", "EPOCH", "to_utc", "epoch_us"]

UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def to_utc(v: dt.datetime | dt.date | str | None) -> dt.datetime | None:
    """A datetime in UTC: naive values are UTC, dates are midnight UTC, text is ISO 8601 (``Z`` allowed)."""
    if v is None:
        return None
    if isinstance(v, str):
        v = dt.datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
    elif not isinstance(v, dt.datetime):
        v = dt.datetime(v.year, v.month, v.day)
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)


def epoch_us(v: Any) -> int:
    """Microseconds since the epoch of an int (taken as µs already), a datetime, a date or ISO text."""
    if isinstance(v, int):
        return v
    if isinstance(v, (dt.datetime, dt.date, str)):
        return (to_utc(v) - EPOCH) // dt.timedelta(microseconds=1)  # type: ignore[operator]
    return int(v)
