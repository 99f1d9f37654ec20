"""Hayashi–Yoshida covariance, cross-venue lead-lag and a venue-leadership summary.

Asynchronous prices (each venue's mid changes at its own times) make
calendar-grid correlations biased towards zero (the Epps effect). The
Hayashi–Yoshida (2005) estimator sums the products of every pair of returns
whose intervals overlap, with no interpolation; shifting one venue's clock by
θ and maximising the HY correlation over θ estimates the lead-lag
(Hoffmann, Rosenbaum & Yoshida 2013).

The estimators work on numpy arrays of event times and prices (vectorised
``searchsorted``/``cumsum``, no Python loops over rows); :func:`lead_lag` and
:func:`venue_leadership` collect the mid-change events of the venues they
compare from a quotes LazyFrame, so they return (small) LazyFrames built from
those arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba as nb
import numpy as np
import polars as pl

from lab.venues import USD_LIKE

__all__ = ["hayashi_yoshida", "hy_correlation", "hy_lag_profile", "mid_changes", "lead_lag",
           "venue_leadership"]


def _overlap_sums(t1: np.ndarray, t2: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """For each return interval (t1[i-1], t1[i]] the sum of r2 over overlapping (t2[j-1], t2[j]]."""
    c2 = np.concatenate([[0.0], np.cumsum(r2)])  # c2[j] = r2[1] + … + r2[j] with r2 indexed 1…m-1
    # overlap ⇔ t2[j-1] < t1[i] and t2[j] > t1[i-1], j in 1…m-1
    lo = np.searchsorted(t2, t1[:-1], side="right")  # first j with t2[j] > t1[i-1]
    hi = np.searchsorted(t2, t1[1:], side="left")  # j ≤ hi ⇔ t2[j-1] < t1[i]
    lo = np.maximum(lo, 1)
    hi = np.minimum(hi, t2.shape[0] - 1)
    return np.where(hi >= lo, c2[np.clip(hi, 0, None)] - c2[np.clip(lo - 1, 0, None)], 0.0)


@nb.njit(cache=True, nogil=True)
def _hy_profile_kernel(t1, r1, t2, c2, lags):
    """HY sums for each lag with two pointers (O(n + m) per lag); same overlap rule as
    :func:`_overlap_sums` (c2 = [0, cumsum(r2)])."""
    n, m = t1.shape[0], t2.shape[0]
    out = np.empty(lags.shape[0])
    for k in range(lags.shape[0]):
        th = lags[k]
        lo = 0
        hi = 0
        acc = 0.0
        for i in range(1, n):
            a, b = t1[i - 1], t1[i]
            while lo < m and t2[lo] - th <= a:  # first j with t2[j] - th > a
                lo += 1
            while hi < m and t2[hi] - th < b:  # count of j with t2[j] - th < b
                hi += 1
            jl = lo if lo > 1 else 1
            jh = hi if hi < m - 1 else m - 1
            if jh >= jl:
                acc += r1[i - 1] * (c2[jh] - c2[jl - 1])
        out[k] = acc
    return out


def hayashi_yoshida(t1: np.ndarray, p1: np.ndarray, t2: np.ndarray, p2: np.ndarray,
                    *, log: bool = True) -> float:
    """Hayashi–Yoshida (2005) covariance Σᵢ Σⱼ r¹ᵢ r²ⱼ 1{(t¹ᵢ₋₁, t¹ᵢ] ∩ (t²ⱼ₋₁, t²ⱼ] ≠ ∅}.

    ``t1``/``t2`` increasing observation times (any numeric unit), ``p1``/``p2``
    the prices observed then; returns are log differences (``log=False``:
    plain differences).

    >>> import numpy as np
    >>> t1, p1 = np.array([0, 2, 4]), np.array([1.0, 2.0, 4.0])
    >>> t2, p2 = np.array([1, 3]), np.array([10.0, 13.0])
    >>> hayashi_yoshida(t1, p1, t2, p2, log=False)
    9.0
    """
    t1, t2 = np.asarray(t1), np.asarray(t2)
    x1 = np.log(p1) if log else np.asarray(p1, float)
    x2 = np.log(p2) if log else np.asarray(p2, float)
    if t1.shape[0] < 2 or t2.shape[0] < 2:
        return float("nan")
    r1, r2 = np.diff(x1), np.diff(x2)
    return float(np.dot(r1, _overlap_sums(t1, t2, r2)))


def hy_correlation(t1: np.ndarray, p1: np.ndarray, t2: np.ndarray, p2: np.ndarray) -> float:
    """HY covariance of log prices over √(RV¹·RV²) (each RV the sum of squared event returns).

    >>> import numpy as np
    >>> t = np.arange(5)
    >>> round(hy_correlation(t, np.exp([0, 1, 0, 1, 2.0]), t, np.exp([0, 1, 0, 1, 2.0])), 6)
    1.0
    """
    r1, r2 = np.diff(np.log(p1)), np.diff(np.log(p2))
    d = np.sqrt(np.dot(r1, r1) * np.dot(r2, r2))
    return float(hayashi_yoshida(t1, p1, t2, p2) / d) if d > 0 else float("nan")


def hy_lag_profile(t1: np.ndarray, p1: np.ndarray, t2: np.ndarray, p2: np.ndarray,
                   lags: np.ndarray) -> np.ndarray:
    """HY correlation of series 1 against series 2 shifted back by each θ in ``lags``.

    Entry k correlates x¹ at t with x² at t + θₖ: a peak at θ > 0 means series 1
    leads series 2 by θ (Hoffmann, Rosenbaum & Yoshida 2013, eq. 2).

    >>> import numpy as np
    >>> t = np.arange(0, 100, 10)
    >>> p = np.exp(np.cumsum(np.where(np.arange(10) % 3 == 0, 1.0, -0.5)))
    >>> prof = hy_lag_profile(t, p, t + 20, p, np.array([0, 10, 20, 30]))
    >>> int(np.array([0, 10, 20, 30])[np.argmax(prof)])
    20
    """
    t1 = np.asarray(t1, np.int64)
    t2 = np.asarray(t2, np.int64)
    if t1.shape[0] < 2 or t2.shape[0] < 2:
        return np.full(len(lags), np.nan)
    r1, r2 = np.diff(np.log(p1)), np.diff(np.log(p2))
    d = np.sqrt(np.dot(r1, r1) * np.dot(r2, r2))
    if not d > 0:
        return np.full(len(lags), np.nan)
    c2 = np.concatenate([[0.0], np.cumsum(r2)])
    return _hy_profile_kernel(t1, r1, t2, c2, np.asarray(lags, np.int64)) / d


def _peak(lags: np.ndarray, prof: np.ndarray, within: float = 0.05) -> float:
    """Correlation-weighted centroid of the lags whose |ρ| is within ``within`` of the peak."""
    a = np.abs(prof)
    top = a >= (1 - within) * np.nanmax(a)
    return float((lags[top] * a[top]).sum() / a[top].sum())


def mid_changes(quotes: pl.LazyFrame, *, time_column: str = "ts_exchange") -> pl.LazyFrame:
    """The quotes where the mid changes, per venue/symbol: ``venue, symbol, t_ns, mid``.

    >>> q = pl.LazyFrame({"ts_exchange": [1, 2, 3], "venue": "x", "symbol": "s",
    ...                   "bid_px": [1.0, 1.0, 2.0], "ask_px": [3.0, 3.0, 4.0]})
    >>> mid_changes(q).select("mid").collect().to_series().to_list()
    [2.0, 3.0]
    """
    t = pl.col(time_column)
    sch = quotes.collect_schema()
    tns = (t.dt.cast_time_unit("ns").dt.replace_time_zone(None).cast(pl.Int64)
           if isinstance(sch[time_column], pl.Datetime) else t.cast(pl.Int64))
    m = ((pl.col("bid_px") + pl.col("ask_px")) / 2)
    return (quotes.select("venue", "symbol", tns.alias("t_ns"), m.alias("mid"))
            .sort("venue", "symbol", "t_ns", maintain_order=True)
            # several quotes with one timestamp: keep the last
            .unique(["venue", "symbol", "t_ns"], keep="last", maintain_order=True)
            .filter((pl.col("mid") != pl.col("mid").shift(1).over("venue", "symbol"))
                    | pl.col("mid").shift(1).over("venue", "symbol").is_null()))


def _series(df: pl.DataFrame, venue: str, symbol: str) -> tuple[np.ndarray, np.ndarray]:
    s = df.filter((pl.col("venue") == venue) & (pl.col("symbol") == symbol))
    if s.height < 3:
        raise ValueError(f"lead_lag: fewer than 3 mid changes for {venue}/{symbol}")
    return s["t_ns"].to_numpy(), s["mid"].to_numpy()


def lead_lag(quotes: pl.LazyFrame, a: tuple[str, str], b: tuple[str, str], *,
             max_lag_ms: float = 500.0, step_ms: float = 5.0) -> pl.LazyFrame:
    """Lead-lag of venue/symbol ``a`` over ``b`` from the HY correlation of their mids.

    Scans θ ∈ [−max_lag_ms, max_lag_ms] coarsely (≈40 steps), then in
    ``step_ms`` steps around the coarse peak. The HY profile
    ρ(θ) is flat-topped when the venues update less often than ``step_ms``
    (every θ inside a sampling interval pairs the same returns), so the lag
    is the |ρ|-weighted centroid of the θ whose |ρ| is within 5 % of the peak
    rather than the noisy argmax. Returns one row:
    ``a_venue, a_symbol, b_venue, b_symbol, lag_ms`` (> 0: ``a`` moves first,
    ``b`` follows ``lag_ms`` later), ``corr`` (the peak HY correlation),
    ``corr_at_0`` and ``lead_ratio`` = Σ_{θ>0} ρ(θ)² / Σ_{θ<0} ρ(θ)² (> 1: a leads).
    Collects the two venues' mid changes (arrays, not Python objects).

    >>> import polars as pl, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> t = np.sort(rng.choice(100_000, 2_000, replace=False)) * 1_000_000  # ns, irregular
    >>> m = 100 * np.exp(np.cumsum(rng.normal(0, 1e-4, 2_000)))
    >>> q = pl.concat([pl.LazyFrame({"ts_exchange": t, "venue": "a", "symbol": "s", "bid_px": m, "ask_px": m}),
    ...                pl.LazyFrame({"ts_exchange": t + 200_000_000, "venue": "b", "symbol": "s",
    ...                              "bid_px": m, "ask_px": m})])
    >>> lead_lag(q, ("a", "s"), ("b", "s"), step_ms=10).select("lag_ms").collect().item()
    200.0
    """
    df = (mid_changes(quotes.filter(
        ((pl.col("venue") == a[0]) & (pl.col("symbol") == a[1]))
        | ((pl.col("venue") == b[0]) & (pl.col("symbol") == b[1])))).collect())
    return pl.LazyFrame([_lead_lag_row(df, a, b, max_lag_ms, step_ms)])


def _lead_lag_row(df: pl.DataFrame, a: tuple[str, str], b: tuple[str, str], max_lag_ms: float,
                  step_ms: float) -> dict:
    t1, p1 = _series(df, *a)
    t2, p2 = _series(df, *b)
    # coarse scan over the whole range, then every step_ms around the coarse peak
    coarse = max(step_ms, min(4 * step_ms, 2 * max_lag_ms / 40))
    lags_c = np.arange(-max_lag_ms, max_lag_ms + coarse / 2, coarse)
    prof_c = hy_lag_profile(t1, p1, t2, p2, (lags_c * 1e6).astype(np.int64))
    top = lags_c[np.abs(prof_c) >= 0.9 * np.nanmax(np.abs(prof_c))]
    lags_f = np.arange(max(top.min() - 2 * coarse, -max_lag_ms), min(top.max() + 2 * coarse, max_lag_ms)
                       + step_ms / 2, step_ms)
    prof_f = hy_lag_profile(t1, p1, t2, p2, (lags_f * 1e6).astype(np.int64))
    k = int(np.nanargmax(np.abs(prof_f)))
    pos, neg = lags_c > 0, lags_c < 0
    den = np.nansum(prof_c[neg] ** 2)
    at0 = hy_lag_profile(t1, p1, t2, p2, np.array([0]))[0]
    return {"a_venue": a[0], "a_symbol": a[1], "b_venue": b[0], "b_symbol": b[1],
            "lag_ms": _peak(lags_f, prof_f), "corr": float(prof_f[k]), "corr_at_0": float(at0),
            "lead_ratio": float(np.nansum(prof_c[pos] ** 2) / den) if den > 0 else float("inf")}


def venue_leadership(quotes: pl.LazyFrame, *, venues: Sequence[str] | None = None,
                     assets: Sequence[str] | None = None, quote_assets: Sequence[str] = USD_LIKE,
                     max_lag_ms: float = 500.0, step_ms: float = 5.0) -> pl.LazyFrame:
    """Which venue moves first, and by how many ms, per asset.

    For each asset (the base of ``BASE-QUOTE``; USD and USDT books of one
    asset are compared with each other; books quoted in other assets, such
    as ETH-BTC, are left out unless listed in ``quote_assets``) and each venue pair, :func:`lead_lag`
    gives the lag. Each venue's delay is its median lag behind the others;
    the leader is the venue with the smallest delay. Emits
    ``asset, venue, symbol, lag_ms`` (behind the leader, ms; 0 for the
    leader), ``is_leader``, ``mean_corr`` (mean peak HY correlation with the
    other venues).

    >>> import polars as pl, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> t = np.sort(rng.choice(100_000, 2_000, replace=False)) * 1_000_000
    >>> m = 100 * np.exp(np.cumsum(rng.normal(0, 1e-4, 2_000)))
    >>> q = pl.concat([pl.LazyFrame({"ts_exchange": t + d * 1_000_000, "venue": v, "symbol": "BTC-USD",
    ...     "bid_px": m, "ask_px": m}) for v, d in (("a", 0), ("b", 100), ("c", 250))])
    >>> venue_leadership(q, step_ms=10).select("venue", "lag_ms").collect().rows()
    [('a', 0.0), ('b', 100.0), ('c', 250.0)]
    """
    lf = quotes
    if venues is not None:
        lf = lf.filter(pl.col("venue").is_in(list(venues)))
    lf = lf.filter(pl.col("symbol").str.split("-").list.last().is_in(list(quote_assets)))
    changes = mid_changes(lf).collect()
    pairs = (changes.select("venue", "symbol").unique().with_columns(
        pl.col("symbol").str.split("-").list.first().alias("asset"))
        .sort("asset", "venue", "symbol"))
    if assets is not None:
        pairs = pairs.filter(pl.col("asset").is_in(list(assets)))
    rows = []
    for (asset,), g in pairs.group_by(["asset"], maintain_order=True):
        books = list(zip(g["venue"], g["symbol"]))
        if len(books) < 2:
            continue
        n = len(books)
        lag = np.zeros((n, n))
        corr = np.full((n, n), np.nan)
        for i in range(n):
            for j in range(i + 1, n):
                r = _lead_lag_row(changes, books[i], books[j], max_lag_ms, step_ms)
                lag[i, j], lag[j, i] = r["lag_ms"], -r["lag_ms"]
                corr[i, j] = corr[j, i] = r["corr"]
        # delay of venue j relative to i is lag[i, j]; estimate each venue's clock offset
        # as the mean over i of lag[i, j] (least squares for offsets d_j − d_i = lag[i, j])
        offs = lag.mean(axis=0)
        offs = offs - offs.min()
        lead = int(np.argmin(offs))
        for k, (v, s) in enumerate(books):
            rows.append({"asset": asset, "venue": v, "symbol": s, "lag_ms": float(np.round(offs[k], 6)),
                         "is_leader": k == lead, "mean_corr": float(np.nanmean(corr[k]))})
    schema = {"asset": pl.String, "venue": pl.String, "symbol": pl.String, "lag_ms": pl.Float64,
              "is_leader": pl.Boolean, "mean_corr": pl.Float64}
    return pl.DataFrame(rows, schema=schema).lazy()
