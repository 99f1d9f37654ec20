"""Polars computations behind the pages, lazy in and lazy out, ``by`` venue/symbol.

What ``lab`` does not (yet) offer in the shape a page needs: depth from the
long ``book_snapshots`` layout, top-of-book edges of the latest quotes, a
1-second edge grid for charts, ingestion rates. Spreads, OFI, lead-lag and
arbitrage episodes come from ``lab.micro``, ``lab.leadlag`` and
``lab.arbitrage`` like in the notebooks. Each docstring names the columns
needed and added.

>>> import polars as pl, datetime as dt
>>> t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
>>> q = pl.LazyFrame({"ts_exchange": [t, t, t], "venue": ["a", "b", "c"],
...     "symbol": ["X-USD"] * 3, "bid_px": [100.0, 101.0, 99.0], "bid_qty": [1.0, 2.0, 3.0],
...     "ask_px": [100.5, 101.5, 99.4], "ask_qty": [1.0, 1.0, 1.0]})
>>> e = cross_edges(q, fees_bps={"a": 10.0, "b": 10.0, "c": 10.0}, size=1.0).collect()
>>> e.filter(pl.col("net_edge_bps") > 0).select("buy_venue", "sell_venue").rows()
[('c', 'b'), ('c', 'a'), ('a', 'b')]
"""

from __future__ import annotations

import polars as pl

__all__ = [
    "downsample_quotes",
    "depth",
    "cross_edges",
    "edge_history",
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


def cross_edges(latest: pl.LazyFrame, *, fees_bps: dict[str, float], size: float,
                default_fee_bps: float = 10.0) -> pl.LazyFrame:
    """Every ordered venue pair's edge for buying at one venue's ask and selling at another's bid.

    ``latest`` holds one (latest) quote per venue of one market. Taker fees
    are paid on both legs::

        net_edge_bps = (bid_sell * (1 - f_sell) / (ask_buy * (1 + f_buy)) - 1) * 1e4

    ``gross_edge_bps`` is the same without fees. ``fillable`` says whether
    ``size`` fits in both top-of-book quantities. Output: ``buy_venue``,
    ``sell_venue``, ``buy_px``, ``sell_px``, ``gross_edge_bps``, ``net_edge_bps``,
    ``max_size``, ``fillable``, ``profit_quote`` (net, for ``min(size, max_size)``).
    """
    fee = pl.col("venue").replace_strict(fees_bps, default=default_fee_bps, return_dtype=pl.Float64) / 1e4
    base = latest.select("venue", "bid_px", "bid_qty", "ask_px", "ask_qty", fee.alias("fee"))
    buy = base.select(pl.col("venue").alias("buy_venue"), pl.col("ask_px").alias("buy_px"),
                      pl.col("ask_qty").alias("buy_qty"), pl.col("fee").alias("buy_fee"))
    sell = base.select(pl.col("venue").alias("sell_venue"), pl.col("bid_px").alias("sell_px"),
                       pl.col("bid_qty").alias("sell_qty"), pl.col("fee").alias("sell_fee"))
    net_px = pl.col("sell_px") * (1 - pl.col("sell_fee"))
    cost_px = pl.col("buy_px") * (1 + pl.col("buy_fee"))
    return (
        buy.join(sell, how="cross")
        .filter(pl.col("buy_venue") != pl.col("sell_venue"))
        .with_columns(
            gross_edge_bps=(pl.col("sell_px") / pl.col("buy_px") - 1) * 1e4,
            net_edge_bps=(net_px / cost_px - 1) * 1e4,
            max_size=pl.min_horizontal("buy_qty", "sell_qty"),
        )
        .with_columns(
            fillable=pl.col("max_size") >= size,
            profit_quote=(net_px - cost_px) * pl.min_horizontal(pl.lit(size), pl.col("max_size")),
        )
        .select("buy_venue", "sell_venue", "buy_px", "sell_px", "gross_edge_bps", "net_edge_bps",
                "max_size", "fillable", "profit_quote")
        .sort("net_edge_bps", descending=True)
    )


def edge_history(quotes: pl.DataFrame, *, fees_bps: dict[str, float], every: str = "1s",
                 default_fee_bps: float = 10.0) -> pl.LazyFrame:
    """Net edge per ordered venue pair on an ``every`` grid (last quote of each venue, carried forward).

    Needs ``ts_exchange``, ``venue``, ``bid_px``, ``ask_px`` of one market.
    Output ``ts``, ``pair`` (``buy->sell``), ``net_edge_bps`` (fees as in
    :func:`cross_edges`). Takes a collected frame: the pivot to one column per
    venue needs the venue list.
    """
    last = (
        quotes.lazy().sort("ts_exchange")
        .group_by_dynamic("ts_exchange", every=every, group_by="venue")
        .agg(pl.col("bid_px", "ask_px").last())
        .rename({"ts_exchange": "ts"})
        .collect()
    )
    wide_bid = last.pivot(on="venue", index="ts", values="bid_px").sort("ts").fill_null(strategy="forward")
    wide_ask = last.pivot(on="venue", index="ts", values="ask_px").sort("ts").fill_null(strategy="forward")
    venues = [c for c in wide_bid.columns if c != "ts"]
    out = []
    for b in venues:
        for s in venues:
            if b == s:
                continue
            fb = fees_bps.get(b, default_fee_bps) / 1e4
            fs = fees_bps.get(s, default_fee_bps) / 1e4
            out.append(pl.DataFrame({
                "ts": wide_bid["ts"],
                "pair": f"{b}->{s}",
                "net_edge_bps": (wide_bid[s] * (1 - fs) / (wide_ask[b] * (1 + fb)) - 1) * 1e4,
            }))
    if not out:
        return pl.LazyFrame(schema={"ts": quotes.schema["ts_exchange"], "pair": pl.String,
                                    "net_edge_bps": pl.Float64})
    return pl.concat(out).lazy().drop_nulls("net_edge_bps")


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

