"""Must-hold scenarios with fills worked out by hand."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from lab.backtest import BacktestConfig, Fees, Latency, build_events, run_backtest
from tests.backtest.scenario import S, Script, V, book, trades

NOFEE = {V: Fees(0.0, 0.0)}


def cfg(entry: float = 100, resp: float = 100, **kw) -> BacktestConfig:
    return BacktestConfig(fees=kw.pop("fees", NOFEE), latency=Latency(entry_us=entry, response_us=resp), **kw)


SNAP = [(0, "bid", 100.0, 5.0, True), (0, "ask", 101.0, 5.0, True)]


def test_resting_bid_fills_only_after_queue_ahead_trades_away():
    # 5 ahead of us at 100. Sells of 3 and 2 clear the queue (no fill); the
    # next 0.5 fills half our order, the next 1.0 fills the rest (0.5).
    bk = book(SNAP + [(1_000, "bid", 100.0, 2.0, False), (2_000, "bid", 100.0, 0.0, False),
                      (2_000, "bid", 100.0, 1.0, False)])  # our order is the 1.0 left shown
    tr = trades([(1_000, "sell", 100.0, 3.0), (2_000, "sell", 100.0, 2.0),
                 (3_000, "sell", 100.0, 0.5), (4_000, "sell", 100.0, 1.0), (5_000, "sell", 100.0, 1.0)])
    s = Script([(10, lambda c: c.buy(V, S, 1.0, 100.0))])
    res = run_backtest(s, build_events(bk, tr), cfg())
    got = res.fills.select(pl.col("ts_exchange").dt.epoch("us") - pl.col("ts_exchange").dt.epoch("us").min() + 3_000,
                           "price", "qty", "liquidity")
    assert got.rows() == [(3_000, 100.0, 0.5, "maker"), (4_000, 100.0, 0.5, "maker")]
    assert [e for e, _ in s.seen] == ["ack", "fill", "fill"]


def test_no_fill_while_queue_ahead_remains():
    bk = book(SNAP)
    tr = trades([(1_000, "sell", 100.0, 4.9)])
    res = run_backtest(Script([(10, lambda c: c.buy(V, S, 1.0, 100.0))]), build_events(bk, tr), cfg())
    assert res.fills.height == 0


def test_post_only_rejected_when_it_would_cross_and_accepted_when_not():
    bk = book(SNAP + [(5_000, "ask", 101.0, 4.0, False)])
    s = Script([(10, lambda c: c.buy(V, S, 1.0, 101.0, tif="post_only")),
                (20, lambda c: c.buy(V, S, 1.0, 100.0, tif="post_only"))])
    res = run_backtest(s, build_events(bk, None), cfg())
    assert res.fills.height == 0
    ev = dict((u.order_id, e) for e, u in s.seen)
    assert ev == {s.ids[0]: "rejected", s.ids[1]: "ack"}


def test_ioc_partial_fill_walks_levels_up_to_limit_then_expires():
    bk = book([(0, "bid", 100.0, 5.0, True), (0, "ask", 101.0, 0.3, True), (0, "ask", 101.5, 0.2, True),
               (0, "ask", 102.0, 5.0, True), (9_000, "bid", 100.0, 4.0, False)])
    s = Script([(10, lambda c: c.buy(V, S, 1.0, 101.5, tif="ioc"))])
    res = run_backtest(s, build_events(bk, None), cfg(fees={V: Fees(0.0, 0.001)}))
    assert res.fills.select("price", "qty", "liquidity").rows() == [(101.0, 0.3, "taker"), (101.5, 0.2, "taker")]
    assert [e for e, _ in s.seen] == ["fill", "fill", "expired"]
    # fee: 10 bp of notional, 0.3*101 + 0.2*101.5 = 50.6 -> 0.0506
    assert res.fills["fee"].sum() == pytest.approx(0.0506, abs=1e-12)


def test_fok_is_all_or_nothing():
    bk = book([(0, "bid", 100.0, 5.0, True), (0, "ask", 101.0, 0.3, True), (0, "ask", 102.0, 5.0, True),
               (9_000, "bid", 100.0, 4.0, False)])
    s = Script([(10, lambda c: c.buy(V, S, 1.0, 101.0, tif="fok")),
                (20, lambda c: c.buy(V, S, 1.0, 102.0, tif="fok"))])
    res = run_backtest(s, build_events(bk, None), cfg())
    assert res.fills.select("order_id", "price", "qty").rows() == [(s.ids[1], 101.0, 0.3), (s.ids[1], 102.0, 0.7)]
    assert ("expired", s.seen[0][1]) == s.seen[0] and s.seen[0][1].order_id == s.ids[0]


@pytest.mark.parametrize(("entry_us", "filled"), [(200, True), (800, False)])
def test_order_latency_makes_an_ioc_miss_the_price(entry_us: int, filled: bool):
    # the 101 offer is pulled at t=1000 µs; our IOC leaves at t=500 µs
    bk = book(SNAP + [(1_000, "ask", 101.0, 0.0, False), (1_000, "ask", 102.0, 5.0, False),
                      (9_000, "bid", 100.0, 4.0, False)])
    s = Script([(500, lambda c: c.buy(V, S, 1.0, 101.0, tif="ioc"))])
    res = run_backtest(s, build_events(bk, None), cfg(entry=entry_us))
    assert res.fills.height == (1 if filled else 0)
    if filled:
        assert res.fills["ts_exchange"].dt.epoch("us").item() - res.orders["ts"].dt.epoch("us").min() == 200


def test_feed_latency_delays_what_the_strategy_sees():
    # recorded feed latency 700 µs: the strategy's book shows the snapshot only at 700 µs
    bk = book(SNAP + [(5_000, "bid", 100.0, 4.0, False)], feed_us=700)
    seen = []
    s = Script([(600, lambda c: seen.append(c.best_ask(V, S))), (710, lambda c: seen.append(c.best_ask(V, S)))])
    run_backtest(s, build_events(bk, None), cfg())
    assert seen == [None, 101.0]


def test_fees_and_rebates_in_pnl_to_the_cent():
    # maker buy 2 @ 100 with a 1 bp rebate (+0.02), taker sell 2 @ 105 paying 10 bp (-0.21):
    # PnL = 2 * (105 - 100) + 0.02 - 0.21 = 9.81
    bk = book(SNAP + [(3_000, "bid", 105.0, 3.0, False), (3_000, "ask", 106.0, 3.0, False),
                      (3_000, "ask", 101.0, 0.0, False), (9_000, "bid", 105.0, 2.0, False)])
    tr = trades([(2_000, "sell", 100.0, 8.0)])  # clears the 5 ahead and fills our 2
    s = Script([(10, lambda c: c.buy(V, S, 2.0, 100.0, tif="post_only")),
                (4_000, lambda c: c.sell(V, S, 2.0))])
    res = run_backtest(s, build_events(bk, tr), cfg(fees={V: Fees(maker=-0.0001, taker=0.001)}))
    assert res.fills.select("side", "price", "qty", "liquidity").rows() == [
        ("buy", 100.0, 2.0, "maker"), ("sell", 105.0, 2.0, "taker")]
    assert res.fills["fee"].to_list() == pytest.approx([-0.02, 0.21], abs=1e-12)
    assert round(res.equity["equity"][-1], 2) == 9.81
    st = res.stats()
    assert round(st["fees_paid"], 2) == 0.19
    assert round(st["pnl_by_venue"][V], 2) == 9.81


def test_market_order_walks_the_book():
    bk = book([(0, "bid", 100.0, 0.4, True), (0, "bid", 99.0, 0.4, True), (0, "bid", 98.0, 5.0, True),
               (0, "ask", 101.0, 1.0, True), (9_000, "ask", 101.0, 2.0, False)])
    res = run_backtest(Script([(10, lambda c: c.sell(V, S, 1.0))]), build_events(bk, None), cfg())
    assert res.fills["price"].to_list() == [100.0, 99.0, 98.0]
    assert res.fills["qty"].to_list() == pytest.approx([0.4, 0.4, 0.2], abs=1e-12)


def test_prob_queue_model_matches_hand_computation():
    # We join a level of 4 (front=4); it grows to 10 (back=6), then drops by 5 without trades.
    # power-2 model: p = 6^2/(6^2+4^2) = 36/52; front = 4 - (1-p)*5 + min(6 - p*5, 0) = 4 - 80/52
    # A sell of 3 at our price then leaves front - 3 < 0 -> we fill 3 - front = 3 - (4 - 80/52).
    bk = book([(0, "bid", 100.0, 4.0, True), (0, "ask", 101.0, 5.0, True),
               (1_000, "bid", 100.0, 10.0, False), (2_000, "bid", 100.0, 5.0, False),
               (9_000, "ask", 101.0, 4.0, False)])
    tr = trades([(3_000, "sell", 100.0, 3.0)])
    front = 4 - (1 - 36 / 52) * 5
    res = run_backtest(Script([(10, lambda c: c.buy(V, S, 1.0, 100.0))]), build_events(bk, tr),
                       cfg(queue="prob_power", queue_param=2.0))
    assert res.fills["qty"].to_list() == pytest.approx([3 - front], abs=1e-12)
    ra = run_backtest(Script([(10, lambda c: c.buy(V, S, 1.0, 100.0))]), build_events(bk, tr), cfg())
    assert ra.fills.height == 0  # risk-averse: front stays 4, a trade of 3 does not reach us


def test_cancel_before_fill_and_cancel_too_late():
    bk = book(SNAP + [(9_000, "ask", 101.0, 4.0, False)])
    tr = trades([(3_000, "sell", 100.0, 10.0)])
    ids: list[int] = []
    s = Script([(10, lambda c: ids.append(c.buy(V, S, 1.0, 100.0))), (20, lambda c: ids.append(c.buy(V, S, 1.0, 100.0))),
                (1_000, lambda c: c.cancel(ids[0])), (2_950, lambda c: c.cancel(ids[1]))])
    res = run_backtest(s, build_events(bk, tr), cfg())
    # the first cancel arrives at 1,100 µs; the second at 3,050 µs, after the fill at 3,000
    assert res.fills["order_id"].to_list() == [ids[1]]
    events = [(u.order_id, e) for e, u in s.seen]
    assert (ids[0], "canceled") in events and (ids[1], "cancel_rejected") in events


def test_same_inputs_same_results_with_random_latency():
    bk = book(SNAP + [(t, "bid", 100.0, 5.0 - t / 3000, False) for t in range(1_000, 9_000, 1_000)])
    tr = trades([(t + 500, "sell", 100.0, 1.0) for t in range(1_000, 9_000, 1_000)])
    lat = Latency(entry_us=300, response_us=300, dist="lognormal", sigma=0.8, seed=3)
    c = BacktestConfig(fees=NOFEE, latency=lat, queue="prob_log")
    acts = [(t, lambda c: c.buy(V, S, 0.5, 100.0)) for t in range(10, 8_000, 700)]
    r1 = run_backtest(Script(list(acts)), build_events(bk, tr), c)
    r2 = run_backtest(Script(list(acts)), build_events(bk, tr), c)
    assert r1.fills.height > 0
    assert_frame_equal(r1.fills, r2.fills)
    assert_frame_equal(r1.orders, r2.orders)
    assert_frame_equal(r1.equity, r2.equity)


def test_amend_moves_the_order_to_the_back_of_the_new_level():
    # buy 1 @100 behind 5; amended to 99 it joins behind the 2 there. A sell of 4 @100 no longer
    # concerns it; a sell of 2.5 @99 clears the 2 ahead and fills 0.5.
    bk = book(SNAP + [(0, "bid", 99.0, 2.0, True), (9_000, "ask", 101.0, 4.0, False)])
    tr = trades([(2_000, "sell", 100.0, 4.0), (3_000, "sell", 99.0, 2.5)])
    ids: list[int] = []
    s = Script([(10, lambda c: ids.append(c.buy(V, S, 1.0, 100.0))), (1_000, lambda c: c.amend(ids[0], 99.0, 1.0))])
    res = run_backtest(s, build_events(bk, tr), cfg())
    assert res.fills.select("price", "qty").rows() == [(99.0, 0.5)]
    assert [e for e, _ in s.seen] == ["ack", "amended", "fill"]
