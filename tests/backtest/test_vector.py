"""Vectorised research mode against a cash-accounting loop written independently."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from lab.backtest import vector

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def quotes(bid, ask, bq, aq) -> pl.LazyFrame:
    n = len(bid)
    return pl.LazyFrame({
        "ts_exchange": [T0 + dt.timedelta(seconds=k, milliseconds=500) for k in range(n)],
        "venue": ["x"] * n, "symbol": ["A-USD"] * n,
        "bid_px": bid, "bid_qty": bq, "ask_px": ask, "ask_qty": aq})


def cash_loop(bid, ask, pos, fee, lag):
    """Trade to pos[t] at the quote `lag` bars later; mark the end at the last mid."""
    cash, held = 0.0, 0.0
    n = len(bid)
    for t in range(n):
        tr = pos[t] - held
        e = t + lag
        if tr != 0 and e < n:
            px = ask[e] if tr > 0 else bid[e]
            cash -= tr * px + fee * abs(tr) * px
            held = pos[t]
        elif tr != 0:  # no quote `lag` bars later: booked at this bar's mid, no cost
            cash -= tr * (bid[t] + ask[t]) / 2
            held = pos[t]
    return cash + held * (bid[-1] + ask[-1]) / 2


@settings(max_examples=25, deadline=None)
@given(hs.lists(hs.tuples(hs.integers(-3, 3), hs.integers(1, 3), hs.floats(0.1, 5), hs.floats(0.1, 5)),
                min_size=3, max_size=30),
       hs.floats(0.0, 0.4), hs.sampled_from([0, 1, 2]))
def test_vector_pnl_equals_cash_accounting(rows, threshold, lag):
    bid = [100.0 + r[0] for r in rows]
    ask = [b + r[1] for b, r in zip(bid, rows)]
    bq = [r[2] for r in rows]
    aq = [r[3] for r in rows]
    fee = 0.001
    lf = vector.bars(quotes(bid, ask, bq, aq))
    lf = vector.with_latency(vector.with_walk_prices(lf, None, 1.0), f"{lag}s")
    lf = vector.imbalance_positions(lf, window=1, threshold=threshold, qty=1.0)
    out = vector.pnl(lf, fee=fee).collect()
    imb = (np.array(bq) - np.array(aq)) / (np.array(bq) + np.array(aq))
    pos = np.where(imb > threshold, 1.0, np.where(imb < -threshold, -1.0, 0.0))
    assert out["pos"].to_list() == pos.tolist()
    ref = cash_loop(bid, ask, pos, fee, lag)
    assert out["pnl"].sum() == pytest.approx(ref, abs=1e-9)


def test_walk_prices_take_depth_beyond_the_touch():
    t = T0
    snaps = pl.LazyFrame({
        "ts_exchange": [t] * 6, "venue": ["x"] * 6, "symbol": ["A-USD"] * 6,
        "level": [0, 1, 2, 0, 1, 2], "side": ["ask"] * 3 + ["bid"] * 3,
        "price": [101.0, 102.0, 103.0, 100.0, 99.0, 98.0], "qty": [0.5, 0.5, 9.0, 1.0, 0.2, 9.0]})
    got = vector.walk_prices(snaps, 1.5).collect()
    # buy 1.5: 0.5@101 + 0.5@102 + 0.5@103 = 153 -> 102; sell 1.5: 1@100 + 0.2@99 + 0.3@98 = 149.2
    assert got["buy_px"].item() == pytest.approx(102.0)
    assert got["sell_px"].item() == pytest.approx(149.2 / 1.5)
    assert vector.walk_prices(snaps, 20.0).collect()["buy_px"].item() is None


def test_sweep_matches_single_runs():
    rng = np.random.default_rng(1)
    n = 200
    bid = list(100 + np.cumsum(rng.integers(-1, 2, n)).astype(float))
    ask = [b + 1 for b in bid]
    bq = list(rng.uniform(0.1, 3, n))
    aq = list(rng.uniform(0.1, 3, n))
    prep = vector.with_latency(vector.with_walk_prices(vector.bars(quotes(bid, ask, bq, aq)), None, 1.0), "1s")
    res = vector.sweep(prep, windows=[1, 5], thresholds=[0.0, 0.2, 0.5], qty=1.0, fee=0.001, chunk=2)
    assert res.height == 6
    for w, th, p in res.select("window", "threshold", "pnl").rows():
        one = vector.pnl(vector.imbalance_positions(prep, window=w, threshold=th, qty=1.0), fee=0.001)
        assert one.collect()["pnl"].sum() == pytest.approx(p, abs=1e-9)
    lf = vector.bars(quotes(bid, ask, bq, aq))
    assert lf.collect_schema() == lf.collect().schema
