"""Values from the wire are checked: a price or size no venue can mean, and a book
that ends crossed after a venue message, are never stored as good.

Each of nine bad values goes through each adapter, in a book message and in a
trade message (``recorders.venues.replay``, the pure adapters the recorder
drives): no row carries it, a ``bad_value`` feed event names the venue, the
symbol, the field and the value (with the raw message), and the book is
resynced (forgotten, a fresh one asked for). A crossed book is a lost book:
``crossed_book``, the message's rows taken back, resync.
"""

from __future__ import annotations

import json
import math
import re

import pytest

from recorders.venues import replay

# (field, text as sent): the nine values tried in issue 15
BAD = [
    ("price", "NaN"), ("price", "Infinity"), ("price", "0"), ("price", "-100.5"), ("price", "1e309"),
    ("qty", "-1"), ("qty", "NaN"), ("qty", "inf"), ("qty", "1e309"),
]
TS = "2026-11-29T12:00:00.000000Z"
GOOD_BID, GOOD_ASK = ("100", "1"), ("101", "1")


def _num(text: str) -> str:
    """A number as Kraken sends it (a JSON number) where JSON allows it, else a string."""
    return text if re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", text) else json.dumps(text)


# Per venue: (symbol, snapshot messages, book update with one bid (p, q), trade (p, q)).
def binance():
    snap = ("BTC-USDT", json.dumps({"lastUpdateId": 10, "bids": [list(GOOD_BID)], "asks": [list(GOOD_ASK)]}))
    upd = lambda p, q, side="b", n=1: (  # noqa: E731
        '{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1700000000000,"s":"BTCUSDT",'
        f'"U":{10 + n},"u":{10 + n},"b":{json.dumps([[p, q]]) if side == "b" else "[]"},'
        f'"a":{json.dumps([[p, q]]) if side == "a" else "[]"}}}}}')
    trade = lambda p, q, n=1: (  # noqa: E731
        '{"stream":"btcusdt@trade","data":{"e":"trade","E":1700000000000,"s":"BTCUSDT","t":7,'
        f'"p":{json.dumps(p)},"q":{json.dumps(q)},"T":1700000000000,"m":true,"M":true}}}}')
    return "BTC-USDT", [snap], upd, trade


def coinbase():
    lv = lambda side, p, q: {"side": side, "event_time": TS, "price_level": p, "new_quantity": q}  # noqa: E731
    env = lambda seq, ch, ev: json.dumps({"channel": ch, "client_id": "", "timestamp": TS,  # noqa: E731
                                          "sequence_num": seq, "events": ev})
    snap = env(0, "l2_data", [{"type": "snapshot", "product_id": "BTC-USD",
                               "updates": [lv("bid", *GOOD_BID), lv("offer", *GOOD_ASK)]}])
    upd = lambda p, q, side="bid", n=1: env(n, "l2_data", [{"type": "update", "product_id": "BTC-USD",  # noqa: E731
                                                       "updates": [lv(side, p, q)]}])
    trade = lambda p, q, n=1: env(n, "market_trades", [{"type": "update", "trades": [  # noqa: E731
        {"trade_id": "7", "product_id": "BTC-USD", "price": p, "size": q, "side": "BUY", "time": TS}]}])
    return "BTC-USD", [snap], upd, trade


def kraken():
    lvs = lambda ls: ",".join('{"price":' + _num(p) + ',"qty":' + _num(q) + '}' for p, q in ls)  # noqa: E731
    book = lambda typ, bids, asks: (  # noqa: E731
        f'{{"channel":"book","type":"{typ}","data":[{{"symbol":"BTC/USD",'
        f'"bids":[{lvs(bids)}],"asks":[{lvs(asks)}],"timestamp":"{TS}"}}]}}')
    snap = book("snapshot", [GOOD_BID], [GOOD_ASK])
    upd = lambda p, q, side="bid", n=1: book("update", [(p, q)] if side == "bid" else [],  # noqa: E731
                                             [(p, q)] if side == "ask" else [])
    trade = lambda p, q, n=1: (  # noqa: E731
        f'{{"channel":"trade","type":"update","data":[{{"symbol":"BTC/USD","side":"buy",'
        f'"price":{_num(p)},"qty":{_num(q)},"ord_type":"market","trade_id":7,"timestamp":"{TS}"}}]}}')
    return "BTC-USD", [snap], upd, trade


def okx():
    book = lambda action, bids, asks, seq, prev: json.dumps({  # noqa: E731
        "arg": {"channel": "books", "instId": "BTC-USDT"}, "action": action,
        "data": [{"asks": [[p, q, "0", "1"] for p, q in asks], "bids": [[p, q, "0", "1"] for p, q in bids],
                  "ts": "1700000000000", "seqId": seq, "prevSeqId": prev}]})
    snap = book("snapshot", [GOOD_BID], [GOOD_ASK], 1, -1)
    upd = lambda p, q, side="bid", n=1: book("update", [(p, q)] if side == "bid" else [],  # noqa: E731
                                             [(p, q)] if side == "ask" else [], n + 1, n)
    trade = lambda p, q, n=1: json.dumps({"arg": {"channel": "trades", "instId": "BTC-USDT"}, "data": [  # noqa: E731
        {"instId": "BTC-USDT", "tradeId": "7", "px": p, "sz": q, "side": "buy", "ts": "1700000000000"}]})
    return "BTC-USDT", [snap], upd, trade


def bybit():
    book = lambda typ, bids, asks, u: json.dumps({  # noqa: E731
        "topic": "orderbook.50.BTCUSDT", "type": typ, "ts": 1700000000000,
        "data": {"s": "BTCUSDT", "b": [list(x) for x in bids], "a": [list(x) for x in asks], "u": u}})
    snap = book("snapshot", [GOOD_BID], [GOOD_ASK], 5)
    upd = lambda p, q, side="bid", n=1: book("delta", [(p, q)] if side == "bid" else [],  # noqa: E731
                                             [(p, q)] if side == "ask" else [], 5 + n)
    trade = lambda p, q, n=1: json.dumps({"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 1700000000000,
                                     "data": [{"T": 1700000000000, "s": "BTCUSDT", "S": "Buy", "v": q, "p": p,
                                               "i": "7"}]})
    return "BTC-USDT", [snap], upd, trade


VENUES = {"binance": binance, "coinbase": coinbase, "kraken": kraken, "okx": okx, "bybit": bybit}


def _one_event(a, kind):
    ev = a.out.frame("feed_events")
    ev = ev.filter(ev["kind"] == kind)
    assert ev.height == 1, a.out.frame("feed_events").to_dicts()
    return ev.row(0, named=True)


@pytest.mark.parametrize("venue", list(VENUES))
@pytest.mark.parametrize(("field", "text"), BAD)
def test_bad_value_in_a_book_message_is_an_event_never_a_row_and_resyncs(venue, field, text):
    sym, snaps, upd, _ = VENUES[venue]()
    p, q = (text, "2") if field == "price" else ("99.5", text)
    a = replay(venue, [sym], [*snaps, upd(p, q)])
    assert a.stats["bad_values"] == 1
    e = _one_event(a, "bad_value")
    assert (e["venue"], e["symbol"]) == (venue, sym)
    assert e["detail"].startswith(f"bid {field}={float(text)!r}"), e["detail"]
    assert text in e["detail"]  # the raw message, as sent
    # nothing of the bad message reached a table; the good snapshot did
    bu = a.out.frame("book_updates")
    assert bu["is_snapshot"].all() and bu.height == 2
    assert all(math.isfinite(x) and x > 0 for x in bu["price"]) and all(x >= 0 for x in bu["qty"])
    assert a.out.frame("quotes").height == 1
    # the book is lost: forgotten, resync event, a fresh book asked for
    assert a.synced[sym] is False and a.books[sym].depth() == (0, 0)
    assert "resync" in a.out.frame("feed_events")["kind"].to_list()
    assert a.actions, "no fresh book was asked for"


@pytest.mark.parametrize("venue", list(VENUES))
@pytest.mark.parametrize(("field", "text"), BAD)
def test_bad_value_in_a_trade_is_an_event_never_a_row(venue, field, text):
    sym, _, _, trade = VENUES[venue]()
    p, q = (text, "0.5") if field == "price" else ("100", text)
    a = replay(venue, [sym], [trade(p, q, n=1), trade("100", "0.5", n=2)])
    # the bad trade is not stored; a good trade with the same id afterwards is (the
    # bad one did not mark the id as seen)
    t = a.out.frame("trades")
    assert t.select("price", "qty").rows() == [(100.0, 0.5)]
    e = _one_event(a, "bad_value")
    assert (e["venue"], e["symbol"]) == (venue, sym)
    assert e["detail"].startswith(f"trade {field}={float(text)!r}"), e["detail"]


def test_a_zero_size_trade_is_a_bad_value():
    sym, _, _, trade = VENUES["bybit"]()
    a = replay("bybit", [sym], [trade("100", "0")])
    assert a.out.frame("trades").height == 0
    assert _one_event(a, "bad_value")["detail"].startswith("trade qty=0.0")


@pytest.mark.parametrize("venue", list(VENUES))
def test_crossed_book_after_a_message_is_a_lost_book(venue):
    sym, snaps, upd, _ = VENUES[venue]()
    a = replay(venue, [sym], [*snaps, upd("100.5", "3", n=1), upd("101.5", "2", n=2)])  # bid 101.5 >= ask 101
    e = _one_event(a, "crossed_book")
    assert (e["venue"], e["symbol"]) == (venue, sym)
    assert "101.5" in e["detail"] and "101.0" in e["detail"]
    assert a.stats["crossed_books"] == 1
    assert a.synced[sym] is False and a.actions
    # the crossing message's rows were taken back: a book rebuilt from the table never crosses
    bu = a.out.frame("book_updates")
    assert 101.5 not in bu["price"].to_list()
    q = a.out.frame("quotes")
    assert (q["bid_px"] < q["ask_px"]).all() and q.height == 2
    kinds = a.out.frame("feed_events")["kind"].to_list()
    assert kinds == ["crossed_book", "resync"]


def test_binance_crossed_snapshot_asks_for_another_and_keeps_the_buffered_diffs():
    a = replay("binance", ["BTC-USDT"], [
        '{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":11,"u":11,'
        '"b":[["99","1"]],"a":[]}}',
        ("BTC-USDT", json.dumps({"lastUpdateId": 10, "bids": [["102", "1"]], "asks": [["101", "1"]]})),
    ])
    assert a.synced["BTC-USDT"] is False
    assert [k for k, _ in a.actions].count("snapshot") == 2
    good = json.dumps({"lastUpdateId": 10, "bids": [["100", "1"]], "asks": [["101", "1"]]})
    a.on_snapshot("BTC-USDT", good, 9)
    assert a.books["BTC-USDT"].levels("bid", 5) == [(100.0, 1.0), (99.0, 1.0)]  # the buffered diff applied


def test_after_a_bad_value_a_fresh_snapshot_makes_the_book_good_again():
    sym, snaps, upd, _ = VENUES["bybit"]()
    a = replay("bybit", [sym], [*snaps, upd("NaN", "1"), snaps[0]])
    assert a.synced[sym] is True and a.books[sym].top() == (100.0, 1.0, 101.0, 1.0)
