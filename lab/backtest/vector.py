"""Vectorised research mode: signals → positions → PnL in Polars, with sweeps.

For signal strategies that only take liquidity; the fast first pass before
the event-driven engine. The steps, each a lazy helper:

1. :func:`bars` — top of book sampled on a regular grid per venue/symbol
   (last quote in each interval), with ``mid``, ``microprice`` and
   ``imbalance`` (``(bid_qty - ask_qty) / (bid_qty + ask_qty)``, in [-1, 1]).
2. :func:`with_walk_prices` — what a taker of ``qty`` would pay: the
   volume-weighted price of walking ``book_snapshots`` levels (buy and sell),
   attached to each bar by ``join_asof`` (backward, ``by=`` venue/symbol).
3. :func:`with_latency` — the price we would actually trade at: each bar's
   decision joins (``join_asof`` forward, ``by=`` venue/symbol) the execution
   prices ``latency`` later.
4. :func:`pnl` — position × mid change minus trading cost: for each change of
   position, ``|Δpos| × (walk price - mid)`` slippage plus ``fee`` × notional.
5. :func:`sweep` — many parameter sets at once (a cross join, chunked).

Units: ``qty`` in base units, prices and PnL in the quote currency, fees as
fractions of notional (0.001 = 10 bp).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import polars as pl

from lab.book import from_long, walk_expr

__all__ = ["bars", "walk_prices", "with_walk_prices", "with_latency", "imbalance_positions", "pnl",
           "sweep", "summarise"]

_BY = ["venue", "symbol"]


def bars(quotes: pl.LazyFrame, every: str = "1s") -> pl.LazyFrame:
    """Last quote per ``every`` interval per venue/symbol, forward-filled on a full grid.

    Needs ``ts_exchange, venue, symbol, bid_px, bid_qty, ask_px, ask_qty``; returns
    ``ts`` (interval end) plus those and ``mid``, ``microprice``, ``imbalance``.

    >>> import datetime as dt
    >>> t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    >>> q = pl.LazyFrame({"ts_exchange": [t, t + dt.timedelta(seconds=2.5)], "venue": ["x", "x"],
    ...     "symbol": ["A-B", "A-B"], "bid_px": [10.0, 11.0], "bid_qty": [3.0, 1.0],
    ...     "ask_px": [12.0, 12.0], "ask_qty": [1.0, 1.0]})
    >>> bars(q).collect().select("mid", "microprice", "imbalance").rows()
    [(11.0, 11.5, 0.5), (11.0, 11.5, 0.5), (11.5, 11.5, 0.0)]
    """
    grid = (quotes.sort("ts_exchange").group_by_dynamic("ts_exchange", every=every, group_by=_BY, closed="left", label="right")
            .agg(pl.col("bid_px", "bid_qty", "ask_px", "ask_qty").last())
            .rename({"ts_exchange": "ts"}))
    full = (grid.group_by(_BY)
            .agg(pl.datetime_range(pl.col("ts").min(), pl.col("ts").max(), every).alias("ts"))
            .explode("ts"))
    out = (full.join(grid, on=[*_BY, "ts"], how="left").sort([*_BY, "ts"])
           .with_columns(pl.col("bid_px", "bid_qty", "ask_px", "ask_qty").forward_fill().over(_BY)))
    return out.with_columns(
        ((pl.col("bid_px") + pl.col("ask_px")) / 2).alias("mid"),
        ((pl.col("bid_px") * pl.col("ask_qty") + pl.col("ask_px") * pl.col("bid_qty"))
         / (pl.col("bid_qty") + pl.col("ask_qty"))).alias("microprice"),
        ((pl.col("bid_qty") - pl.col("ask_qty")) / (pl.col("bid_qty") + pl.col("ask_qty"))).alias("imbalance"),
    )


def walk_prices(snapshots: pl.LazyFrame, qty: float, depth: int | None = None) -> pl.LazyFrame:
    """Average price of taking ``qty`` from each ``book_snapshots`` sample.

    Walks levels in order (``level`` 0 first): buys lift asks, sells hit bids,
    with :func:`lab.book.walk_expr` (the library's one walk, :func:`lab.l2.walk`)
    on the samples made wide by :func:`lab.book.from_long`. Returns ``venue,
    symbol, ts_exchange, buy_px, sell_px`` (null where the sampled depth is
    smaller than ``qty``). ``depth``: levels per side to walk (default: all the
    sampled ones, found with one small query).

    >>> import datetime as dt
    >>> t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    >>> s = pl.LazyFrame({"ts_exchange": [t] * 4, "venue": ["x"] * 4, "symbol": ["A-B"] * 4,
    ...     "level": [0, 1, 0, 1], "side": ["ask", "ask", "bid", "bid"],
    ...     "price": [101.0, 102.0, 100.0, 99.0], "qty": [1.0, 5.0, 2.0, 5.0]})
    >>> walk_prices(s, 2.0).collect().select("buy_px", "sell_px").rows()
    [(101.5, 100.0)]
    """
    if depth is None:  # the only eager step: how many levels the samples hold
        top = snapshots.select(pl.col("level").max()).collect().item()
        depth = 0 if top is None else int(top) + 1
    return (from_long(snapshots, depth, _BY)
            .select(*_BY, "ts_exchange", walk_expr(qty, depth, "ask").alias("buy_px"),
                    walk_expr(qty, depth, "bid").alias("sell_px")))


def with_walk_prices(bars_lf: pl.LazyFrame, snapshots: pl.LazyFrame | None, qty: float) -> pl.LazyFrame:
    """Attach ``buy_px``/``sell_px`` for ``qty`` to each bar (latest snapshot at or before it).

    Without snapshots (or where the depth is short) the touch is used:
    ``ask_px``/``bid_px``.
    """
    if snapshots is None:
        return bars_lf.with_columns(pl.col("ask_px").alias("buy_px"), pl.col("bid_px").alias("sell_px"))
    wp = walk_prices(snapshots, qty).rename({"ts_exchange": "ts"})
    return (bars_lf.sort("ts").join_asof(wp.sort("ts"), on="ts", by=_BY, strategy="backward", check_sortedness=False)
            .with_columns(pl.col("buy_px").fill_null(pl.col("ask_px")),
                          pl.col("sell_px").fill_null(pl.col("bid_px")))
            .sort([*_BY, "ts"]))


def with_latency(lf: pl.LazyFrame, latency: dt.timedelta | str = "0ms") -> pl.LazyFrame:
    """Add ``exec_buy_px``, ``exec_sell_px``, ``exec_mid``: prices ``latency`` after each bar.

    ``join_asof`` forward (``by=`` venue/symbol) on ``ts + latency``: a decision
    taken on bar ``t`` trades at the first bar at or after ``t + latency``.
    """
    if isinstance(latency, dt.timedelta):
        lat_expr = pl.col("ts") + latency
    else:
        lat_expr = pl.col("ts").dt.offset_by(latency)
    right = lf.select(*_BY, pl.col("ts").alias("_t"), pl.col("buy_px").alias("exec_buy_px"),
                      pl.col("sell_px").alias("exec_sell_px"), pl.col("mid").alias("exec_mid"))
    return (lf.with_columns(lat_expr.alias("_t")).sort("_t")
            .join_asof(right.sort("_t"), on="_t", by=_BY, strategy="forward", check_sortedness=False)
            .drop("_t").sort([*_BY, "ts"]))


def imbalance_positions(lf: pl.LazyFrame, *, window: int, threshold: float, qty: float) -> pl.LazyFrame:
    """``pos = +qty`` when the ``window``-bar mean imbalance exceeds ``threshold``,
    ``-qty`` below ``-threshold``, else 0 (per venue/symbol)."""
    sig = pl.col("imbalance").rolling_mean(window, min_samples=1).over(_BY)
    return lf.with_columns(
        (pl.when(sig > threshold).then(qty).when(sig < -threshold).then(-qty).otherwise(0.0)).alias("pos"))


def pnl(lf: pl.LazyFrame, *, fee: float = 0.0, by: Sequence[str] = ()) -> pl.LazyFrame:
    """Mark-to-market PnL of the ``pos`` column (decided per bar, traded at ``exec_*``).

    Adds ``trade`` (Δpos), ``cost`` (slippage vs ``exec_mid`` + fee on the
    traded notional), ``gross`` (previous position × mid change) and ``pnl``
    (``gross - cost``, cumulated per group as ``equity``). Needs
    :func:`with_latency` columns (or ``exec_*`` equal to the bar's own). A
    decision whose execution time falls after the data ends is booked at its
    own bar's mid without cost.
    """
    grp = [*_BY, *by]
    trade = pl.col("pos").diff().fill_null(pl.col("pos")).over(grp)
    px = pl.when(pl.col("trade") > 0).then(pl.col("exec_buy_px")).otherwise(pl.col("exec_sell_px"))
    return (lf.with_columns(trade.alias("trade"))
            .with_columns(
                (pl.col("trade").abs() * ((px - pl.col("exec_mid")).abs() + fee * px)).fill_null(0.0).alias("cost"),
                # the position held from the last bar earns the mid move; the fill happens at exec_mid
                (pl.col("pos").shift(1).over(grp).fill_null(0.0) * pl.col("mid").diff().over(grp).fill_null(0.0)
                 + pl.col("trade") * (pl.col("mid") - pl.col("exec_mid")).fill_null(0.0)).alias("gross"))
            .with_columns((pl.col("gross") - pl.col("cost")).alias("pnl"))
            .with_columns(pl.col("pnl").cum_sum().over(grp).alias("equity")))


def summarise(lf: pl.LazyFrame, by: Sequence[str] = ()) -> pl.LazyFrame:
    """Per group: ``pnl``, ``costs``, ``trades`` (position changes), ``turnover`` (Σ|Δpos|)."""
    return lf.group_by(list(by) or [pl.lit(0).alias("_all")]).agg(
        pl.col("pnl").sum().alias("pnl"), pl.col("cost").sum().alias("costs"),
        (pl.col("trade") != 0).sum().alias("trades"), pl.col("trade").abs().sum().alias("turnover"))


def sweep(prepared: pl.LazyFrame, *, windows: Iterable[int], thresholds: Iterable[float], qty: float,
          fee: float = 0.0, chunk: int = 100, progress: bool = False) -> pl.DataFrame:
    """PnL of the imbalance strategy for every (window, threshold) pair.

    ``prepared`` is bars with walk and latency prices (:func:`with_latency`).
    Each window's signal is computed once; thresholds are swept by a cross
    join in chunks of ``chunk`` parameter sets (bounded memory). Returns one
    row per parameter set: ``window, threshold, pnl, costs, trades, turnover``.
    """
    from tqdm.auto import tqdm

    base = prepared.collect()
    ths = list(thresholds)
    wins = list(windows)
    out = []
    bar = tqdm(total=len(ths) * len(wins), disable=not progress, desc="sweep", unit="set")
    for w in wins:
        sig = base.lazy().with_columns(
            pl.col("imbalance").rolling_mean(w, min_samples=1).over(_BY).alias("_sig")).collect()
        for k in range(0, len(ths), chunk):
            params = pl.LazyFrame({"threshold": ths[k:k + chunk]}).with_columns(pl.lit(w).alias("window"))
            lf = (sig.lazy().join(params, how="cross")
                  .with_columns(pl.when(pl.col("_sig") > pl.col("threshold")).then(qty)
                                .when(pl.col("_sig") < -pl.col("threshold")).then(-qty).otherwise(0.0).alias("pos")))
            res = summarise(pnl(lf, fee=fee, by=["window", "threshold"]), by=["window", "threshold"])
            out.append(res.collect())
            bar.update(min(chunk, len(ths) - k))
    bar.close()
    return pl.concat(out).sort(["window", "threshold"])
