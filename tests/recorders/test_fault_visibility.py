"""Pure adapter checks of the fault-visibility rules: receive delay over its recent
floor is a ``lag`` episode, a quiet connection is a ``silence``, a repeated message
is counted, an out-of-order Coinbase trade message still records its trades."""

from __future__ import annotations

import json

from recorders.venues import replay

T0 = 1_764_000_000_000  # ms


def _bybit_trade(i: int, t_ms: int) -> str:
    return json.dumps({"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": t_ms,
                       "data": [{"T": t_ms, "s": "BTCUSDT", "S": "Buy", "v": "1", "p": "100", "i": str(i)}]})


def test_lag_is_measured_over_the_recent_floor_once_per_episode():
    # a feed steadily 3 s behind (no event), then a 1.2 s stall, then back to 3 s
    delays = [3.0] * 20 + [4.2, 4.0, 3.8] + [3.0] * 5
    msgs, times = [], []
    for k, d in enumerate(delays):
        t_ex = T0 + k * 100
        msgs.append(_bybit_trade(k, t_ex))
        times.append(t_ex * 1000 + int(d * 1e6))
    a = replay("bybit", ["BTC-USDT"], msgs, ts_local=times)
    ev = a.out.frame("feed_events")
    assert ev["kind"].to_list() == ["lag", "lag_end"]
    assert "4.200 s, 1.200 s over its recent floor" in ev["detail"][0]
    assert "worst 4.200 s" in ev["detail"][1]


def test_a_quiet_connection_is_a_silence_and_a_repeated_message_is_counted():
    snap = json.dumps({"topic": "orderbook.50.BTCUSDT", "type": "snapshot", "ts": T0,
                       "data": {"s": "BTCUSDT", "b": [["100", "1"]], "a": [["101", "1"]], "u": 5}})
    delta = json.dumps({"topic": "orderbook.50.BTCUSDT", "type": "delta", "ts": T0 + 3000,
                        "data": {"s": "BTCUSDT", "b": [["100", "2"]], "a": [], "u": 6}})
    t = T0 * 1000
    a = replay("bybit", ["BTC-USDT"], [snap, delta, delta], ts_local=[t, t + 3_000_000, t + 3_000_100])
    assert a.out.frame("feed_events")["kind"].to_list() == ["silence"]
    assert a.stats["duplicate_messages"] == 1 and a.books["BTC-USDT"].top()[1] == 2.0


def test_coinbase_out_of_order_trade_message_still_records_its_trades():
    ts = "2026-11-29T12:00:00.000000Z"
    env = lambda n, ch, ev: json.dumps({"channel": ch, "client_id": "", "timestamp": ts,  # noqa: E731
                                        "sequence_num": n, "events": ev})
    trade = lambda n, i: env(n, "market_trades", [{"type": "update", "trades": [  # noqa: E731
        {"trade_id": i, "product_id": "BTC-USD", "price": "100", "size": "1", "side": "BUY", "time": ts}]}])
    # 3 arrives before 2 (a swap on the wire): 2 is out of order, yet its trade is real
    a = replay("coinbase", ["BTC-USD"], [trade(1, "a"), trade(3, "c"), trade(2, "b"), trade(2, "b")])
    assert sorted(a.out.frame("trades")["trade_id"]) == ["a", "b", "c"]
    kinds = a.out.frame("feed_events")["kind"].to_list()
    assert kinds == ["gap", "out_of_order", "out_of_order"]
