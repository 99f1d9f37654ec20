"""Polars computations behind the pages, lazy in and lazy out, ``by`` venue/symbol.

Kept small and separate from the page code so they move into ``lab/``
(``lab.micro``, ``lab.arbitrage``) when those helpers land; until then the
pages call these. Each docstring names the columns needed and added.

>>> import polars as pl, datetime as dt
>>> t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
>>> q = pl.LazyFrame({"ts_exchange": [t, t, t], "venue": ["a", "b", "c"],
...     "symbol": ["X-USD"] * 3, "bid_px": [100.0, 101.0, 99.0], "bid_qty": [1.0, 2.0, 3.0],
...     "ask_px": [100.5, 101.5, 99.4], "ask_qty": [1.0, 1.0, 1.0]})
>>> with_spread(q).select("venue", "spread_bps").collect()["spread_bps"].round(2).to_list()
[49.88, 49.38, 40.32]
>>> e = cross_edges(q, fees_bps={"a": 10.0, "b": 10.0, "c": 10.0}, size=1.0).collect()
>>> e.filter(pl.col("net_edge_bps") > 0).select("buy_venue", "sell_venue").rows()
[('c', 'b'), ('c', 'a'), ('a', 'b')]
"""

from __future__ import annotations

import numpy as np
import polars as pl

__all__ = [
    "with_spread",
    "downsample_quotes",
    "ofi",
    "depth",
    "cross_edges",
    "edge_history",
    "episodes",
    "lead_lag",
    "ingestion_rate",
]


def with_spread(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Add ``mid``, ``spread_bps`` (quoted, over mid) and ``imbalance`` (L1, in [-1, 1]).

    Needs ``bid_px``, ``ask_px``, ``bid_qty``, ``ask_qty``.
    ``imbalance = (bid_qty - ask_qty) / (bid_qty + ask_qty)``.
    """
    mid = (pl.col("bid_px") + pl.col("ask_px")) / 2
    return lf.with_columns(
        mid=mid,
        spread_bps=(pl.col("ask_px") - pl.col("bid_px")) / mid * 1e4,
        imbalance=(pl.col("bid_qty") - pl.col("ask_qty")) / (pl.col("bid_qty") + pl.col("ask_qty")),
    )


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


def ofi(lf: pl.LazyFrame, every: str = "1s", by: tuple[str, ...] = ("venue", "symbol")) -> pl.LazyFrame:
    """Order flow imbalance at level 1 (Cont, Kukanov & Stoikov 2014), summed per bucket.

    For consecutive quotes n-1, n of one venue/symbol::

        e_n = 1[Pb_n >= Pb_{n-1}] qb_n - 1[Pb_n <= Pb_{n-1}] qb_{n-1}
            - 1[Pa_n <= Pa_{n-1}] qa_n + 1[Pa_n >= Pa_{n-1}] qa_{n-1}

    Adds per bucket ``ofi`` (in base units, positive = buying pressure) and ``mid_change``
    (last mid minus first mid in the bucket). Needs ``ts_exchange`` and the quote columns.
    """
    b = list(by)
    pb, qb, pa, qa = (pl.col(c) for c in ("bid_px", "bid_qty", "ask_px", "ask_qty"))
    pb0, qb0, pa0, qa0 = (pl.col(c).shift(1).over(b) for c in ("bid_px", "bid_qty", "ask_px", "ask_qty"))
    e = (
        pl.when(pb >= pb0).then(qb).otherwise(0.0)
        - pl.when(pb <= pb0).then(qb0).otherwise(0.0)
        - pl.when(pa <= pa0).then(qa).otherwise(0.0)
        + pl.when(pa >= pa0).then(qa0).otherwise(0.0)
    )
    return (
        lf.sort("ts_exchange")
        .with_columns(e=e.fill_null(0.0), mid=(pb + pa) / 2)
        .group_by_dynamic("ts_exchange", every=every, group_by=b)
        .agg(pl.col("e").sum().alias("ofi"), (pl.col("mid").last() - pl.col("mid").first()).alias("mid_change"))
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


def episodes(history: pl.LazyFrame, *, threshold_bps: float = 0.0, every: str = "1s") -> pl.LazyFrame:
    """Runs of consecutive grid points where a pair's net edge exceeds ``threshold_bps``.

    Needs ``ts``, ``pair``, ``net_edge_bps`` on a regular ``every`` grid (as
    :func:`edge_history` gives). Output per episode: ``pair``, ``start``,
    ``end`` (last point above the threshold), ``duration_s``, ``peak_bps``,
    ``avg_bps``, ``points``.
    """
    return (
        history.sort("pair", "ts")
        .filter(pl.col("net_edge_bps") > threshold_bps)
        .with_columns(gap=pl.col("ts").diff().over("pair"))
        .with_columns(new=(pl.col("gap").is_null()) | (pl.col("gap") > pl.duration(seconds=_seconds(every) * 1.5)))
        .with_columns(episode=pl.col("new").cum_sum().over("pair"))
        .group_by("pair", "episode")
        .agg(
            pl.col("ts").min().alias("start"), pl.col("ts").max().alias("end"),
            pl.col("net_edge_bps").max().alias("peak_bps"), pl.col("net_edge_bps").mean().alias("avg_bps"),
            pl.len().alias("points"),
        )
        .with_columns(duration_s=(pl.col("end") - pl.col("start")).dt.total_microseconds() / 1e6
                      + _seconds(every))
        .select("pair", "start", "end", "duration_s", "peak_bps", "avg_bps", "points")
        .sort("start", descending=True)
    )


def _seconds(every: str) -> float:
    """``"250ms"`` -> 0.25, ``"1s"`` -> 1.0, ``"1m"`` -> 60.0."""
    units = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    for u in ("ms", "s", "m", "h"):
        if every.endswith(u) and every[: -len(u)].replace(".", "", 1).isdigit():
            return float(every[: -len(u)]) * units[u]
    raise ValueError(f"unsupported interval {every!r}; use e.g. '250ms', '1s', '1m'")


def lead_lag(quotes: pl.DataFrame, *, every: str = "100ms", max_lag_ms: int = 1000,
             reference: str | None = None) -> pl.DataFrame:
    """Cross-correlation of mid returns between each venue and a reference venue, by lag.

    Mids are sampled on an ``every`` grid (last quote, carried forward), log
    returns per step, then ``corr(ref_t, venue_{t+lag})`` for lags in
    ``[-max_lag_ms, max_lag_ms]``. A peak at a positive lag means the venue
    follows the reference by that many ms. Output: ``venue``, ``lag_ms``, ``corr``.
    Collected at the edge (a small grid): numpy does the shifted correlations.
    """
    step = _seconds(every)
    grid = (
        quotes.lazy().sort("ts_exchange")
        .with_columns(mid=(pl.col("bid_px") + pl.col("ask_px")) / 2)
        .group_by_dynamic("ts_exchange", every=every, group_by="venue")
        .agg(pl.col("mid").last())
        .collect()
        .pivot(on="venue", index="ts_exchange", values="mid")
        .sort("ts_exchange")
        .upsample("ts_exchange", every=every)
        .fill_null(strategy="forward")
        .drop_nulls()
    )
    venues = [c for c in grid.columns if c != "ts_exchange"]
    schema = {"venue": pl.String, "lag_ms": pl.Int64, "corr": pl.Float64}
    if len(venues) < 2 or grid.height < 10:
        return pl.DataFrame(schema=schema)
    ref = reference if reference in venues else venues[0]
    r = {v: np.diff(np.log(grid[v].to_numpy())) for v in venues}
    max_k = int(round(max_lag_ms / 1000 / step))
    lags = np.arange(-max_k, max_k + 1)
    rows: dict[str, list] = {"venue": [], "lag_ms": [], "corr": []}
    x = r[ref]
    for v in venues:
        if v == ref:
            continue
        y = r[v]
        for k in lags:
            a, b = (x[: len(x) - k], y[k:]) if k >= 0 else (x[-k:], y[: len(y) + k])
            c = np.corrcoef(a, b)[0, 1] if len(a) > 2 and a.std() > 0 and b.std() > 0 else np.nan
            rows["venue"].append(v)
            rows["lag_ms"].append(int(round(k * step * 1000)))
            rows["corr"].append(float(c))
    return pl.DataFrame(rows, schema=schema)


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

