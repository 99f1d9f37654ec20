"""Holes in the trade tape, from the ``backfill`` rows of ``feed_events``.

The recorder writes one ``backfill`` feed event per hole it found after a
restart or reconnect (``recorders/backfill.py``): the trade ids asked for, the
rows the venue's REST history still had, and what remains missing. This module
turns those rows into a table, so ``lab status`` and dashboards can say per
venue and symbol how many holes there were, how many were closed and how many
trades are not recoverable.
"""

from __future__ import annotations

import polars as pl

__all__ = ["holes", "hole_summary"]

_RE = (r"ids (\d+)\.\.(\d+) asked \((\d+)\); (?:found (\d+)|failed)[^;]*;.*?"
       r"(hole closed|hole remains: (\d+) trade\(s\) missing, ids (\d+)\.\.(\d+))")


def holes(feed_events: pl.LazyFrame) -> pl.LazyFrame:
    """One row per backfill: ``ts_local, venue, symbol, lo, hi, asked, found, missing, status``.

    ``status`` is ``closed`` (every trade fetched) or ``remains`` (``missing`` trades,
    ids ``miss_lo..miss_hi``, are not recoverable from the venue).

    >>> ev = pl.LazyFrame({"ts_local": [1, 2], "venue": ["binance", "okx"], "symbol": ["BTC-USDT"] * 2,
    ...     "kind": ["backfill"] * 2, "detail": [
    ...     "ids 10..19 asked (10); found 10 over REST in 1 request(s); hole closed",
    ...     "ids 5..9 asked (5); found 2 over REST in 1 request(s); hole remains: 3 trade(s) missing, ids 5..7"]})
    >>> holes(ev).select("venue", "asked", "found", "missing", "status").collect().rows()
    [('binance', 10, 10, 0, 'closed'), ('okx', 5, 2, 3, 'remains')]
    """
    d = pl.col("detail")
    g = lambda i: d.str.extract(_RE, i)  # noqa: E731
    return (feed_events.filter(pl.col("kind") == "backfill")
            .filter(d.str.contains(_RE))
            .select("ts_local", "venue", "symbol",
                    lo=g(1).cast(pl.Int64), hi=g(2).cast(pl.Int64), asked=g(3).cast(pl.Int64),
                    found=g(4).cast(pl.Int64).fill_null(0),
                    missing=g(6).cast(pl.Int64).fill_null(0),
                    miss_lo=g(7).cast(pl.Int64), miss_hi=g(8).cast(pl.Int64),
                    status=pl.when(g(5) == "hole closed").then(pl.lit("closed")).otherwise(pl.lit("remains"))))


def hole_summary(feed_events: pl.LazyFrame) -> pl.LazyFrame:
    """Per venue and symbol: ``backfills, closed, remaining_holes, trades_recovered, trades_missing``.

    >>> ev = pl.LazyFrame({"ts_local": [1], "venue": ["okx"], "symbol": ["BTC-USDT"], "kind": ["backfill"],
    ...     "detail": ["ids 5..9 asked (5); found 2 over REST in 1 request(s); hole remains: 3 trade(s) missing, ids 5..7"]})
    >>> hole_summary(ev).collect().row(0)
    ('okx', 'BTC-USDT', 1, 0, 1, 2, 3)
    """
    return (holes(feed_events).group_by("venue", "symbol")
            .agg(backfills=pl.len().cast(pl.Int64), closed=(pl.col("status") == "closed").sum().cast(pl.Int64),
                 remaining_holes=(pl.col("status") == "remains").sum().cast(pl.Int64),
                 trades_recovered=pl.col("found").sum(), trades_missing=pl.col("missing").sum())
            .sort("venue", "symbol"))
