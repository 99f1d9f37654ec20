"""Bars from ``trades``: time bars (any ``every``/``period``, rolling included),
tick, volume and dollar bars.

All helpers take a LazyFrame of trades (``ts_exchange, venue, symbol, price,
qty, side`` — ``side`` the aggressor, ``buy``/``sell``) and return a LazyFrame
with one row per bar and venue/symbol:

=============  ==============================================================
column         meaning (units)
=============  ==============================================================
``bucket``     bar start (time bars; UTC) — ``start``/``end`` on other bars
``open``       first trade price (trades ordered by time, then ``trade_id``)
``high/low``   extreme prices
``close``      last trade price
``volume``     Σ qty (base units)
``notional``   Σ price·qty (quote units)
``vwap``       notional / volume (quote per base)
``trades``     number of trades
``buy_volume`` Σ qty of buyer-initiated trades; ``sell_volume`` likewise
=============  ==============================================================

The same bars exist in SQL on :func:`lab.connect` (see ``lab.sql``): the
``ohlcv_1s`` view and the table macros ``ohlcv(every)``,
``ohlcv_rolling(every, period)``, ``tick_bars(n)``, ``volume_bars(v)`` and
``dollar_bars(d)``, e.g. ``SELECT * FROM ohlcv(INTERVAL 1 MINUTE)``; the test
suite checks they give the same numbers as these helpers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Literal

import polars as pl

__all__ = ["bar_aggs", "vwap", "ohlcv", "tick_bars", "volume_bars", "dollar_bars"]


def vwap(price: str = "price", qty: str = "qty") -> pl.Expr:
    """Volume-weighted average price Σ p·q / Σ q (an aggregation expression).

    >>> import polars as pl
    >>> pl.DataFrame({"price": [100.0, 101.0, 103.0], "qty": [1.0, 2.0, 1.0]}).select(vwap()).item()
    101.25
    """
    return ((pl.col(price) * pl.col(qty)).sum() / pl.col(qty).sum()).alias("vwap")


def bar_aggs(price: str = "price", qty: str = "qty", side: str = "side",
             order_by: Sequence[str] | None = None) -> list[pl.Expr]:
    """The bar aggregations (open … sell_volume), for use in any ``group_by``/``agg``.

    ``open``/``close`` are the first/last rows of each group in row order, or
    in ``order_by`` order when given (sorted inside each group, which is much
    cheaper than sorting the whole frame first).

    >>> import polars as pl
    >>> t = pl.DataFrame({"price": [100.0, 102.0, 101.0], "qty": [1.0, 1.0, 2.0],
    ...                   "side": ["buy", "sell", "buy"]})
    >>> t.select(bar_aggs()).select("open", "high", "close", "vwap", "buy_volume").row(0)
    (100.0, 102.0, 101.0, 101.0, 3.0)
    """
    p, q = pl.col(price), pl.col(qty)
    po = p.sort_by(list(order_by)) if order_by else p
    return [
        po.first().alias("open"), p.max().alias("high"), p.min().alias("low"),
        po.last().alias("close"), q.sum().alias("volume"),
        (p * q).sum().alias("notional"), vwap(price, qty),
        pl.len().cast(pl.Int64).alias("trades"),
        pl.when(pl.col(side) == "buy").then(q).otherwise(0.0).sum().alias("buy_volume"),
        pl.when(pl.col(side) == "sell").then(q).otherwise(0.0).sum().alias("sell_volume"),
    ]


def _ordered(trades: pl.LazyFrame, by: list[str], time_column: str) -> pl.LazyFrame:
    names = trades.collect_schema().names()
    missing = [c for c in (time_column, "price", "qty", "side", *by) if c not in names]
    if missing:
        raise ValueError(f"bars: trades lack column(s) {missing}; got {names}")
    keys = [*by, time_column] + (["trade_id"] if "trade_id" in names else [])
    return trades.sort(keys, maintain_order=True)


def ohlcv(
    trades: pl.LazyFrame,
    every: str | dt.timedelta = "1s",
    period: str | dt.timedelta | None = None,
    *,
    by: Sequence[str] = ("venue", "symbol"),
    time_column: str = "ts_exchange",
    label: Literal["left", "right"] = "left",
) -> pl.LazyFrame:
    """Time bars: OHLCV, notional, VWAP, trade count and buy/sell volume.

    ``every`` is the bar spacing, ``period`` the window length (default
    ``every``). ``every="1s", period="5s"`` gives rolling 5-second windows
    stepped each second: the bar labelled ``t`` (``label="left"``) covers
    ``[t, t+5s)``; ``label="right"`` labels it ``t+5s`` (trailing windows).
    Windows start at the first trade's ``every`` boundary of each
    venue/symbol; windows without trades are not emitted.

    >>> import polars as pl, datetime as dt
    >>> t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    >>> tr = pl.LazyFrame({"ts_exchange": [t0, t0 + dt.timedelta(milliseconds=500),
    ...     t0 + dt.timedelta(seconds=1)], "venue": "x", "symbol": "BTC-USDT",
    ...     "price": [100.0, 102.0, 101.0], "qty": [1.0, 1.0, 2.0], "side": ["buy", "sell", "buy"]})
    >>> ohlcv(tr, "1s").select("open", "high", "close", "volume", "trades").collect().rows()
    [(100.0, 102.0, 102.0, 2.0, 2), (101.0, 101.0, 101.0, 2.0, 1)]
    """
    by = list(by)
    if label not in ("left", "right"):
        raise ValueError(f"ohlcv: label must be 'left' or 'right', got {label!r}")
    every_ns, period_ns = _fixed_ns(every), _fixed_ns(period) if period is not None else None
    if period_ns is not None and every_ns is not None and period_ns != every_ns:
        _ordered(trades, by, time_column)  # validates the columns
        return _overlapping(trades, every_ns, period_ns, by, time_column, label)
    if period is not None and period_ns is None and period != every:
        out = (_ordered(trades, by, time_column)
               .group_by_dynamic(time_column, every=every, period=period, group_by=by or None,
                                 closed="left", label=label, start_by="window")
               .agg(bar_aggs()).rename({time_column: "bucket"}))
        return out.sort([*by, "bucket"])
    # non-overlapping windows: a hash group-by on the truncated time; open/close
    # ordered inside each bucket by (time, trade_id), no global sort
    names = trades.collect_schema().names()
    missing = [c for c in (time_column, "price", "qty", "side", *by) if c not in names]
    if missing:
        raise ValueError(f"bars: trades lack column(s) {missing}; got {names}")
    order = [time_column] + (["trade_id"] if "trade_id" in names else [])
    every_s = every if isinstance(every, str) else f"{every // dt.timedelta(microseconds=1)}us"
    bucket = pl.col(time_column).dt.truncate(every_s)
    if label == "right":
        bucket = bucket.dt.offset_by(every_s)
    out = trades.group_by([*by, bucket.alias("bucket")]).agg(bar_aggs(order_by=order))
    return out.sort([*by, "bucket"])


_UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
          "h": 3_600_000_000_000, "d": 86_400_000_000_000}


def _fixed_ns(d: str | dt.timedelta) -> int | None:
    """Nanoseconds of a fixed duration ('250ms', '1s', '1h30m', timedelta); None if calendar-based."""
    if isinstance(d, dt.timedelta):
        return d // dt.timedelta(microseconds=1) * 1_000
    import re

    parts = re.findall(r"(\d+)(ns|us|ms|s|m|h|d)", d)
    if not parts or "".join(a + b for a, b in parts) != d:
        return None
    return sum(int(a) * _UNITS[b] for a, b in parts)


def _overlapping(lf: pl.LazyFrame, every_ns: int, period_ns: int, by: list[str],
                 time_column: str, label: Literal["left", "right"]) -> pl.LazyFrame:
    """Windows of ``period`` stepped by ``every`` as an exact group-by.

    Each trade is copied into the ``ceil(period/every)`` windows that contain it
    and then a plain group-by aggregates (Polars' own overlapping windows use
    add-and-subtract running sums, whose rounding broke VWAP ∈ [low, high]
    by ~1e-12 relative in our property test).
    """
    t = pl.col(time_column)
    k_max = -(-period_ns // every_ns)
    every = pl.duration(nanoseconds=every_ns)
    b0 = t.dt.truncate(f"{every_ns}ns")
    first = b0.min().over(by) if by else b0.min()
    lf = (lf.with_columns(b0.alias("__b0"), first.alias("__first"),
                          pl.int_ranges(0, k_max, dtype=pl.Int64).alias("__k"))
          .explode("__k")
          .with_columns((pl.col("__b0") - every * pl.col("__k")).alias("bucket"))
          .filter((t < pl.col("bucket") + pl.duration(nanoseconds=period_ns))
                  & (pl.col("bucket") >= pl.col("__first"))))
    names = lf.collect_schema().names()
    order = [time_column] + (["trade_id"] if "trade_id" in names else [])
    out = lf.group_by([*by, "bucket"]).agg(bar_aggs(order_by=order))
    if label == "right":
        out = out.with_columns(pl.col("bucket") + pl.duration(nanoseconds=period_ns))
    return out.sort([*by, "bucket"])


def _count_bars(trades: pl.LazyFrame, bar_id: pl.Expr, by: list[str], time_column: str) -> pl.LazyFrame:
    lf = _ordered(trades, by, time_column).with_columns(bar_id.alias("bar"))
    return (lf.group_by([*by, "bar"], maintain_order=True)
            .agg(pl.col(time_column).first().alias("start"), pl.col(time_column).last().alias("end"),
                 *bar_aggs())
            .sort([*by, "bar"]))


def tick_bars(trades: pl.LazyFrame, n: int, *, by: Sequence[str] = ("venue", "symbol"),
              time_column: str = "ts_exchange") -> pl.LazyFrame:
    """Bars of ``n`` consecutive trades per venue/symbol (the last bar may be short).

    Adds ``bar`` (0, 1, …), ``start``/``end`` (first/last trade time) and the bar columns.

    >>> import polars as pl
    >>> tr = pl.LazyFrame({"ts_exchange": [1, 2, 3], "venue": "x", "symbol": "s",
    ...     "price": [100.0, 102.0, 101.0], "qty": [1.0, 1.0, 2.0], "side": ["buy", "sell", "buy"]})
    >>> tick_bars(tr, 2).select("bar", "open", "close", "trades").collect().rows()
    [(0, 100.0, 102.0, 2), (1, 101.0, 101.0, 1)]
    """
    if n < 1:
        raise ValueError(f"tick_bars: n must be >= 1, got {n}")
    by = list(by)
    idx = pl.int_range(pl.len(), dtype=pl.Int64)
    return _count_bars(trades, (idx.over(by) if by else idx) // n, by, time_column)


def _threshold_bars(trades: pl.LazyFrame, amount: pl.Expr, size: float, by: list[str],
                    time_column: str, name: str) -> pl.LazyFrame:
    if not size > 0:
        raise ValueError(f"{name}: bar size must be > 0, got {size}")
    before = amount.cum_sum() - amount  # amount traded before this trade
    before = before.over(by) if by else before
    return _count_bars(trades, (before / size).floor().cast(pl.Int64), by, time_column)


def volume_bars(trades: pl.LazyFrame, volume: float, *, by: Sequence[str] = ("venue", "symbol"),
                time_column: str = "ts_exchange") -> pl.LazyFrame:
    """Bars closing once ``volume`` base units have traded (per venue/symbol).

    A trade belongs to the bar in which it starts: bar = ⌊(Σ qty before it) / volume⌋,
    so the trade that crosses the threshold closes its bar (trades are not split).

    >>> import polars as pl
    >>> tr = pl.LazyFrame({"ts_exchange": [1, 2, 3], "venue": "x", "symbol": "s",
    ...     "price": [100.0, 102.0, 101.0], "qty": [1.0, 1.5, 2.0], "side": ["buy", "sell", "buy"]})
    >>> volume_bars(tr, 2.0).select("bar", "volume", "trades").collect().rows()
    [(0, 2.5, 2), (1, 2.0, 1)]
    """
    return _threshold_bars(trades, pl.col("qty"), volume, list(by), time_column, "volume_bars")


def dollar_bars(trades: pl.LazyFrame, notional: float, *, by: Sequence[str] = ("venue", "symbol"),
                time_column: str = "ts_exchange") -> pl.LazyFrame:
    """Bars closing once ``notional`` quote units (Σ price·qty) have traded.

    Same rule as :func:`volume_bars` on price·qty.

    >>> import polars as pl
    >>> tr = pl.LazyFrame({"ts_exchange": [1, 2, 3], "venue": "x", "symbol": "s",
    ...     "price": [100.0, 100.0, 100.0], "qty": [1.0, 1.5, 2.0], "side": ["buy", "sell", "buy"]})
    >>> dollar_bars(tr, 200.0).select("bar", "notional").collect().rows()
    [(0, 250.0), (1, 200.0)]
    """
    return _threshold_bars(trades, pl.col("price") * pl.col("qty"), notional, list(by),
                           time_column, "dollar_bars")
