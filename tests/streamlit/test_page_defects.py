"""Defects found by a new user on the dashboards (issue 16), each pinned by a test.

Reference values come from the rows written here, computed with plain Python.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
from st_helpers import metrics

T0 = dt.datetime(2026, 11, 22, 12, tzinfo=dt.timezone.utc)


def _risk_rows_with_two_positions_on_one_key(ts: dt.datetime) -> pl.DataFrame:
    """A snapshot where the paper runner and the positions file both hold ``binance:BTC``."""
    rows = [(ts, "portfolio", "total", "equity", 100_000.0, ""),
            (ts, "portfolio", "total", "total_pnl", 5.0, "")]
    for exposure in (20_000.0, 1_000.0):  # config position, then paper position
        rows += [(ts, "position", "binance:BTC", m, v, "") for m, v in
                 (("mark", 100_000.0), ("exposure", exposure), ("unrealized_pnl", 1.0), ("total_pnl", 2.0))]
    for k in ("asset_notional:BTC", "asset_notional:BTC"):
        rows += [(ts, "limit", k, "value", 21_000.0, "ok"), (ts, "limit", k, "limit", 50_000.0, "ok"),
                 (ts, "limit", k, "breached", 0.0, "ok")]
    return pl.DataFrame(rows, schema=["ts", "scope", "key", "metric", "value", "detail"], orient="row")


def test_risk_monitor_shows_two_positions_sharing_a_key_instead_of_a_compute_error(tmp_path, app_on):
    from lab.lake import Lake

    lake = Lake(tmp_path / "lake")
    lake.append("risk_snapshots", _risk_rows_with_two_positions_on_one_key(T0))

    at = app_on(str(lake.root), "pages/risk_monitor.py")  # app_on asserts no exception

    assert metrics(at)["Equity"] == "100,000.00"
    pos = next(d.value for d in at.dataframe if "exposure" in d.value.columns and "mark" in d.value.columns)
    assert sorted(pos["exposure"].tolist()) == [1_000.0, 20_000.0]
    assert list(pos["key"]) == ["binance:BTC", "binance:BTC"]
