"""The engine's price-indexed books against an independent dict book.

The books (lab/backtest/core.py, "books") keep one vector per instrument over a
price window that ``Engine.feed`` widens as prices drift, plus a bitmap to find
the next level when the best one goes. The reference here is a plain dict of
price -> size replayed row by row.
"""

from __future__ import annotations

import numpy as np
import pytest

from lab.backtest import BacktestConfig, Engine, Strategy, build_events, core, run_backtest
from lab.backtest.data import Instrument
from tests.backtest.scenario import T0, S, V, book

T0_US = int(T0.timestamp() * 1_000_000)

TICK = 0.01


class Quiet(Strategy):
    name = "quiet"
    callbacks = frozenset()


def _random_rows(rng: np.random.Generator, t0: int, n: int, centre: int, spread: int) -> list[tuple]:
    """Sparse levels (tens of ticks apart) around ``centre``; a third of rows delete a level,
    often the best one."""
    rows, live = [], {"bid": set(), "ask": set()}
    for k in range(n):
        side = "bid" if rng.random() < 0.5 else "ask"
        sign = -1 if side == "bid" else 1
        if live[side] and rng.random() < 0.35:
            levels = sorted(live[side], reverse=side == "bid")
            p = levels[0] if rng.random() < 0.5 else levels[rng.integers(len(levels))]
            live[side].discard(p)
            rows.append((t0 + k, side, p * TICK, 0.0, False))
        else:
            p = centre + sign * (1 + int(rng.integers(0, spread)) * int(rng.integers(1, 40)))
            live[side].add(p)
            rows.append((t0 + k, side, p * TICK, float(rng.integers(1, 1000)) / 100, False))
    return rows


def _reference(rows: list[tuple]) -> dict[str, dict[int, float]]:
    ref: dict[str, dict[int, float]] = {"bid": {}, "ask": {}}
    snap_t = None
    for t, side, price, qty, is_snap in rows:
        if is_snap and t != snap_t:
            ref = {"bid": {}, "ask": {}}
        snap_t = t if is_snap else None
        p = round(price / TICK)
        if qty <= 0:
            ref[side].pop(p, None)
        else:
            ref[side][p] = qty
    return ref


def _levels(ref: dict[int, float], side: str) -> np.ndarray:
    ps = sorted(ref, reverse=side == "bid")
    return np.array([[p * TICK, ref[p]] for p in ps]).reshape(-1, 2)


def test_books_match_a_dict_book_through_drift_snapshots_and_best_level_deletes():
    rng = np.random.default_rng(7)
    ins = [Instrument(V, S, TICK)]
    eng = Engine(ins, BacktestConfig(), start_us=T0_US, end_us=T0_US + 10_000_000)
    eng.start(Quiet())
    rows: list[tuple] = []
    t = 1_000_000
    for batch in range(6):
        # each batch moves the price by 50,000 ticks: the window must grow (and keep old levels)
        new = _random_rows(rng, t, 800, 9_000_000 + 50_000 * batch, 60)
        if batch == 3:  # a snapshot replaces the book
            snap = [(t, "bid", (9_150_000 - 5 * j) * TICK, 1.0 + j, True) for j in range(5)]
            snap += [(t, "ask", (9_150_100 + 7 * j) * TICK, 2.0 + j, True) for j in range(5)]
            new = snap + [(r[0] + 1, *r[1:]) for r in new]
        rows += new
        t = rows[-1][0] + 1
        ev = build_events(book(new), None, instruments=ins)
        eng.feed(ev, ev.end)
        ref = _reference(rows)
        for b in (0, 1):  # exchange and local books saw the same rows
            for s, side in ((core.BID, "bid"), (core.ASK, "ask")):
                px, qty = core.book_depth(eng.st, b, 0, s, 10_000)
                got = np.column_stack([px * TICK, qty])
                want = _levels(ref[side], side)
                assert got.shape == want.shape, (batch, b, side)
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
        bid, ask = eng.ctx.depth(V, S, levels=3)
        np.testing.assert_allclose(bid, _levels(ref["bid"], "bid")[:3])
        np.testing.assert_allclose(ask, _levels(ref["ask"], "ask")[:3])
        assert eng.ctx.best_bid(V, S) == pytest.approx(max(ref["bid"]) * TICK)
        assert eng.ctx.best_qty(V, S, "ask") == ref["ask"][min(ref["ask"])]
    assert int(eng.arr.ctr[core.C_DROPPED]) == 0


def test_emptied_side_reads_as_empty_and_refills():
    rows = [(0, "bid", 100.0, 1.0, True), (0, "ask", 101.0, 1.0, True),
            (10, "bid", 100.0, 0.0, False), (20, "bid", 99.5, 3.0, False)]
    ins = [Instrument(V, S, TICK)]
    eng = Engine(ins, BacktestConfig(), start_us=T0_US, end_us=T0_US + 100)
    eng.start(Quiet())
    eng.feed(build_events(book(rows[:3]), None, instruments=ins), T0_US + 15)
    assert eng.ctx.best_bid(V, S) is None and eng.ctx.best_qty(V, S, "bid") == 0.0
    assert eng.ctx.depth(V, S)[0].shape == (0, 2)
    eng.feed(build_events(book(rows[3:]), None, instruments=ins), T0_US + 25)
    assert eng.ctx.best_bid(V, S) == 99.5 and eng.ctx.best_qty(V, S, "bid") == 3.0


def test_a_price_beyond_book_ticks_is_dropped_with_a_warning():
    # 1,000 ticks of real book and one row 10 million ticks away: the window (capped at
    # 4,096 ticks) stays on the real book, the stray row is dropped and counted
    rows = [(0, "bid", 100.0, 1.0, True), (0, "ask", 101.0, 1.0, True), (5, "ask", 100_000.0, 1.0, False),
            (9, "bid", 99.0, 2.0, False)]
    cfg = BacktestConfig(book_ticks=4_096)
    with pytest.warns(UserWarning, match="1 book rows fell outside the book window"):
        res = run_backtest(Quiet(), build_events(book(rows), None), cfg)
    assert res.events == 4


def test_resize_keeps_levels_inside_both_windows():
    ins = [Instrument(V, S, TICK)]
    eng = Engine(ins, BacktestConfig(), start_us=T0_US, end_us=T0_US + 100)
    eng.start(Quiet())
    rows = [(0, "bid", 100.0, 1.0, False), (0, "bid", 99.0, 2.0, False), (0, "ask", 101.0, 3.0, False)]
    eng.feed(build_events(book(rows), None, instruments=ins), T0_US + 1)
    a = eng.arr
    lo = int(a.bmeta[0, core.M_LO])
    moved = core.resize_books(a, np.array([9_856]), np.array([192]))  # [98.56, 100.48): drops 101.0 only
    assert core.book_depth(core.as_ref(moved), 1, 0, core.BID, 10)[0].tolist() == [10_000, 9_900]
    assert core.book_depth(core.as_ref(moved), 1, 0, core.ASK, 10)[0].tolist() == []
    assert lo <= 9_900
    with pytest.raises(ValueError, match="multiples of 64"):
        core.resize_books(a, np.array([0]), np.array([100]))

