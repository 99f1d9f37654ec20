"""Pure adapter tests: raw venue JSON in, books and normalised rows out (no sockets).

Reference values are worked by hand from the venues' documented rules or
computed by the small independent implementations in this file.
"""

from __future__ import annotations

import binascii
import json
from decimal import Decimal
from pathlib import Path

import polars as pl

from recorders.venues import replay
from recorders.venues.binance import BinanceAdapter
from recorders.venues.bybit import BybitAdapter
from recorders.venues.coinbase import CoinbaseAdapter
from recorders.venues.kraken import KrakenAdapter
from recorders.venues.okx import OkxAdapter

FIX = Path(__file__).parent / "fixtures"


def _binance_capture() -> tuple[list[str], str]:
    lines = (FIX / "binance_capture.jsonl").read_text().splitlines()
    return lines, (FIX / "binance_snapshot.json").read_text()


def test_binance_capture_drops_diff_covered_by_snapshot_and_keeps_in_flight_diffs():
    lines, snap = _binance_capture()
    # two diffs arrive while the snapshot is in flight, then the snapshot, then the rest
    a = replay("binance", ["BTC-USDT"], [lines[0], lines[1], ("BTC-USDT", snap), lines[2], lines[3]])
    book = a.books["BTC-USDT"]
    assert a.actions == [("snapshot", "BTC-USDT")]
    assert book.levels("bid", 10) == [(36000.5, 0.2), (36000.0, 1.0)]
    assert book.levels("ask", 10) == [(36001.0, 0.5), (36001.5, 2.0), (36002.0, 0.7)]
    bu = a.out.frame("book_updates")
    # 4 snapshot levels, then diff U=499869753 (3 levels) and U=499869756 (1); the first diff dropped
    assert bu["is_snapshot"].to_list() == [True] * 4 + [False] * 4
    assert bu.filter(~bu["is_snapshot"])["seq"].to_list() == [499869755] * 3 + [499869756]
    assert a.stats["gaps"] == 0


def test_binance_trade_buyer_maker_means_aggressor_sold():
    lines, _ = _binance_capture()
    a = replay("binance", ["BTC-USDT"], [lines[2]])
    t = a.out.frame("trades").row(0, named=True)
    assert (t["trade_id"], t["price"], t["qty"], t["side"]) == ("12345", 36000.5, 0.01, "sell")
    assert t["ts_exchange"].timestamp() == 1700000000.249


def test_binance_book_gap_triggers_resync_and_new_snapshot_request():
    lines, snap = _binance_capture()
    gap = json.loads(lines[3])
    gap["data"]["U"] = gap["data"]["u"] = 499869760  # 756..759 lost
    a = replay("binance", ["BTC-USDT"], [lines[0], ("BTC-USDT", snap), lines[1], json.dumps(gap)])
    assert a.stats["gaps"] == 1 and a.stats["resyncs"] == 1
    assert a.synced["BTC-USDT"] is False
    assert a.actions == [("snapshot", "BTC-USDT"), ("snapshot", "BTC-USDT")]
    kinds = a.out.frame("feed_events")["kind"].to_list()
    assert kinds == ["gap", "resync"]
    # the diff that revealed the gap is kept for the next snapshot
    later = {"lastUpdateId": 499869759, "bids": [["1.0", "1.0"]], "asks": [["2.0", "1.0"]]}
    a.on_snapshot("BTC-USDT", json.dumps(later), 10)
    assert a.books["BTC-USDT"].levels("ask", 5) == [(2.0, 1.0), (36002.0, 0.7)]


def test_binance_snapshot_older_than_buffered_diffs_is_fetched_again():
    lines, _ = _binance_capture()
    old = {"lastUpdateId": 499869700, "bids": [], "asks": []}
    a = replay("binance", ["BTC-USDT"], [lines[0], ("BTC-USDT", json.dumps(old))])
    assert a.synced["BTC-USDT"] is False
    assert a.actions == [("snapshot", "BTC-USDT"), ("snapshot", "BTC-USDT")]


def test_malformed_messages_are_quarantined_with_raw_text_never_raised():
    for cls in (BinanceAdapter, CoinbaseAdapter, KrakenAdapter, OkxAdapter, BybitAdapter):
        a = cls(["BTC-USD"])
        for raw in ['{"e":"depthUpdate","s":', "not json", '{"channel":"book","type":"update"}',
                    '[1,2,3]']:
            a.feed(raw, 7)
        ev = a.out.frame("feed_events")
        assert ev.height == 4, cls.venue
        assert set(ev["kind"]) == {"rejected_message"}
        assert "not json" in ev["detail"][1]


# -- Kraken -------------------------------------------------------------------
def kraken_crc_reference(asks: list[tuple[str, str]], bids: list[tuple[str, str]]) -> int:
    """Independent implementation of Kraken's documented checksum, via Decimal text."""
    def fmt(x: str) -> str:
        d = Decimal(x)
        return format(d, "f").replace(".", "").lstrip("0")
    asks = sorted(asks, key=lambda l: Decimal(l[0]))[:10]
    bids = sorted(bids, key=lambda l: -Decimal(l[0]))[:10]
    s = "".join(fmt(p) + fmt(q) for p, q in asks) + "".join(fmt(p) + fmt(q) for p, q in bids)
    return binascii.crc32(s.encode()) & 0xFFFFFFFF


def test_kraken_checksum_formatting_follows_docs_example():
    from recorders.venues.kraken import checksum_text

    assert checksum_text("45285.2", "0.00100000") == "452852100000"  # docs example
    assert checksum_text("0.05000", "0.00000304") == "5000304"  # docs (v1 guide) example


def _kraken_msg(typ, bids, asks, checksum, sym="BTC/USD"):
    lv = lambda ls: ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in ls)  # numbers, raw text
    return (f'{{"channel":"book","type":"{typ}","data":[{{"symbol":"{sym}","bids":[{lv(bids)}],'
            f'"asks":[{lv(asks)}],"checksum":{checksum},"timestamp":"2023-10-06T17:35:55.440295Z"}}]}}')


def test_kraken_keeps_number_text_for_checksum_and_truncates_to_depth():
    bids = [(f"{45280 - i}.{i}", f"0.{i + 1:02d}000000") for i in range(10)]
    asks = [(f"{45290 + i}.5", "1.00000010") for i in range(10)]
    ck = kraken_crc_reference(asks, bids)
    snap = _kraken_msg("snapshot", bids, asks, ck)
    # insert a new best ask; with depth 10 the worst ask falls out without a removal message
    asks2 = [("45289.9", "0.00000010")] + asks[:9]
    upd = _kraken_msg("update", [], [("45289.9", "0.00000010")], kraken_crc_reference(asks2, bids))
    a = replay("kraken", ["BTC-USD"], [snap, upd], depth=10)
    assert a.stats["checksum_failures"] == 0, a.out.frame("feed_events")
    assert a.books["BTC-USD"].depth() == (10, 10)
    assert a.books["BTC-USD"].top()[2:] == (45289.9, 0.0000001)
    # the lake says so too: the ask pushed out is removed in book_updates, so a book rebuilt
    # from the rows is the adapter's book (no phantom level once the better ones go)
    upd_rows = a.out.frame("book_updates").filter(~pl.col("is_snapshot"))
    assert sorted(upd_rows.select("side", "price", "qty").rows()) == [
        ("ask", 45289.9, 0.0000001), ("ask", 45299.5, 0.0)]
    rebuilt: dict[float, float] = {}
    for side, px, qty in a.out.frame("book_updates").filter(side="ask").select("side", "price", "qty").rows():
        if qty:
            rebuilt[px] = qty
        else:
            rebuilt.pop(px, None)
    assert sorted(rebuilt.items()) == a.books["BTC-USD"].levels("ask", 100)


def test_kraken_bad_checksum_is_recorded_and_resubscribes():
    bids, asks = [("100.0", "1.0")], [("101.0", "2.5")]
    good = kraken_crc_reference(asks, bids)
    a = replay("kraken", ["BTC-USD"], [_kraken_msg("snapshot", bids, asks, good),
                                       _kraken_msg("update", [("100.0", "1.5")], [], good)])
    kinds = a.out.frame("feed_events")["kind"].to_list()
    assert kinds == ["checksum_failure", "resync"]
    sent = [json.loads(t) for _, t in a.actions]
    assert [m["method"] for m in sent] == ["unsubscribe", "subscribe"]
    assert sent[1]["params"]["symbol"] == ["BTC/USD"]
    assert a.synced["BTC-USD"] is False


def test_kraken_trades_use_taker_side():
    raw = ('{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"sell","price":'
           '63000.1,"qty":0.002,"ord_type":"market","trade_id":77,"timestamp":"2024-01-01T00:00:00.5Z"}]}')
    t = replay("kraken", ["BTC-USD"], [raw]).out.frame("trades").row(0, named=True)
    assert (t["trade_id"], t["side"], t["price"]) == ("77", "sell", 63000.1)


# -- OKX ----------------------------------------------------------------------
def okx_crc_reference(bids, asks) -> int:
    parts = []
    for i in range(25):
        if i < len(bids):
            parts.append(f"{bids[i][0]}:{bids[i][1]}")
        if i < len(asks):
            parts.append(f"{asks[i][0]}:{asks[i][1]}")
    v = binascii.crc32(":".join(parts).encode())
    return v - 2**32 if v > 2**31 - 1 else v


def _okx(action, bids, asks, ck, seq, prev):
    lv = lambda ls: json.dumps([[p, q, "0", "1"] for p, q in ls])
    return (f'{{"arg":{{"channel":"books","instId":"BTC-USDT"}},"action":"{action}","data":[{{'
            f'"asks":{lv(asks)},"bids":{lv(bids)},"ts":"1597026383085","checksum":{ck},'
            f'"seqId":{seq},"prevSeqId":{prev}}}]}}')


def test_okx_checksum_and_seq_chain():
    bids = [("8476.98", "415"), ("8475.55", "101")]
    asks = [("8476.99", "3"), ("8477", "7"), ("8478.5", "2")]
    snap = _okx("snapshot", bids, asks, okx_crc_reference(bids, asks), 100, -1)
    bids2 = [("8476.98", "400"), ("8475.55", "101")]
    upd = _okx("update", [("8476.98", "400")], [], okx_crc_reference(bids2, asks), 105, 100)
    a = replay("okx", ["BTC-USDT"], [snap, upd])
    assert a.stats["checksum_failures"] == 0 and a.stats["gaps"] == 0
    assert a.books["BTC-USDT"].top() == (8476.98, 400.0, 8476.99, 3.0)
    gap = _okx("update", [], [], okx_crc_reference(bids2, asks), 110, 106)
    a.feed(gap, 99)
    assert a.stats["gaps"] == 1 and a.synced["BTC-USDT"] is False
    assert [json.loads(t)["op"] for _, t in a.actions] == ["unsubscribe", "subscribe"]


# -- Coinbase -----------------------------------------------------------------
def _cb(seq, typ, updates, channel="l2_data"):
    ups = [{"side": s, "event_time": "2023-02-09T20:32:50.714964855Z", "price_level": p,
            "new_quantity": q} for s, p, q in updates]
    return json.dumps({"channel": channel, "client_id": "", "timestamp": "2023-02-09T20:32:50.714964855Z",
                       "sequence_num": seq, "events": [{"type": typ, "product_id": "BTC-USD", "updates": ups}]})


def test_coinbase_offer_is_ask_side_and_sequence_gap_resubscribes():
    msgs = [_cb(0, "snapshot", [("bid", "100.00", "1"), ("offer", "101.00", "2")]),
            _cb(1, "update", [("offer", "100.50", "0.5")]),
            _cb(3, "update", [("bid", "99.00", "9")])]  # 2 lost
    a = replay("coinbase", ["BTC-USD"], msgs)
    assert a.stats["gaps"] == 1
    assert a.synced["BTC-USD"] is False
    subs = [json.loads(t) for _, t in a.actions]
    assert [(m["type"], m["channel"]) for m in subs] == [("unsubscribe", "level2"), ("subscribe", "level2")]
    bu = a.out.frame("book_updates")
    assert bu["side"].to_list() == ["bid", "ask", "ask"]


def test_coinbase_trade_side_is_the_documented_taker_side():
    raw = json.dumps({"channel": "market_trades", "client_id": "", "timestamp": "2023-02-09T20:19:35.39625135Z",
                      "sequence_num": 0, "events": [{"type": "update", "trades": [
                          {"trade_id": "000000000", "product_id": "BTC-USD", "price": "1260.01",
                           "size": "0.3", "side": "BUY", "time": "2019-08-14T20:42:27.265Z"}]}]})
    t = replay("coinbase", ["BTC-USD"], [raw]).out.frame("trades").row(0, named=True)
    assert (t["side"], t["price"], t["qty"]) == ("buy", 1260.01, 0.3)


def test_coinbase_error_messages_are_venue_errors_and_unknown_channels_are_quarantined():
    msgs = [json.dumps({"type": "error", "message": "failure to subscribe"}),
            json.dumps({"channel": "error", "client_id": "", "timestamp": "2023-02-09T20:19:35Z",
                        "sequence_num": 0, "events": [{"message": "unknown product_ids ['X-Y']"}]}),
            json.dumps({"channel": "candles", "client_id": "", "timestamp": "2023-02-09T20:19:35Z",
                        "sequence_num": 1, "events": [{"type": "snapshot"}]})]
    a = replay("coinbase", ["BTC-USD"], msgs)
    ev = a.out.frame("feed_events").select("kind", "detail").rows()
    assert ev[:2] == [("venue_error", "failure to subscribe"), ("venue_error", "unknown product_ids ['X-Y']")]
    assert ev[2][0] == "rejected_message" and "candles" in ev[2][1]
    assert a.stats["rejected"] == 1


# -- Bybit --------------------------------------------------------------------
def _bb(typ, b, a, u):
    return json.dumps({"topic": "orderbook.50.BTCUSDT", "type": typ, "ts": 1671179923028,
                       "data": {"s": "BTCUSDT", "b": b, "a": a, "u": u, "seq": 1}, "cts": 1671179923020})


def test_bybit_u1_resets_book_and_u_gap_resubscribes():
    msgs = [_bb("snapshot", [["10", "1"]], [["11", "1"]], 7),
            _bb("delta", [["9", "2"]], [], 8),
            _bb("delta", [["8", "3"]], [["12", "1"]], 1)]  # service restart: a new snapshot
    a = replay("bybit", ["BTC-USDT"], msgs)
    assert a.books["BTC-USDT"].levels("bid", 5) == [(8.0, 3.0)]
    assert a.stats["gaps"] == 0
    a.feed(_bb("delta", [["7", "1"]], [], 5), 10)
    assert a.stats["gaps"] == 1 and a.synced["BTC-USDT"] is False


def test_binance_first_live_diff_after_snapshot_may_straddle_last_update_id():
    # nothing buffered covers the snapshot; the next live diff U <= lastUpdateId+1 <= u is valid
    snap = {"lastUpdateId": 493, "bids": [["10.0", "1.0"]], "asks": [["11.0", "1.0"]]}
    d = lambda U, u, px: json.dumps({"stream": "btcusdt@depth@100ms", "data": {
        "e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": U, "u": u, "b": [[px, "2.0"]], "a": []}})
    a = replay("binance", ["BTC-USDT"], [d(480, 490, "9.0"), ("BTC-USDT", json.dumps(snap)),
                                         d(493, 495, "9.5"), d(496, 496, "9.6")])
    assert a.stats["gaps"] == 0
    assert a.books["BTC-USDT"].levels("bid", 5) == [(10.0, 1.0), (9.6, 2.0), (9.5, 2.0)]
