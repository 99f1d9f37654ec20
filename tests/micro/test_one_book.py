"""One L2 book and one walk (lab.l2): every twin agrees with it on random books.

The twins exist where their host forces them (numba kernels cannot call Python,
Polars expressions must stay columnar, the backtest engine walks its own
tick-indexed book); each is checked here against the plain-Python original,
and the original against a dict book and hand-computed walks.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab import book as lbook
from lab.arbitrage import walk_spend
from lab.backtest import BacktestConfig, Fees, Latency, build_events, run_backtest
from lab.l2 import Book, spend, walk
from tests.backtest.scenario import S, Script, V
from tests.backtest.scenario import book as scenario_book

# a side: distinct prices (multiples of 0.5, so the engine's tick is exact) and sizes
prices = st.lists(st.integers(1, 400), min_size=1, max_size=12, unique=True)
sizes = st.floats(0.001, 50.0, allow_nan=False, allow_infinity=False)


@st.composite
def sides(draw: st.DrawFn) -> tuple[list[float], list[float]]:
    """Levels best first (ascending prices: an ask side) with their sizes."""
    px = sorted(p * 0.5 for p in draw(prices))
    return px, [draw(sizes) for _ in px]


def _ref_walk(px: list[float], qty: list[float], size: float) -> float:
    """Independent walk, vectorised: level i fills clip(size - sizes before it, 0, q_i)."""
    q = np.array(qty)
    # the exclusive prefix sum (not cumsum - q: that cancels, 32.01 - 32 != 0.01)
    before = np.concatenate(([0.0], np.cumsum(q)[:-1]))
    fills = np.clip(size - before, 0.0, q)
    return math.nan if q.sum() < size * (1 - 1e-12) else float((fills * np.array(px)).sum() / size)


# --------------------------------------------------------------------------- the book
updates = st.lists(st.tuples(st.booleans(), st.integers(1, 30), st.sampled_from([0.0, 0.0, 1.0, 2.5, 7.0])),
                   min_size=1, max_size=80)


@settings(max_examples=60, deadline=None)
@given(updates)
def test_book_equals_a_dict_book_and_the_compiled_rebuild(ups: list[tuple[bool, int, float]]) -> None:
    # Arrange: the same updates into the one book, a dict book and lab.book.rebuild's kernel
    b = Book()
    ref: dict[str, dict[float, float]] = {"bid": {}, "ask": {}}
    for is_bid, p, q in ups:
        side = "bid" if is_bid else "ask"
        b.set(side, float(p), q)
        if q > 0:
            ref[side][float(p)] = q
        else:
            ref[side].pop(float(p), None)
    n = len(ups)
    depth = 40
    _, _, bp, bq, ap, aq = lbook.rebuild_arrays(
        np.zeros(n + 1, np.int64), np.zeros(n + 1, np.int64), np.zeros(n + 1, np.int64),
        np.array([True] + [u[0] for u in ups]), np.array([0.0] + [float(u[1]) for u in ups]),
        np.array([0.0] + [u[2] for u in ups]), np.array([True] + [False] * n), depth=depth,
        require_snapshot=False)
    # Assert: best levels, best first, agree three ways
    want_b = sorted(ref["bid"].items(), reverse=True)
    want_a = sorted(ref["ask"].items())
    assert b.levels("bid", depth) == want_b and b.levels("ask", depth) == want_a
    got_bp, got_bq, got_ap, got_aq = b.top_levels(depth)
    assert list(zip(got_bp, got_bq)) == want_b and list(zip(got_ap, got_aq)) == want_a
    k = [i for i in range(depth) if not np.isnan(bp[-1, i])]
    assert [(bp[-1, i], bq[-1, i]) for i in k] == want_b
    k = [i for i in range(depth) if not np.isnan(ap[-1, i])]
    assert [(ap[-1, i], aq[-1, i]) for i in k] == want_a


def test_book_deletes_on_any_size_not_above_zero() -> None:
    b = Book()
    for q in (0.0, -1.0, math.nan):
        b.set("bid", 100.0, 1.0)
        b.set("bid", 100.0, q)
        assert b.depth() == (0, 0)
    b.set("ask", 101.0, 0.0)  # deleting a missing level does nothing
    assert b.depth() == (0, 0)


def test_recorders_book_is_the_library_book() -> None:
    from recorders.book import Book as RecordersBook

    assert RecordersBook is Book


# --------------------------------------------------------------------------- the walk
@settings(max_examples=150, deadline=None)
@given(sides(), st.floats(0.01, 200.0))
def test_walk_and_its_compiled_and_polars_twins_agree(side: tuple[list[float], list[float]],
                                                      size: float) -> None:
    px, qty = side
    # Act: the one walk, its numba twin, its Polars twin on a wide book
    got = walk(px, qty, size)
    nb_ = lbook.walk_nb(np.array(px), np.array(qty), size)
    wide = pl.DataFrame({**{f"ask_px_{i}": [p] for i, p in enumerate(px)},
                         **{f"ask_qty_{i}": [q] for i, q in enumerate(qty)}})
    ex = wide.select(lbook.walk_expr(size, len(px), "ask")).item()
    # Assert: an independent walk, then bit-for-bit agreement of the twins
    ref = _ref_walk(px, qty, size)
    if math.isnan(ref):
        assert math.isnan(got) and math.isnan(nb_) and ex is None
    else:
        assert got == pytest.approx(ref, rel=1e-12)
        assert nb_ == got and ex == got


def test_walk_treats_a_nan_size_as_a_missing_level() -> None:
    px, qty = [100.0, 101.0, 102.0], [1.0, math.nan, 1.0]
    assert walk(px, qty, 2.0) == lbook.walk_nb(np.array(px), np.array(qty), 2.0) == 101.0


@settings(max_examples=100, deadline=None)
@given(sides(), st.floats(0.5, 20_000.0))
def test_spend_and_its_polars_twin_agree(side: tuple[list[float], list[float]], notional: float) -> None:
    px, qty = side
    got = spend(px, qty, notional)
    wide = pl.DataFrame({**{f"ask_px_{i}": [p] for i, p in enumerate(px)},
                         **{f"ask_qty_{i}": [q] for i, q in enumerate(qty)}})
    ex = wide.select(walk_spend(notional, len(px))).item()
    worth = sum(p * q for p, q in zip(px, qty))
    if worth < notional * (1 - 1e-12):
        assert math.isnan(got) and ex is None
    else:
        # independent: spend level by level
        left, base = notional, 0.0
        for p, q in zip(px, qty):
            take = min(left, p * q)
            base += take / p
            left -= take
        assert got == pytest.approx(base, rel=1e-12)
        assert ex == got


@settings(max_examples=25, deadline=None)
@given(sides(), st.floats(0.01, 200.0))
def test_engine_market_order_fills_average_the_walk(side: tuple[list[float], list[float]],
                                                    size: float) -> None:
    # Arrange: a book whose asks are the random side, a market buy of ``size``
    px, qty = side
    rows = [(0, "bid", 0.25, 1.0, True)] + [(0, "ask", p, q, True) for p, q in zip(px, qty)]
    rows.append((9_000, "bid", 0.25, 2.0, False))
    cfg = BacktestConfig(fees={V: Fees(0.0, 0.0)}, latency=Latency(entry_us=100, response_us=100))
    # Act
    res = run_backtest(Script([(10, lambda c: c.buy(V, S, size))]), build_events(scenario_book(rows), None), cfg)
    # Assert: what the engine's walk filled averages the one walk's price
    filled = res.fills["qty"].sum()
    want = walk(px, qty, size)
    if math.isnan(want):
        assert filled == pytest.approx(sum(qty), rel=1e-9)  # took the whole side, still short
    else:
        assert filled == pytest.approx(size, rel=1e-9)
        vwap = (res.fills["price"] * res.fills["qty"]).sum() / filled
        assert vwap == pytest.approx(want, rel=1e-9)


# --------------------------------------------------------------------------- long <-> wide
def test_from_long_inverts_to_long() -> None:
    w = pl.LazyFrame({"ts_exchange": [1, 2], "venue": ["x", "x"], "symbol": ["s", "s"],
                      "bid_px_0": [99.0, 98.0], "bid_qty_0": [1.0, 2.0], "ask_px_0": [101.0, 100.0],
                      "ask_qty_0": [2.0, 3.0], "bid_px_1": [97.0, None], "bid_qty_1": [4.0, None],
                      "ask_px_1": [102.0, 103.0], "ask_qty_1": [5.0, 6.0]})
    back = lbook.from_long(lbook.to_long(w), 2).collect()
    assert back.select(w.collect_schema().names()).rows() == w.collect().rows()
