"""Hypothesis: snapshot + diffs applied by an adapter == the venue's next snapshot
(computed here with plain dicts, independently of recorders.book)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from test_adapters import _kraken_msg, kraken_crc_reference

from recorders.venues import replay

# bids below asks: a crossed book is a lost book (the adapters resync it; tested in
# tests/hardening/test_wire_values.py), so a valid stream never crosses
bid_prices = st.integers(min_value=1, max_value=30).map(lambda i: f"{100 + i * 0.5:.2f}")
ask_prices = st.integers(min_value=31, max_value=60).map(lambda i: f"{100 + i * 0.5:.2f}")
qtys = st.sampled_from(["0", "0.5", "1.25", "3", "0.001"])
bid_lists = st.lists(st.tuples(bid_prices, qtys), max_size=12)
ask_lists = st.lists(st.tuples(ask_prices, qtys), max_size=12)
level_lists = st.tuples(bid_lists, ask_lists)
diff_lists = st.lists(level_lists, min_size=1, max_size=15)


def _apply(book: dict[str, dict[float, float]], side: str, levels) -> None:
    for p, q in levels:
        if float(q) == 0:
            book[side].pop(float(p), None)
        else:
            book[side][float(p)] = float(q)


def _snapshot(snap) -> tuple[list, list, dict[str, dict[float, float]]]:
    """A snapshot's bid and ask levels (sizes of 0 dropped: a snapshot lists none) and the
    reference book they make."""
    bids, asks = ([lv for lv in levels if float(lv[1])] for levels in snap)
    ref: dict[str, dict[float, float]] = {"bid": {}, "ask": {}}
    _apply(ref, "bid", bids)
    _apply(ref, "ask", asks)
    return bids, asks, ref


def _sorted(book):
    return (sorted(book["bid"].items(), reverse=True), sorted(book["ask"].items()))


@settings(max_examples=60, deadline=None)
@given(snap=level_lists, diffs=diff_lists)
def test_binance_snapshot_plus_diffs_equals_next_snapshot(snap, diffs):
    bids, asks, ref = _snapshot(snap)
    body = json.dumps({"lastUpdateId": 100, "bids": bids, "asks": asks})
    msgs: list = [("BTC-USDT", body)]
    u = 100
    for b, a in diffs:
        msgs.append(json.dumps({"stream": "btcusdt@depth@100ms", "data": {
            "e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": u + 1, "u": u + 2, "b": b, "a": a}}))
        u += 2
        _apply(ref, "bid", b)
        _apply(ref, "ask", a)
    ad = replay("binance", ["BTC-USDT"], msgs)
    book = ad.books["BTC-USDT"]
    assert (book.levels("bid", 999), book.levels("ask", 999)) == _sorted(ref)


@settings(max_examples=60, deadline=None)
@given(snap=level_lists, diffs=diff_lists)
def test_bybit_snapshot_plus_deltas_equals_next_snapshot(snap, diffs):
    bids, asks, ref = _snapshot(snap)
    m = lambda typ, b, a, u: json.dumps({"topic": "orderbook.50.BTCUSDT", "type": typ, "ts": 5,
                                         "data": {"s": "BTCUSDT", "b": b, "a": a, "u": u}})
    msgs = [m("snapshot", bids, asks, 10)]
    for i, (b, a) in enumerate(diffs):
        msgs.append(m("delta", b, a, 11 + i))
        _apply(ref, "bid", b); _apply(ref, "ask", a)
    book = replay("bybit", ["BTC-USDT"], msgs).books["BTC-USDT"]
    assert (book.levels("bid", 999), book.levels("ask", 999)) == _sorted(ref)


@settings(max_examples=60, deadline=None)
@given(snap=level_lists, diffs=diff_lists)
def test_kraken_apply_truncate_checksum_matches_reference(snap, diffs):
    depth = 10
    ref: dict[str, dict[str, tuple[str, str]]] = {"bid": {}, "ask": {}}  # key: price text

    def apply(side, levels):
        for p, q in levels:
            if float(q) == 0:
                ref[side].pop(p, None)
            else:
                ref[side][p] = (p, q)
        keep = sorted(ref[side], key=float, reverse=(side == "bid"))[:depth]
        ref[side] = {k: ref[side][k] for k in keep}

    def state():
        return list(ref["ask"].values()), list(ref["bid"].values())

    apply("bid", snap[0]); apply("ask", snap[1])
    msgs = [_kraken_msg("snapshot", list(ref["bid"].values()), list(ref["ask"].values()),
                        kraken_crc_reference(*state()))]
    for b, a in diffs:
        apply("bid", b); apply("ask", a)
        msgs.append(_kraken_msg("update", b, a, kraken_crc_reference(*state())))
    ad = replay("kraken", ["BTC-USD"], msgs, depth=depth)
    assert ad.stats["checksum_failures"] == 0
    book = ad.books["BTC-USD"]
    want_b = sorted(((float(p), float(q)) for p, q in ref["bid"].values()), reverse=True)
    want_a = sorted((float(p), float(q)) for p, q in ref["ask"].values())
    assert (book.levels("bid", 99), book.levels("ask", 99)) == (want_b, want_a)
