"""Binance protocol conformance, checked by a tiny client written here from the
documented rules (docs/CONTRACTS.md, Venue rules), not from the simulator's code."""

from __future__ import annotations

import asyncio
import json
import re
from decimal import Decimal

import httpx
from sim_helpers import START_NS, pause_and_drain, recv_json, running, true_book, true_levels
from websockets.asyncio.client import connect

NUM8 = re.compile(r"^\d+\.\d{8}$")


def _check_levels(levels: list) -> None:
    for lv in levels:
        assert isinstance(lv, list) and len(lv) == 2
        assert all(isinstance(x, str) and NUM8.match(x) for x in lv), lv


def test_binance_message_shapes_and_subscribe_method():
    async def main():
        async with running(venues=("binance",), assets=("BTC", "ETH"), speed=10, seed=1) as sim:
            base = sim.urls()["binance"]
            async with connect(base + "/ws/btcusdt@trade") as ws:
                t = await recv_json(ws)
                assert set(t) == {"e", "E", "s", "t", "p", "q", "T", "m", "M"}
                assert t["e"] == "trade" and t["s"] == "BTCUSDT"
                assert NUM8.match(t["p"]) and NUM8.match(t["q"])
                assert isinstance(t["t"], int) and isinstance(t["E"], int) and isinstance(t["m"], bool)
                # Binance BTCUSDT tick is 0.01: the price has no sub-cent digits
                assert t["p"].endswith("000000")
            async with connect(base + "/ws") as ws:
                await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@aggTrade",
                                                                             "ethusdt@depth@100ms"], "id": 7}))
                assert await recv_json(ws) == {"result": None, "id": 7}
                seen = set()
                while seen != {"aggTrade", "depthUpdate"}:
                    m = await recv_json(ws)
                    seen.add(m["e"])
                    if m["e"] == "depthUpdate":
                        assert set(m) == {"e", "E", "s", "U", "u", "b", "a"}
                        assert m["U"] <= m["u"]
                        _check_levels(m["b"])
                        _check_levels(m["a"])
                    else:
                        assert set(m) == {"e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"}
                await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["nosuch@trade"], "id": 8}))
                while True:  # the error reply arrives among market data
                    m = await recv_json(ws)
                    if m.get("id") == 8:
                        assert "error" in m
                        break
            async with connect(base + "/stream?streams=ethbtc@bookTicker") as ws:
                m = await recv_json(ws)
                assert set(m) == {"stream", "data"} and m["stream"] == "ethbtc@bookTicker"
                assert set(m["data"]) == {"u", "s", "b", "B", "a", "A"}
                assert Decimal(m["data"]["b"]) < Decimal(m["data"]["a"])
            async with httpx.AsyncClient() as h:
                r = await h.get(sim.urls()["binance_rest"] + "/api/v3/depth",
                                params={"symbol": "NOPE", "limit": 5})
                assert r.status_code == 400 and r.json()["code"] == -1121
                r = await h.get(sim.urls()["binance_rest"] + "/api/v3/depth",
                                params={"symbol": "ETHUSDT", "limit": 5})
                snap = r.json()
                assert set(snap) == {"lastUpdateId", "bids", "asks"}
                assert len(snap["bids"]) == 5 and len(snap["asks"]) == 5
                _check_levels(snap["bids"])
                px = [Decimal(p) for p, _ in snap["bids"]]
                assert px == sorted(px, reverse=True)

    asyncio.run(main())


class _Book:
    """The documented Binance local-book procedure (snapshot + buffered diffs)."""

    def __init__(self) -> None:
        self.bids: dict[Decimal, str] = {}
        self.asks: dict[Decimal, str] = {}
        self.last_u: int | None = None

    def load(self, snap: dict) -> None:
        self.bids = {Decimal(p): q for p, q in snap["bids"]}
        self.asks = {Decimal(p): q for p, q in snap["asks"]}
        self.last_u = snap["lastUpdateId"]
        self.synced = False

    def apply(self, d: dict) -> bool:
        """Apply one diff; False if it is dropped as older than the snapshot."""
        assert self.last_u is not None
        if d["u"] <= self.last_u:
            return False
        if not self.synced:
            assert d["U"] <= self.last_u + 1 <= d["u"], (d["U"], d["u"], self.last_u)
            self.synced = True
        else:
            assert d["U"] == self.last_u + 1, f"gap: U={d['U']} after u={self.last_u}"
        for side, levels in ((self.bids, d["b"]), (self.asks, d["a"])):
            for p, q in levels:
                if Decimal(q) == 0:
                    side.pop(Decimal(p), None)
                else:
                    side[Decimal(p)] = q
        self.last_u = d["u"]
        return True

    def top(self) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        b, a = max(self.bids), min(self.asks)
        return b, Decimal(self.bids[b]), a, Decimal(self.asks[a])


def test_binance_snapshot_plus_diffs_equals_book_at_every_book_ticker():
    async def main():
        # a start that is not on a whole second (regression: windows straddling model chunks lost diffs)
        async with running(venues=("binance",), assets=("BTC", "ETH"), speed=8, seed=2,
                           start_ns=START_NS + 370_000_000) as sim:
            syms = ("btcusdt", "ethbtc")
            streams = "/".join(f"{s}@{k}" for s in syms for k in ("depth@100ms", "bookTicker"))
            async with connect(sim.urls()["binance"] + "/stream?streams=" + streams) as ws, \
                    httpx.AsyncClient() as h:
                buffered: list[dict] = []
                while any(sum(m["stream"] == f"{s}@depth@100ms" for m in buffered) < 2 for s in syms):
                    buffered.append(await recv_json(ws))
                books = {}
                for s in syms:
                    first_u = min(m["data"]["U"] for m in buffered
                                  if m["stream"] == f"{s}@depth@100ms")
                    while True:
                        r = await h.get(sim.urls()["binance_rest"] + "/api/v3/depth",
                                        params={"symbol": s.upper(), "limit": 1000})
                        snap = r.json()
                        if snap["lastUpdateId"] >= first_u:
                            break
                    books[s] = _Book()
                    books[s].load(snap)
                tickers: dict[str, dict[int, dict]] = {s: {} for s in syms}
                compared = {s: 0 for s in syms}
                dropped = 0

                def handle(m: dict) -> None:
                    nonlocal dropped
                    s, kind = m["stream"].split("@", 1)
                    d = m["data"]
                    if kind == "bookTicker":
                        tickers[s][d["u"]] = d
                        return
                    if not books[s].apply(d):
                        dropped += 1
                        return
                    t = tickers[s].pop(d["u"], None)
                    if t is not None:
                        assert books[s].top() == (Decimal(t["b"]), Decimal(t["B"]),
                                                  Decimal(t["a"]), Decimal(t["A"]))
                        compared[s] += 1

                for m in buffered:
                    handle(m)
                while min(compared.values()) < 60:
                    handle(await recv_json(ws))
                # the final state also equals the simulator's own book, level for level
                for raw in await pause_and_drain(sim, ws):
                    handle(json.loads(raw))
                for l in sim.market.listings:
                    s = l.venue_symbol.lower()
                    if s not in books:
                        continue
                    assert {p: Decimal(q) for p, q in books[s].bids.items()} == true_levels(sim, l.venue_symbol, 0)
                    assert {p: Decimal(q) for p, q in books[s].asks.items()} == true_levels(sim, l.venue_symbol, 1)
                    assert books[s].last_u == true_book(sim, l.venue_symbol).seq

    asyncio.run(main())
