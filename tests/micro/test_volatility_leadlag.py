"""lab.volatility and lab.leadlag against numpy references; lead-lag recovery on simulated data."""

from __future__ import annotations

import bisect
import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab import leadlag, volatility


def _grid_log_mid(rows: list[dict], every_ms: int) -> np.ndarray:
    """Previous-tick log mid on the every_ms grid from floor(first) to the last quote."""
    ts = [r["ts_exchange"].timestamp() * 1000 for r in rows]
    mids = [(r["bid_px"] + r["ask_px"]) / 2 for r in rows]
    g = math.floor(round(ts[0], 3) / every_ms) * every_ms
    out = []
    while g <= ts[-1] + 1e-6:
        i = bisect.bisect_right(ts, g + 1e-6) - 1
        if i >= 0:
            out.append(math.log(mids[i]))
        g += every_ms
    return np.array(out)


def test_rv_bv_tsrv_and_signature_plot_match_numpy(quotes):
    K = 7
    rm = volatility.realized_measures(quotes.lazy(), "500ms", K=K).collect()
    sig = volatility.signature_plot(quotes.lazy(), ["500ms", "2s"]).collect()
    for v in ("binance", "kraken"):
        rows = sorted(quotes.filter(pl.col("venue") == v).iter_rows(named=True), key=lambda r: r["ts_exchange"])
        x = _grid_log_mid(rows, 500)
        r = np.diff(x)
        n = r.size
        rv = np.sum(r ** 2)
        bv = math.pi / 2 * np.sum(np.abs(r[1:]) * np.abs(r[:-1]))
        # TSRV from its definition: the average of the K offset sub-grid RVs minus the bias term
        rv_avg = np.mean([np.sum(np.diff(x[k::K]) ** 2) for k in range(K)])
        ts = rv_avg - (n - K + 1) / K / n * rv
        got = rm.filter(pl.col("venue") == v).row(0, named=True)
        assert got["rv"] == pytest.approx(rv, rel=1e-9)
        assert got["bv"] == pytest.approx(bv, rel=1e-9)
        assert got["tsrv"] == pytest.approx(ts, rel=1e-9)
        s = sig.filter(pl.col("venue") == v)
        assert s["rv"].to_list()[0] == pytest.approx(rv, rel=1e-9)
        assert s["rv"].to_list()[1] == pytest.approx(np.sum(np.diff(_grid_log_mid(rows, 2000)) ** 2), rel=1e-9)


def test_tsrv_removes_the_noise_bias_that_rv_picks_up():
    # efficient price: Brownian, variance 1e-8 per second; observed every 100 ms with iid noise
    rng = np.random.default_rng(5)
    n = 36_000
    x = np.cumsum(rng.normal(0, math.sqrt(1e-8 * 0.1), n))
    y = x + rng.normal(0, 2e-4, n)
    t = [dt.datetime(2026, 1, 1) + dt.timedelta(milliseconds=100 * i) for i in range(n)]
    q = pl.LazyFrame({"ts_exchange": t, "venue": "x", "symbol": "s", "bid_px": 100 * np.exp(y),
                      "ask_px": 100 * np.exp(y)})
    true_iv = 1e-8 * (n - 1) * 0.1
    r = volatility.realized_measures(q, "100ms", K=300).collect().row(0, named=True)
    assert r["rv"] > 20 * true_iv  # noise dominates the tick-by-tick RV
    assert r["tsrv"] == pytest.approx(true_iv, rel=0.35)


def _hy_brute(t1, p1, t2, p2) -> float:
    s = 0.0
    for i in range(1, len(t1)):
        for j in range(1, len(t2)):
            if t1[i - 1] < t2[j] and t2[j - 1] < t1[i]:
                s += (math.log(p1[i]) - math.log(p1[i - 1])) * (math.log(p2[j]) - math.log(p2[j - 1]))
    return s


def _two_walks(a: list[int], b: list[int], seed: int) -> tuple[np.ndarray, ...]:
    """Two log-normal price walks observed at the (sorted) times ``a`` and ``b``."""
    rng = np.random.default_rng(seed)
    t1, t2 = np.sort(a), np.sort(b)
    p1 = np.exp(rng.normal(0, 0.01, t1.size).cumsum())
    p2 = np.exp(rng.normal(0, 0.01, t2.size).cumsum())
    return t1, p1, t2, p2


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 200), min_size=2, max_size=30, unique=True),
       st.lists(st.integers(0, 200), min_size=2, max_size=30, unique=True), st.integers(0, 10_000))
def test_hayashi_yoshida_equals_the_double_sum(a, b, seed):
    t1, p1, t2, p2 = _two_walks(a, b, seed)
    assert leadlag.hayashi_yoshida(t1, p1, t2, p2) == pytest.approx(_hy_brute(t1, p1, t2, p2), abs=1e-15)


def test_hy_is_unbiased_for_asynchronous_correlated_walks_where_a_grid_is_not():
    rng = np.random.default_rng(9)
    n = 200_000
    z1, z2 = rng.normal(size=n), rng.normal(size=n)
    rho = 0.6
    x1 = np.cumsum(0.001 * z1)
    x2 = np.cumsum(0.001 * (rho * z1 + math.sqrt(1 - rho ** 2) * z2))
    t1 = np.sort(rng.choice(n, 8_000, replace=False))
    t2 = np.sort(rng.choice(n, 3_000, replace=False))
    c = leadlag.hy_correlation(t1, np.exp(x1[t1]), t2, np.exp(x2[t2]))
    assert c == pytest.approx(rho, abs=0.05)


def test_lead_lag_recovers_the_simulators_leader_and_lags(sim_lake):
    from recorders.sim.config import SimConfig

    truth = SimConfig(seed=7).lead_lags_ms()
    leader = SimConfig(seed=7).leader
    got = leadlag.venue_leadership(sim_lake.scan("quotes"), max_lag_ms=300, step_ms=10).collect()
    assert set(got["asset"]) == {"BTC", "ETH", "SOL"}
    for (asset,), g in got.group_by(["asset"]):
        lead = g.filter(pl.col("is_leader"))["venue"].to_list()
        assert lead == [leader], (asset, g)
        for v, lag in zip(g["venue"], g["lag_ms"]):
            assert abs(lag - truth[v]) <= 40, (asset, v, lag, truth[v])
    # pooled over assets the lags are within 25 ms
    pooled = got.group_by("venue").agg(pl.col("lag_ms").median())
    for v, lag in pooled.iter_rows():
        assert abs(lag - truth[v]) <= 25, (v, lag, truth[v])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 300), min_size=2, max_size=40, unique=True),
       st.lists(st.integers(0, 300), min_size=2, max_size=40, unique=True), st.integers(0, 10_000))
def test_lag_profile_kernel_equals_the_double_sum_on_shifted_clocks(a, b, seed):
    t1, p1, t2, p2 = _two_walks(a, b, seed)
    lags = np.array([-50, -7, 0, 3, 20, 100])
    r1, r2 = np.diff(np.log(p1)), np.diff(np.log(p2))
    d = math.sqrt(np.dot(r1, r1) * np.dot(r2, r2))
    want = [_hy_brute(t1, p1, t2 - th, p2) / d for th in lags]
    np.testing.assert_allclose(leadlag.hy_lag_profile(t1, p1, t2, p2, lags), want, atol=1e-12)
