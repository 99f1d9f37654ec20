"""Holes in the trade tape, from the recorder's ``feed_events``.

The recorder writes its life into ``feed_events`` (``recorders/runtime.py``):
``start``/``stop`` (venue ``recorder``; ``start`` lists ``venue[SYMBOLS]``),
``connect``/``reconnect`` per venue connection, and one ``backfill`` row per
hole it found after a restart, reconnect or live trade-id gap
(``recorders/backfill.py``): the trade ids asked for, the rows the venue's REST
history still had, and what remains missing.

* :func:`holes` / :func:`hole_summary`: the ``backfill`` rows as a table, and per
  venue and symbol how many holes were closed and how many trades are lost.
* :func:`ranges`: the time ranges with no live data per venue and symbol and why
  (``down``, ``disconnected``, ``backfilled``, ``not recoverable``): what
  ``lab status`` and the Feed health page show.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import polars as pl

from lab.times import to_utc

if TYPE_CHECKING:
    from lab.lake import Lake

__all__ = ["holes", "hole_summary", "ranges", "lake_ranges", "overlapping", "RANGE_SCHEMA", "WHY"]

#: a silence backfilled by time (recorders/backfill.py ``QuietFill.detail``): exchange times,
#: the trades it added, and whether the venue's recent window reached back to its start
_TIME_RE = re.compile(r"^time (\S+?)\.\.(\S+) asked \([^)]*\); (?:found \d+ over REST in \d+ request\(s\), (\d+) new; )?"
                      r"(?:.*?)(hole closed|hole may remain: (.*))$")
_RE = (r"ids (\d+)\.\.(\d+) asked \((\d+)\); (?:found (\d+)|failed)[^;]*;.*?"
       r"(hole closed|hole remains: (\d+) trade\(s\) missing, ids (\d+)\.\.(\d+))")


def holes(feed_events: pl.LazyFrame) -> pl.LazyFrame:
    """One row per backfill: ``ts_local, venue, symbol, lo, hi, asked, found, missing, status``.

    ``status`` is ``closed`` (every trade fetched) or ``remains`` (``missing`` trades,
    ids ``miss_lo..miss_hi``, are not recoverable from the venue). A silence backfilled by
    time (a venue quiet with its connection open) has no ids: ``lo``, ``hi``, ``asked`` and
    ``miss_*`` are null, ``found`` counts the trades it added, and ``missing`` is null when
    the hole may remain (the venue cannot say how many trades it lacks).

    >>> ev = pl.LazyFrame({"ts_local": [1, 2], "venue": ["binance", "okx"], "symbol": ["BTC-USDT"] * 2,
    ...     "kind": ["backfill"] * 2, "detail": [
    ...     "ids 10..19 asked (10); found 10 over REST in 1 request(s); hole closed",
    ...     "ids 5..9 asked (5); found 2 over REST in 1 request(s); hole remains: 3 trade(s) missing, ids 5..7"]})
    >>> holes(ev).select("venue", "asked", "found", "missing", "status").collect().rows()
    [('binance', 10, 10, 0, 'closed'), ('okx', 5, 2, 3, 'remains')]
    >>> quiet = pl.LazyFrame({"ts_local": [3], "venue": ["bybit"], "symbol": ["BTC-USDT"], "kind": ["backfill"],
    ...     "detail": ["time 2026-01-01T00:00:02.000000Z..2026-01-01T00:00:06.500000Z asked (4.5 s, a silence "
    ...     "without reconnect); found 60 over REST in 1 request(s), 7 new; hole may remain: the venue's recent "
    ...     "window reaches back only to 2026-01-01T00:00:04.000000Z, trades before it may be missing"]})
    >>> holes(quiet).select("venue", "asked", "found", "missing", "status").collect().rows()
    [('bybit', None, 7, None, 'remains')]
    """
    d = pl.col("detail")
    g = lambda i: d.str.extract(_RE, i)  # noqa: E731
    q = lambda i: d.str.extract(_TIME_RE.pattern, i)  # noqa: E731
    fills = feed_events.filter(pl.col("kind") == "backfill")
    by_id = (fills.filter(d.str.contains(_RE))
             .select("ts_local", "venue", "symbol",
                     lo=g(1).cast(pl.Int64), hi=g(2).cast(pl.Int64), asked=g(3).cast(pl.Int64),
                     found=g(4).cast(pl.Int64).fill_null(0),
                     missing=g(6).cast(pl.Int64).fill_null(0),
                     miss_lo=g(7).cast(pl.Int64), miss_hi=g(8).cast(pl.Int64),
                     status=pl.when(g(5) == "hole closed").then(pl.lit("closed")).otherwise(pl.lit("remains"))))
    # a silence backfilled by time: no ids; how many trades it lacks is unknown when it remains
    closed = q(4) == "hole closed"
    by_time = (fills.filter(d.str.contains(_TIME_RE.pattern))
               .select("ts_local", "venue", "symbol",
                       lo=pl.lit(None, pl.Int64), hi=pl.lit(None, pl.Int64), asked=pl.lit(None, pl.Int64),
                       found=q(3).cast(pl.Int64).fill_null(0),
                       missing=pl.when(closed).then(pl.lit(0, pl.Int64)).otherwise(pl.lit(None, pl.Int64)),
                       miss_lo=pl.lit(None, pl.Int64), miss_hi=pl.lit(None, pl.Int64),
                       status=pl.when(closed).then(pl.lit("closed")).otherwise(pl.lit("remains"))))
    return pl.concat([by_id, by_time]).sort("ts_local", maintain_order=True)


def hole_summary(feed_events: pl.LazyFrame) -> pl.LazyFrame:
    """Per venue and symbol: ``backfills, closed, remaining_holes, trades_recovered, trades_missing``.

    >>> ev = pl.LazyFrame({"ts_local": [1], "venue": ["okx"], "symbol": ["BTC-USDT"], "kind": ["backfill"],
    ...     "detail": ["ids 5..9 asked (5); found 2 over REST in 1 request(s); hole remains: 3 trade(s) missing, ids 5..7"]})
    >>> hole_summary(ev).collect().row(0)
    ('okx', 'BTC-USDT', 1, 0, 1, 2, 3)

    A silence whose hole may remain counts as a remaining hole; its unknown missing trades
    are not in ``trades_missing`` (a sum of the counts the venue could give).
    """
    return (holes(feed_events).group_by("venue", "symbol")
            .agg(backfills=pl.len().cast(pl.Int64), closed=(pl.col("status") == "closed").sum().cast(pl.Int64),
                 remaining_holes=(pl.col("status") == "remains").sum().cast(pl.Int64),
                 trades_recovered=pl.col("found").sum(), trades_missing=pl.col("missing").sum())
            .sort("venue", "symbol"))


#: the reasons a range of the tape has no live data
WHY = ("down", "disconnected", "backfilled", "not recoverable")

RANGE_SCHEMA: dict[str, pl.DataType] = {
    "venue": pl.String(), "symbol": pl.String(), "start": pl.Datetime("us", "UTC"),
    "end": pl.Datetime("us", "UTC"), "why": pl.String(), "trades_missing": pl.Int64(),
    "trades_recovered": pl.Int64(), "detail": pl.String()}

_START = re.compile(r"^(?P<key>.+? pid \d+) run \S+: (?P<venues>.*)$")
_VENUE = re.compile(r"([\w.-]+)\[([^\]]*)\]")


@dataclass
class _Tape:
    """One venue/symbol's state while walking the events."""

    run: str | None = None             # "name pid N" of the recorder covering it, None when none runs
    last: dt.datetime | None = None    # the last event of the covering run seen for it
    stopped: dt.datetime | None = None  # when the last covering run stopped cleanly
    down_since: dt.datetime | None = None  # its venue's connection ended here and has not reopened
    out: list[dict] = field(default_factory=list)


def _range(venue: str, symbol: str, start: dt.datetime | None, end: dt.datetime | None, why: str,
           detail: str) -> dict:
    return {"venue": venue, "symbol": symbol, "start": start, "end": end, "why": why,
            "trades_missing": None, "trades_recovered": None, "detail": detail}


def ranges(feed_events: pl.LazyFrame | pl.DataFrame, *, attach_within_s: float = 300.0) -> pl.DataFrame:
    """The ranges of the trade tape with no live data, per venue and symbol (:data:`RANGE_SCHEMA`).

    ``why`` is one of :data:`WHY`:

    * ``down``: no recorder ran for the symbol, from a ``stop`` (or, for a recorder killed without
      one, its last feed event for the venue: the kill came later, within the range) to the next
      ``start`` listing it;
    * ``disconnected``: from a ``reconnect`` (the venue's connection ended) to the next ``connect``
      (``end`` null: not reconnected yet);
    * ``backfilled``: such a range whose ``backfill`` row (the first one for the symbol within
      ``attach_within_s`` seconds after its end) says the hole is closed: its trades came over REST;
    * ``not recoverable``: the same, but the venue no longer served ``trades_missing`` of them.

    A ``backfill`` row that follows no such range (a trade-id gap on a live connection) is its own
    range at its time (``start == end``); one of a silence backfilled by time (a venue quiet with its
    connection open) is its own range over the silence, in the venue's time, unless the venue's window
    covered it and held no trade the lake lacked (a lull, not a hole: no range) (``trades_missing``
    null when the venue's recent window did not reach back to its start). ``trades_missing``/``trades_recovered`` come from the
    ``backfill`` rows (null: no backfill recorded, e.g. backfill off or no trade while away). The tape
    before the first ``start`` and after the last ``stop`` is not a hole. Assumes one recorder per
    venue/symbol at a time (as the recorder's trade-id seeding does).

    This walks the lifecycle rows in time order (a state machine over a few hundred rows, collected
    here: this is an edge function, not a lazy helper).

    >>> t = lambda s: dt.datetime(2026, 1, 1, 0, 0, s, tzinfo=dt.timezone.utc)
    >>> ev = pl.DataFrame({"ts_local": [t(0), t(0), t(10), t(12), t(13), t(20), t(30), t(31)],
    ...     "venue": ["recorder", "binance", "binance", "binance", "binance", "recorder", "recorder", "binance"],
    ...     "symbol": [None, None, None, None, "BTC-USDT", None, None, "BTC-USDT"],
    ...     "kind": ["start", "connect", "reconnect", "connect", "backfill", "stop", "start", "backfill"],
    ...     "detail": ["rec pid 1 run a: binance[BTC-USDT]", "a/binance/1 ws://x", "a/binance/1 ended",
    ...                "a/binance/2 ws://x", "ids 5..9 asked (5); found 5 over REST in 1 request(s); hole closed",
    ...                "rec pid 1", "rec pid 2 run b: binance[BTC-USDT]",
    ...                "ids 20..29 asked (10); found 4 over REST in 1 request(s); "
    ...                "hole remains: 6 trade(s) missing, ids 20..25"]})
    >>> ranges(ev).select("start", "end", "why", "trades_missing").rows()  # doctest: +NORMALIZE_WHITESPACE
    [(datetime.datetime(2026, 1, 1, 0, 0, 10, tzinfo=zoneinfo.ZoneInfo(key='UTC')),
      datetime.datetime(2026, 1, 1, 0, 0, 12, tzinfo=zoneinfo.ZoneInfo(key='UTC')), 'backfilled', 0),
     (datetime.datetime(2026, 1, 1, 0, 0, 20, tzinfo=zoneinfo.ZoneInfo(key='UTC')),
      datetime.datetime(2026, 1, 1, 0, 0, 30, tzinfo=zoneinfo.ZoneInfo(key='UTC')), 'not recoverable', 6)]
    >>> quiet = pl.DataFrame({"ts_local": [t(0), t(9)], "venue": ["recorder", "bybit"], "symbol": [None, "BTC-USDT"],
    ...     "kind": ["start", "backfill"], "detail": ["rec pid 1 run a: bybit[BTC-USDT]",
    ...     "time 2026-01-01T00:00:02.000000Z..2026-01-01T00:00:06.500000Z asked (4.5 s, a silence without "
    ...     "reconnect); found 60 over REST in 1 request(s), 7 new; hole closed"]})
    >>> ranges(quiet).select(pl.col("start", "end").dt.second(), "why", "trades_missing", "trades_recovered").rows()
    [(2, 6, 'backfilled', 0, 7)]
    >>> lull = quiet.with_columns(pl.col("detail").str.replace("7 new", "0 new"))
    >>> ranges(lull).height  # the window covered it and the lake lacked none of its trades
    0
    """
    lf = feed_events.lazy()
    df = (lf.select(pl.col("ts_local").cast(pl.Datetime("us", "UTC")), "venue", "symbol", "kind", "detail")
          .sort("ts_local", maintain_order=True).collect())
    tapes: dict[tuple[str, str], _Tape] = {}
    by_venue: dict[str, set[str]] = {}   # venue -> symbols a running recorder covers
    backfills: list[tuple[dt.datetime, str, str, str]] = []
    for ts, venue, symbol, kind, detail in df.iter_rows():
        detail = detail or ""
        if venue == "recorder" and kind == "start":
            m = _START.match(detail)
            if not m:
                continue
            for v, syms in _VENUE.findall(m["venues"]):
                for sym in (x.strip().upper() for x in syms.split(",") if x.strip()):
                    tp = tapes.setdefault((v, sym), _Tape())
                    if tp.run is not None:  # the previous run never stopped: killed
                        begin = min(x for x in (tp.last, tp.down_since) if x is not None) if tp.last else None
                        tp.out.append(_range(v, sym, begin, ts, "down",
                                             f"recorder {tp.run} ended without a stop event (killed); "
                                             "start = its last feed event for the venue"))
                    elif tp.stopped is not None:
                        tp.out.append(_range(v, sym, tp.stopped, ts, "down", f"no recorder from its stop to {m['key']}"))
                    tp.run, tp.last, tp.stopped, tp.down_since = m["key"], ts, None, None
                    by_venue.setdefault(v, set()).add(sym)
            continue
        if venue == "recorder" and kind == "stop":
            key = detail.strip()
            for (v, sym), tp in tapes.items():
                if tp.run != key:
                    continue
                if tp.down_since is not None:
                    tp.out.append(_range(v, sym, tp.down_since, ts, "disconnected", "connection ended; stopped before reconnecting"))
                tp.run, tp.stopped, tp.down_since = None, ts, None
                by_venue.get(v, set()).discard(sym)
            continue
        syms = [symbol] if symbol else sorted(by_venue.get(venue, ()))
        for sym in syms:
            cur = tapes.get((venue, sym))
            if cur is None or cur.run is None:
                continue
            tp = cur
            if kind == "reconnect" and tp.down_since is None:
                tp.down_since = ts
            elif kind == "connect" and tp.down_since is not None:
                tp.out.append(_range(venue, sym, tp.down_since, ts, "disconnected",
                                     detail.split(" ")[0] + " reconnected"))
                tp.down_since = None
            tp.last = ts
        if kind == "backfill" and symbol:
            if (m := _TIME_RE.match(detail)) is not None:  # a silence without reconnect: its own range
                closed = m[4] == "hole closed"
                if closed and int(m[3] or 0) == 0:
                    continue  # a lull: the window covered it and held no trade we lacked, no hole
                r = _range(venue, symbol, to_utc(m[1]), to_utc(m[2]), "backfilled" if closed else "not recoverable",
                           "venue silent, connection open (times are the venue's); "
                           f"{m[3] or 0} recovered over REST" + ("" if closed else f"; {m[5]}"))
                r["trades_missing"], r["trades_recovered"] = (0 if closed else None), int(m[3] or 0)
                tapes.setdefault((venue, symbol), _Tape()).out.append(r)
                continue
            backfills.append((ts, venue, symbol, detail))
    for (v, sym), tp in tapes.items():
        if tp.run is not None and tp.down_since is not None:
            tp.out.append(_range(v, sym, tp.down_since, None, "disconnected", "connection ended; not reconnected yet"))

    parsed = holes(pl.DataFrame({"ts_local": [b[0] for b in backfills], "venue": [b[1] for b in backfills],
                                 "symbol": [b[2] for b in backfills], "kind": ["backfill"] * len(backfills),
                                 "detail": [b[3] for b in backfills]},
                                schema={"ts_local": pl.Datetime("us", "UTC"), "venue": pl.String,
                                        "symbol": pl.String, "kind": pl.String, "detail": pl.String})
                   .lazy()).collect()
    within = dt.timedelta(seconds=attach_within_s)
    taken: set[int] = set()
    for b in parsed.iter_rows(named=True):
        tp = tapes.setdefault((b["venue"], b["symbol"]), _Tape())
        cands = [(r["end"], i) for i, r in enumerate(tp.out)
                 if id(r) not in taken and r["end"] is not None and r["end"] <= b["ts_local"] <= r["end"] + within
                 and r["why"] in ("down", "disconnected")]
        closed = b["status"] == "closed"
        note = f"ids {b['lo']}..{b['hi']}: {b['found']} recovered over REST" + (
            "" if closed else f", {b['missing']} not served (ids {b['miss_lo']}..{b['miss_hi']})")
        if cands:
            r = tp.out[max(cands)[1]]
            taken.add(id(r))
            r["detail"] = f"{r['why']} ({r['detail']}); {note}"
        else:
            r = _range(b["venue"], b["symbol"], b["ts_local"], b["ts_local"], "", f"trade-id gap on a live stream; {note}")
            tp.out.append(r)
            taken.add(id(r))
        r["why"] = "backfilled" if closed else "not recoverable"
        r["trades_missing"], r["trades_recovered"] = b["missing"], b["found"]
    rows = [r for tp in tapes.values() for r in tp.out]
    return (pl.DataFrame(rows, schema=RANGE_SCHEMA) if rows else pl.DataFrame(schema=RANGE_SCHEMA)) \
        .sort("venue", "symbol", "start", nulls_last=True)


def lake_ranges(lake: Lake | str | None = None) -> pl.DataFrame:
    """:func:`ranges` of a lake's ``feed_events`` (empty, with :data:`RANGE_SCHEMA`, when it has none):
    what ``lab status`` and the Feed health page show."""
    from lab.lake import Lake, default_lake

    lk = lake if isinstance(lake, Lake) else Lake(lake) if lake is not None else default_lake()
    if not lk.exists("feed_events"):
        return pl.DataFrame(schema=RANGE_SCHEMA)
    return ranges(lk.scan("feed_events"))


def overlapping(rng: pl.DataFrame, start: dt.datetime, end: dt.datetime) -> pl.DataFrame:
    """The ranges that overlap ``[start, end]`` (an open range, ``end`` null, reaches now).

    >>> t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    >>> r = pl.DataFrame([{"start": t, "end": t + dt.timedelta(seconds=5)}, {"start": t, "end": None}])
    >>> overlapping(r, t + dt.timedelta(seconds=6), t + dt.timedelta(seconds=9)).height
    1
    """
    return rng.filter((pl.col("start").is_null() | (pl.col("start") <= end))
                      & (pl.col("end").is_null() | (pl.col("end") >= start)))
