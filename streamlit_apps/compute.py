"""Polars reshaping behind the pages, lazy in and lazy out, ``by`` venue/symbol.

What ``lab`` does not (yet) offer in the shape a page needs: depth and wide
books from the long ``book_snapshots`` layout, a 1-second grid of arbitrage
edges for charts, ingestion rates. Spreads, OFI, lead-lag and arbitrage
opportunities themselves come from ``lab.micro``, ``lab.leadlag`` and
``lab.arbitrage`` like in the notebooks and the live detector. Each docstring
names the columns needed and added.

>>> import polars as pl, datetime as dt
>>> t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
>>> s = pl.LazyFrame({"ts_local": [t] * 4, "ts_exchange": [t] * 4, "venue": "a", "symbol": "X-USD",
...     "level": [0, 1, 0, 1], "side": ["bid", "bid", "ask", "ask"], "price": [99.0, 98.0, 101.0, 102.0],
...     "qty": [1.0, 2.0, 3.0, 4.0]})
>>> books_from_snapshots(s, 2).select("bid_px_0", "bid_px_1", "ask_px_0", "ask_qty_1").collect().row(0)
(99.0, 98.0, 101.0, 4.0)
"""

from __future__ import annotations

import polars as pl

__all__ = [
    "downsample_quotes",
    "depth",
    "books_from_snapshots",
    "edge_grid",
    "ingestion_rate",
]


def downsample_quotes(lf: pl.LazyFrame, every: str = "250ms",
                      by: tuple[str, ...] = ("venue", "symbol")) -> pl.LazyFrame:
    """Last quote per ``every`` bucket and venue/symbol (keeps charts light).

    Needs ``ts_exchange`` and the quote columns; keeps their names, one row per bucket
    that had at least one quote (the bucket's start time in ``ts_exchange``).
    """
    return (
        lf.sort("ts_exchange")
        .group_by_dynamic("ts_exchange", every=every, group_by=list(by))
        .agg(pl.col("bid_px", "bid_qty", "ask_px", "ask_qty").last())
    )


def depth(lf_snapshots: pl.LazyFrame, levels: int = 10,
          by: tuple[str, ...] = ("venue", "symbol")) -> pl.LazyFrame:
    """Resting size in the top ``levels`` per side at each sampled book (``book_snapshots``).

    Adds ``bid_depth``, ``ask_depth`` (base units) and ``depth_imbalance`` per snapshot time.
    """
    return (
        lf_snapshots.filter(pl.col("level") < levels)
        .group_by([*by, "ts_exchange"])
        .agg(
            pl.col("qty").filter(pl.col("side") == "bid").sum().alias("bid_depth"),
            pl.col("qty").filter(pl.col("side") == "ask").sum().alias("ask_depth"),
        )
        .with_columns(depth_imbalance=(pl.col("bid_depth") - pl.col("ask_depth"))
                      / (pl.col("bid_depth") + pl.col("ask_depth")))
        .sort([*by, "ts_exchange"])
    )


def books_from_snapshots(snapshots: pl.LazyFrame, depth: int,
                         by: tuple[str, ...] = ("venue", "symbol")) -> pl.LazyFrame:
    """``book_snapshots`` (long: one row per level and side) → wide books (``bid_px_0``, …).

    One row per sampled book (``*by``, ``ts_local``, ``ts_exchange``) with the top
    ``depth`` levels per side, the layout :func:`lab.arbitrage.cross_venue` walks
    (:func:`lab.book.to_long` is the inverse). A missing level is null.
    """
    lf = snapshots.filter(pl.col("level") < depth)
    keys = [*by, "ts_local", "ts_exchange"]
    cols = []
    for side in ("bid", "ask"):
        for i in range(depth):
            sel = (pl.col("side") == side) & (pl.col("level") == i)
            cols += [pl.col("price").filter(sel).first().alias(f"{side}_px_{i}"),
                     pl.col("qty").filter(sel).first().alias(f"{side}_qty_{i}")]
    return lf.group_by(keys).agg(cols).sort("ts_local")


def edge_grid(timeline: pl.LazyFrame, every: str = "1s") -> pl.LazyFrame:
    """Net edge per ordered venue pair on an ``every`` grid: the last comparison of each bucket.

    ``timeline``: :func:`lab.arbitrage.cross_venue` with ``keep="all"``. Output
    ``ts``, ``pair`` (``buy->sell``), ``net_edge_bps``.
    """
    return (
        timeline.filter(pl.col("fresh"))
        .with_columns(pair=pl.format("{}->{}", "buy_venue", "sell_venue"))
        .sort("ts")
        .group_by_dynamic("ts", every=every, group_by="pair")
        .agg(pl.col("net_edge_bps").last())
        .drop_nulls("net_edge_bps")
        .sort("pair", "ts")
    )


def _seconds(every: str) -> float:
    """``"250ms"`` -> 0.25, ``"1s"`` -> 1.0, ``"1m"`` -> 60.0."""
    units = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    for u in ("ms", "s", "m", "h"):
        if every.endswith(u) and every[: -len(u)].replace(".", "", 1).isdigit():
            return float(every[: -len(u)]) * units[u]
    raise ValueError(f"unsupported interval {every!r}; use e.g. '250ms', '1s', '1m'")


def ingestion_rate(lf: pl.LazyFrame, every: str = "10s", time_col: str = "ts_local") -> pl.LazyFrame:
    """Rows received per second per venue, in ``every`` buckets of ``time_col``.

    Output: ``venue``, ``ts`` (bucket start), ``rows``, ``rows_per_s``.
    """
    return (
        lf.sort(time_col)
        .group_by_dynamic(time_col, every=every, group_by="venue")
        .agg(pl.len().alias("rows"))
        .with_columns(rows_per_s=pl.col("rows") / _seconds(every))
        .rename({time_col: "ts"})
    )

