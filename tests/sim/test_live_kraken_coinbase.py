"""Kraken v2 and Coinbase Advanced Trade conformance, with independent minimal
clients written from the venues' documented rules (docs/CONTRACTS.md, Venue rules)."""

from __future__ import annotations

import asyncio
import json
import re
import zlib
from decimal import Decimal

from sim_helpers import pause_and_drain, recv_json, running, true_levels
from websockets.asyncio.client import connect


# -- Kraken: the documented checksum ------------------------------------------
def _kraken_text(s: str) -> str:
    return s.replace(".", "").lstrip("0")


def _kraken_crc(asks: list[tuple[str, str]], bids: list[tuple[str, str]]) -> int:
    s = "".join(_kraken_text(p) + _kraken_text(q) for p, q in asks[:10])
    s += "".join(_kraken_text(p) + _kraken_text(q) for p, q in bids[:10])
    return zlib.crc32(s.encode()) & 0xFFFFFFFF


def test_kraken_docs_example_formatting():
    assert _kraken_text("45285.2") == "452852"
    assert _kraken_text("0.00100000") == "100000"


class _KrakenBook:
    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.bids: dict[Decimal, tuple[str, str]] = {}
        self.asks: dict[Decimal, tuple[str, str]] = {}

    def apply(self, d: dict) -> None:
        for side, levels in ((self.bids, d["bids"]), (self.asks, d["asks"])):
            for lv in levels:
                p, q = lv["price"], lv["qty"]  # exact texts (parse_float=str)
                if Decimal(q) == 0:
                    side.pop(Decimal(p), None)
                else:
                    side[Decimal(p)] = (p, q)
        for side, rev in ((self.bids, True), (self.asks, False)):
            for k in sorted(side, reverse=rev)[self.depth:]:
                del side[k]

    def checksum(self) -> int:
        asks = [self.asks[k] for k in sorted(self.asks)]
        bids = [self.bids[k] for k in sorted(self.bids, reverse=True)]
        return _kraken_crc(asks, bids)


def test_kraken_book_checksums_match_and_float_roundtrip_breaks_them():
    async def main():
        async with running(venues=("kraken",), assets=("BTC", "ETH"), speed=10, seed=3) as sim:
            async with connect(sim.urls()["kraken"]) as ws:
                status = await recv_json(ws)
                assert status["channel"] == "status"
                await ws.send(json.dumps({"method": "subscribe", "params": {
                    "channel": "book", "symbol": ["BTC/USD", "ETH/BTC"], "depth": 10}}))
                await ws.send(json.dumps({"method": "subscribe", "params": {
                    "channel": "trade", "symbol": ["BTC/USD"]}}))
                books: dict[str, _KrakenBook] = {}
                checked = float_broken = trades = 0

                def handle(raw: str) -> None:
                    nonlocal checked, float_broken, trades
                    m = json.loads(raw, parse_float=str)
                    if m.get("channel") == "trade":
                        t = m["data"][0]
                        assert t["side"] in ("buy", "sell") and isinstance(t["trade_id"], int)
                        assert re.fullmatch(r"\d+\.\d{8}", t["qty"]), t["qty"]
                        trades += 1
                        return
                    if m.get("channel") != "book":
                        return
                    assert m["type"] in ("snapshot", "update")
                    d = m["data"][0]
                    assert set(d) == {"symbol", "bids", "asks", "checksum", "timestamp"}
                    if m["type"] == "snapshot":
                        books[d["symbol"]] = _KrakenBook(10)
                        assert len(d["bids"]) == 10 and len(d["asks"]) == 10
                    for lv in d["bids"] + d["asks"]:
                        assert re.fullmatch(r"\d+\.\d{8}", lv["qty"]), lv  # 8 decimals, sent as a number
                        assert '"price":' + lv["price"] in raw  # a JSON number, not a string
                    b = books[d["symbol"]]
                    b.apply(d)
                    assert b.checksum() == d["checksum"], d
                    checked += 1
                    # a client that parses floats gets other texts (trailing zeros lost)
                    fm = json.loads(raw)["data"][0]
                    fb = _KrakenBook(10)
                    fb.bids = {Decimal(k): (repr(float(v[0])), repr(float(v[1]))) for k, v in b.bids.items()}
                    fb.asks = {Decimal(k): (repr(float(v[0])), repr(float(v[1]))) for k, v in b.asks.items()}
                    if fb.checksum() != fm["checksum"]:
                        float_broken += 1

                while checked < 150 or trades < 3:
                    handle(await asyncio.wait_for(ws.recv(), 20))
                assert float_broken > 0.9 * checked
                for raw in await pause_and_drain(sim, ws):
                    handle(raw)
                for sym, mine in books.items():
                    assert {k: Decimal(v[1]) for k, v in mine.bids.items()} == true_levels(sim, sym, 0, 10)
                    assert {k: Decimal(v[1]) for k, v in mine.asks.items()} == true_levels(sim, sym, 1, 10)

    asyncio.run(main())


def test_coinbase_sequence_snapshot_offer_side_and_final_book():
    async def main():
        async with running(venues=("coinbase",), assets=("BTC", "ETH"), speed=10, seed=4) as sim:
            async with connect(sim.urls()["coinbase"]) as ws:
                for ch in ("level2", "market_trades"):
                    await ws.send(json.dumps({"type": "subscribe", "product_ids": ["BTC-USD", "ETH-BTC"],
                                              "channel": ch}))
                await ws.send(json.dumps({"type": "subscribe", "channel": "heartbeats"}))
                books: dict[str, tuple[dict, dict]] = {}
                last_seq = -1
                counts = {"l2_data": 0, "market_trades": 0, "heartbeats": 0}
                hb = []

                def handle(raw: str) -> None:
                    nonlocal last_seq
                    m = json.loads(raw)
                    assert set(m) == {"channel", "client_id", "timestamp", "sequence_num", "events"}
                    assert m["sequence_num"] == last_seq + 1, (m["sequence_num"], last_seq)
                    last_seq = m["sequence_num"]
                    ch = m["channel"]
                    counts[ch] = counts.get(ch, 0) + 1
                    if ch == "heartbeats":
                        hb.append(m["events"][0]["heartbeat_counter"])
                    for ev in m["events"]:
                        if ch == "l2_data":
                            pid = ev["product_id"]
                            if ev["type"] == "snapshot":
                                books[pid] = ({}, {})
                            assert pid in books, "update before snapshot"
                            for u in ev["updates"]:
                                assert u["side"] in ("bid", "offer")
                                assert isinstance(u["price_level"], str) and isinstance(u["new_quantity"], str)
                                side = books[pid][0 if u["side"] == "bid" else 1]
                                if Decimal(u["new_quantity"]) == 0:
                                    side.pop(Decimal(u["price_level"]), None)
                                else:
                                    side[Decimal(u["price_level"])] = Decimal(u["new_quantity"])
                            bids, asks = books[pid]
                            assert max(bids) < min(asks)
                        elif ch == "market_trades":
                            for t in ev["trades"]:
                                assert t["side"] in ("BUY", "SELL")
                                assert set(t) == {"trade_id", "product_id", "price", "size", "side", "time"}

                while counts["l2_data"] < 200 or counts["market_trades"] < 5 or counts["heartbeats"] < 3:
                    handle(await asyncio.wait_for(ws.recv(), 20))
                assert hb == sorted(hb) and len(set(hb)) == len(hb)
                for raw in await pause_and_drain(sim, ws):
                    handle(raw)
                for pid, (bids, asks) in books.items():
                    assert bids == true_levels(sim, pid, 0)
                    assert asks == true_levels(sim, pid, 1)

    asyncio.run(main())
