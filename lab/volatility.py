"""Realized volatility of the mid price: RV and the signature plot, bipower variation, two-scale RV.

All estimators sample the log mid on a calendar grid with previous-tick
interpolation: grid points tₖ = ⌊first quote⌋_every + k·every up to the last
quote of each venue/symbol, price at tₖ = the last mid at or before tₖ. Returns
rₖ = log pₖ − log pₖ₋₁ (dimensionless; variances are per sample period, not
annualised).

>>> import polars as pl, datetime as dt
>>> t0 = dt.datetime(2026, 1, 1)
>>> q = pl.LazyFrame({"ts_exchange": [t0 + dt.timedelta(seconds=s) for s in (0, 1, 3)], "venue": "x",
...     "symbol": "s", "bid_px": [99.0, 100.0, 99.0], "ask_px": [101.0, 102.0, 101.0]})
>>> round(realized_variance(q, "1s").select("rv").collect().item() * 1e4, 4)
1.9802
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import polars as pl

__all__ = ["sample_mid", "log_returns", "realized_variance", "bipower_variation", "tsrv",
           "realized_measures", "signature_plot"]

By = Sequence[str]


def _over(e: pl.Expr, by: By) -> pl.Expr:
    return e.over(list(by)) if by else e


def sample_mid(quotes: pl.LazyFrame, every: str = "1s", *, by: By = ("venue", "symbol"),
               price: pl.Expr | None = None) -> pl.LazyFrame:
    """The mid (or ``price`` expression) on an ``every`` grid, previous-tick: ``by, ts, mid``.

    >>> import polars as pl, datetime as dt
    >>> t0 = dt.datetime(2026, 1, 1)
    >>> q = pl.LazyFrame({"ts_exchange": [t0, t0 + dt.timedelta(milliseconds=2500)], "venue": "x",
    ...     "symbol": "s", "bid_px": [99.0, 100.0], "ask_px": [101.0, 102.0]})
    >>> sample_mid(q, "1s").select("mid").collect().to_series().to_list()
    [100.0, 100.0, 100.0]
    """
    by = list(by)
    px = price if price is not None else (pl.col("bid_px") + pl.col("ask_px")) / 2
    q = (quotes.select("ts_exchange", *by, px.alias("mid")).drop_nulls("mid")
         .sort("ts_exchange", maintain_order=True))
    span = [pl.col("ts_exchange").min().dt.truncate(every).alias("__a"),
            pl.col("ts_exchange").max().alias("__b")]
    g = q.group_by(by).agg(span) if by else q.select(span)
    grid = (g.with_columns(pl.datetime_ranges("__a", "__b", every).alias("ts"))
            .explode("ts").drop("__a", "__b").drop_nulls("ts").sort("ts"))
    if by:  # as-of join on one u64 key: ~3x faster than on the string columns
        key = pl.concat_str([pl.col(c).cast(pl.String) for c in by], separator="\x1f").hash(0).alias("__k")
        grid, q = grid.with_columns(key), q.with_columns(key).drop(by)
    out = grid.join_asof(q.rename({"ts_exchange": "__qt"}), left_on="ts", right_on="__qt",
                         by="__k" if by else None, strategy="backward", check_sortedness=False)
    return out.drop_nulls("mid").select(*by, "ts", "mid").sort([*by, "ts"])


def log_returns(quotes: pl.LazyFrame, every: str = "1s", *, by: By = ("venue", "symbol")) -> pl.LazyFrame:
    """Log returns of the sampled mid: ``by, ts, r`` (first grid point dropped).

    >>> import polars as pl, datetime as dt
    >>> t0 = dt.datetime(2026, 1, 1)
    >>> q = pl.LazyFrame({"ts_exchange": [t0, t0 + dt.timedelta(seconds=1)], "venue": "x", "symbol": "s",
    ...     "bid_px": [99.0, 100.0], "ask_px": [101.0, 102.0]})
    >>> round(log_returns(q).select("r").collect().item(), 6)
    0.00995
    """
    by = list(by)
    return (sample_mid(quotes, every, by=by)
            .with_columns(_over(pl.col("mid").log().diff(), by).alias("r"))
            .drop_nulls("r").select(*by, "ts", "r"))


def _agg(lf: pl.LazyFrame, by: list[str], e: list[pl.Expr]) -> pl.LazyFrame:
    return lf.group_by(by, maintain_order=True).agg(e).sort(by) if by else lf.select(e)


def realized_variance(quotes: pl.LazyFrame, every: str = "1s", *, by: By = ("venue", "symbol")) -> pl.LazyFrame:
    """Realized variance RV = Σ rₖ² of log mid returns on the ``every`` grid: ``by, rv, n``.

    Andersen, Bollerslev, Diebold & Labys (2001). See the module example.
    """
    by = list(by)
    return _agg(log_returns(quotes, every, by=by), by,
                [(pl.col("r") ** 2).sum().alias("rv"), pl.len().cast(pl.Int64).alias("n")])


def bipower_variation(quotes: pl.LazyFrame, every: str = "1s", *, by: By = ("venue", "symbol")) -> pl.LazyFrame:
    """Bipower variation BV = (π/2) Σ_{k≥2} |rₖ||rₖ₋₁| (Barndorff-Nielsen & Shephard 2004): ``by, bv``.

    Robust to jumps: RV − BV estimates the jump part of the quadratic variation.

    >>> import polars as pl, datetime as dt
    >>> t0 = dt.datetime(2026, 1, 1)
    >>> q = pl.LazyFrame({"ts_exchange": [t0 + dt.timedelta(seconds=s) for s in (0, 1, 2)], "venue": "x",
    ...     "symbol": "s", "bid_px": [99.0, 100.0, 99.0], "ask_px": [101.0, 102.0, 101.0]})
    >>> round(bipower_variation(q).select("bv").collect().item() * 1e4, 4)
    1.5552
    """
    by = list(by)
    a = pl.col("r").abs()
    return _agg(log_returns(quotes, every, by=by), by,
                [(math.pi / 2 * (a * a.shift(1)).sum()).alias("bv")])


def tsrv(quotes: pl.LazyFrame, every: str = "1s", K: int = 300, *, by: By = ("venue", "symbol")) -> pl.LazyFrame:
    """Two-scale realized variance (Zhang, Mykland & Aït-Sahalia 2005, eq. 55): ``by, tsrv``.

    On the ``every`` grid of n returns: RV_all = Σ rₖ²; the average of the K
    offset sub-grid RVs is RV_avg = (1/K) Σ_{i≥K} (Xᵢ − X_{i−K})² (X the log
    mid); n̄ = (n − K + 1)/K; TSRV = RV_avg − (n̄/n)·RV_all. Removes the
    microstructure-noise bias of RV.

    >>> import polars as pl, datetime as dt
    >>> t0 = dt.datetime(2026, 1, 1)
    >>> q = pl.LazyFrame({"ts_exchange": [t0 + dt.timedelta(seconds=s) for s in (0, 1, 2, 3)], "venue": "x",
    ...     "symbol": "s", "bid_px": [99.0, 100.0, 99.0, 100.0], "ask_px": [101.0, 102.0, 101.0, 102.0]})
    >>> round(tsrv(q, K=2).select("tsrv").collect().item() * 1e4, 6)
    -0.990091
    """
    by = list(by)
    if K < 1:
        raise ValueError(f"tsrv: K must be >= 1, got {K}")
    x = (sample_mid(quotes, every, by=by).with_columns(pl.col("mid").log().alias("x"))
         .with_columns(_over(pl.col("x").diff(), by).alias("r"),
                       _over(pl.col("x") - pl.col("x").shift(K), by).alias("rk")))
    n = pl.col("r").count()
    rv_all = (pl.col("r") ** 2).sum()
    rv_avg = (pl.col("rk") ** 2).sum() / K
    nbar = (n - K + 1) / K
    return _agg(x, by, [(rv_avg - nbar / n * rv_all).alias("tsrv")])


def realized_measures(quotes: pl.LazyFrame, every: str = "1s", K: int = 300, *,
                      by: By = ("venue", "symbol")) -> pl.LazyFrame:
    """``rv``, ``bv`` and ``tsrv`` together (one sampling pass): ``by, rv, bv, tsrv``.

    >>> import polars as pl, datetime as dt
    >>> t0 = dt.datetime(2026, 1, 1)
    >>> q = pl.LazyFrame({"ts_exchange": [t0 + dt.timedelta(seconds=s) for s in (0, 1, 2, 3)], "venue": "x",
    ...     "symbol": "s", "bid_px": [99.0, 100.0, 99.0, 100.0], "ask_px": [101.0, 102.0, 101.0, 102.0]})
    >>> r = realized_measures(q, K=2).collect()
    >>> [round(r[c].item() * 1e4, 4) for c in ("rv", "bv", "tsrv")]
    [2.9703, 3.1105, -0.9901]
    """
    by = list(by)
    x = (sample_mid(quotes, every, by=by).with_columns(pl.col("mid").log().alias("x"))
         .with_columns(_over(pl.col("x").diff(), by).alias("r"),
                       _over(pl.col("x") - pl.col("x").shift(K), by).alias("rk")))
    n = pl.col("r").count()
    rv_all = (pl.col("r") ** 2).sum()
    a = pl.col("r").abs()
    return _agg(x, by, [rv_all.alias("rv"), (math.pi / 2 * (a * a.shift(1)).sum()).alias("bv"),
                        ((pl.col("rk") ** 2).sum() / K - (n - K + 1) / K / n * rv_all).alias("tsrv")])


def signature_plot(quotes: pl.LazyFrame, intervals: Sequence[str] = ("100ms", "500ms", "1s", "5s", "15s",
                                                                     "30s", "1m", "5m"),
                   *, by: By = ("venue", "symbol")) -> pl.LazyFrame:
    """RV against the sampling interval (Andersen et al. 2000's volatility signature plot).

    Emits ``by, interval, seconds, rv, n``; plot ``rv`` against ``seconds``.
    Microstructure noise inflates RV at short intervals.

    >>> import polars as pl, datetime as dt
    >>> t0 = dt.datetime(2026, 1, 1)
    >>> q = pl.LazyFrame({"ts_exchange": [t0 + dt.timedelta(seconds=s) for s in (0, 1, 2)], "venue": "x",
    ...     "symbol": "s", "bid_px": [99.0, 100.0, 99.0], "ask_px": [101.0, 102.0, 101.0]})
    >>> signature_plot(q, ["1s", "2s"]).select("interval", "n").collect().rows()
    [('1s', 2), ('2s', 1)]
    """
    by = list(by)
    parts = [realized_variance(quotes, iv, by=by).with_columns(
        pl.lit(iv).alias("interval"), pl.lit(_seconds(iv), pl.Float64).alias("seconds"))
        for iv in intervals]
    return pl.concat(parts).select(*by, "interval", "seconds", "rv", "n").sort([*by, "seconds"])


def _seconds(every: str) -> float:
    import re

    units = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    parts = re.findall(r"(\d+)(ns|us|ms|s|m|h|d)", every)
    if not parts or "".join(a + b for a, b in parts) != every:
        raise ValueError(f"signature_plot: interval {every!r} is not a fixed duration like '500ms' or '1m'")
    return sum(int(a) * units[b] for a, b in parts)
