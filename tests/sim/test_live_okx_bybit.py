"""OKX v5 and Bybit v5 conformance with independent minimal clients (docs/CONTRACTS.md, Venue rules)."""

from __future__ import annotations

import asyncio
import json
import zlib
from decimal import Decimal

from sim_helpers import pause_and_drain, recv_json, running, true_book, true_levels
from websockets.asyncio.client import connect


def _okx_crc(bids: list[list[str]], asks: list[list[str]]) -> int:
    parts: list[str] = []
    for i in range(25):
        if i < len(bids):
            parts += [bids[i][0], bids[i][1]]
        if i < len(asks):
            parts += [asks[i][0], asks[i][1]]
    c = zlib.crc32(":".join(parts).encode())
    return c - 2**32 if c >= 2**31 else c


def test_okx_books_sequence_and_signed_checksum():
    async def main():
        async with running(venues=("okx",), assets=("BTC", "ETH"), speed=10, seed=8) as sim:
            async with connect(sim.urls()["okx"]) as ws:
                await ws.send(json.dumps({"op": "subscribe", "args": [
                    {"channel": "books", "instId": "BTC-USDT"}, {"channel": "trades", "instId": "BTC-USDT"}]}))
                book: dict[str, dict[Decimal, list[str]]] = {"bids": {}, "asks": {}}
                last_seq = None
                n_upd = n_trades = 0
                events = 0

                def handle(raw: str) -> None:
                    nonlocal last_seq, n_upd, n_trades, events
                    m = json.loads(raw)
                    if "event" in m:
                        assert m["event"] == "subscribe"
                        events += 1
                        return
                    if m["arg"]["channel"] == "trades":
                        t = m["data"][0]
                        assert t["side"] in ("buy", "sell") and isinstance(t["px"], str)
                        n_trades += 1
                        return
                    d = m["data"][0]
                    if m["action"] == "snapshot":
                        book["bids"], book["asks"] = {}, {}
                        assert d["prevSeqId"] == -1
                    else:
                        assert d["prevSeqId"] == last_seq, (d["prevSeqId"], last_seq)
                        n_upd += 1
                    last_seq = d["seqId"]
                    for side in ("bids", "asks"):
                        for lv in d[side]:
                            assert len(lv) == 4 and all(isinstance(x, str) for x in lv)
                            if Decimal(lv[1]) == 0:
                                book[side].pop(Decimal(lv[0]), None)
                            else:
                                book[side][Decimal(lv[0])] = lv
                    bids = [book["bids"][k] for k in sorted(book["bids"], reverse=True)[:25]]
                    asks = [book["asks"][k] for k in sorted(book["asks"])[:25]]
                    assert _okx_crc(bids, asks) == d["checksum"]

                while n_upd < 150 or n_trades < 3:
                    handle(await asyncio.wait_for(ws.recv(), 20))
                assert events == 2
                for raw in await pause_and_drain(sim, ws):
                    handle(raw)
                assert {k: Decimal(v[1]) for k, v in book["bids"].items()} == true_levels(sim, "BTC-USDT", 0)
                assert last_seq == true_book(sim, "BTC-USDT").seq

    asyncio.run(main())


def test_bybit_orderbook50_snapshot_delta_u_continuous():
    async def main():
        async with running(venues=("bybit",), assets=("BTC", "ETH"), speed=10, seed=9) as sim:
            async with connect(sim.urls()["bybit"]) as ws:
                await ws.send(json.dumps({"op": "subscribe", "args": ["orderbook.50.ETHBTC",
                                                                      "publicTrade.ETHBTC"]}))
                ack = await recv_json(ws)
                assert ack["success"] is True and ack["op"] == "subscribe"
                book: dict[str, dict[Decimal, Decimal]] = {"b": {}, "a": {}}
                last_u = last_seq = None
                n = trades = 0

                def handle(raw: str) -> None:
                    nonlocal last_u, last_seq, n, trades
                    m = json.loads(raw)
                    if m["topic"].startswith("publicTrade"):
                        assert m["data"][0]["S"] in ("Buy", "Sell")
                        trades += 1
                        return
                    d = m["data"]
                    if m["type"] == "snapshot":
                        book["b"], book["a"] = {}, {}
                    else:
                        assert m["type"] == "delta"
                        assert d["u"] == last_u + 1, (d["u"], last_u)
                        assert d["seq"] > last_seq
                        n += 1
                    last_u, last_seq = d["u"], d["seq"]
                    for side in ("b", "a"):
                        for p, q in d[side]:
                            if Decimal(q) == 0:
                                book[side].pop(Decimal(p), None)
                            else:
                                book[side][Decimal(p)] = Decimal(q)
                    assert len(book["b"]) <= 50 and len(book["a"]) <= 50
                    assert max(book["b"]) < min(book["a"])

                while n < 100 or trades < 2:
                    handle(await asyncio.wait_for(ws.recv(), 20))
                for raw in await pause_and_drain(sim, ws):
                    handle(raw)
                assert book["b"] == true_levels(sim, "ETHBTC", 0, 50)
                assert book["a"] == true_levels(sim, "ETHBTC", 1, 50)

    asyncio.run(main())
