"""Same seed, same stream; injected faults are logged and visible to a client."""

from __future__ import annotations

import asyncio
import json
import zlib
from decimal import Decimal

import httpx
import pytest
from sim_helpers import running
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from recorders.sim.config import FaultConfig


async def _trades(seed: int, n: int) -> list[str]:
    async with running(venues=("binance",), assets=("BTC", "ETH"), speed=5, seed=seed) as sim:
        async with connect(sim.urls()["binance"] + "/stream?streams=ethusdt@trade/ethusdt@bookTicker") as ws:
            return [await asyncio.wait_for(ws.recv(), 20) for _ in range(n)]


def test_same_seed_gives_identical_messages_other_seed_does_not():
    async def main():
        a, b = await asyncio.gather(_trades(11, 150), _trades(11, 150))
        c = await _trades(12, 40)
        return a, b, c

    a, b, c = asyncio.run(main())
    # the two clients joined at slightly different moments: align on the first common message
    start = next(i for i, m in enumerate(a) if m in b)
    j = b.index(a[start])
    common = min(len(a) - start, len(b) - j)
    assert common > 100
    assert a[start:start + common] == b[j:j + common]
    assert not set(a) & set(c)


def _crc(asks, bids) -> int:
    t = lambda s: s.replace(".", "").lstrip("0")  # noqa: E731
    s = "".join(t(p) + t(q) for p, q in asks[:10]) + "".join(t(p) + t(q) for p, q in bids[:10])
    return zlib.crc32(s.encode()) & 0xFFFFFFFF


def test_faults_are_logged_and_seen_by_clients(tmp_path):
    faults = FaultConfig(gap=40, duplicate=40, malformed=40, bad_checksum=40, out_of_order=40)

    async def main():
        async with running(venues=("binance", "kraken"), assets=("BTC",), speed=5, seed=5,
                           faults=faults, truth_dir=str(tmp_path)) as sim:
            seen = {"binance_gap": 0, "malformed": 0, "kraken_bad": 0}
            async with connect(sim.urls()["binance"] + "/ws/btcusdt@depth@100ms") as bws, \
                    connect(sim.urls()["kraken"]) as kws:
                await kws.send(json.dumps({"method": "subscribe", "params": {
                    "channel": "book", "symbol": ["BTC/USD"], "depth": 10}}))
                last_u = None
                kb: dict[str, dict] = {"bids": {}, "asks": {}}

                async def binance():
                    nonlocal last_u
                    while not seen["binance_gap"]:
                        raw = await asyncio.wait_for(bws.recv(), 20)
                        try:
                            d = json.loads(raw)
                        except ValueError:
                            seen["malformed"] += 1
                            continue
                        if last_u is not None and d["U"] != last_u + 1:
                            seen["binance_gap"] += 1
                        last_u = d["u"]

                async def kraken():
                    while not seen["kraken_bad"]:
                        raw = await asyncio.wait_for(kws.recv(), 20)
                        try:
                            m = json.loads(raw, parse_float=str)
                        except ValueError:
                            seen["malformed"] += 1
                            continue
                        if m.get("channel") != "book":
                            continue
                        d = m["data"][0]
                        if m["type"] == "snapshot":
                            kb["bids"], kb["asks"] = {}, {}
                        for side in ("bids", "asks"):
                            for lv in d[side]:
                                if Decimal(lv["qty"]) == 0:
                                    kb[side].pop(Decimal(lv["price"]), None)
                                else:
                                    kb[side][Decimal(lv["price"])] = (lv["price"], lv["qty"])
                        bids = [kb["bids"][k] for k in sorted(kb["bids"], reverse=True)[:10]]
                        asks = [kb["asks"][k] for k in sorted(kb["asks"])[:10]]
                        kb["bids"] = {Decimal(p): (p, q) for p, q in bids}
                        kb["asks"] = {Decimal(p): (p, q) for p, q in asks}
                        if _crc(asks, bids) != d["checksum"]:
                            seen["kraken_bad"] += 1
                            # resync, as a recorder would: resubscribe for a fresh snapshot
                            await kws.send(json.dumps({"method": "unsubscribe", "params": {
                                "channel": "book", "symbol": ["BTC/USD"], "depth": 10}}))
                            await kws.send(json.dumps({"method": "subscribe", "params": {
                                "channel": "book", "symbol": ["BTC/USD"], "depth": 10}}))

                await asyncio.gather(binance(), kraken())
            await asyncio.sleep(0.5)
            kinds = {(f["venue"], f["kind"]) for f in sim.truth.faults}
            sim.truth.flush()
            return seen, kinds

    seen, kinds = asyncio.run(main())
    assert seen["binance_gap"] and seen["kraken_bad"]
    assert ("binance", "gap") in kinds
    assert ("kraken", "bad_checksum") in kinds or ("kraken", "gap") in kinds
    logged = [json.loads(x) for x in (tmp_path / "faults.jsonl").read_text().splitlines()]
    assert logged and all(set(f) == {"ts", "venue", "symbol", "kind", "detail"} for f in logged)
    assert {f["symbol"] for f in logged if f["kind"] == "gap"} <= {"BTC-USDT", "BTC-USD"}
    conns = [json.loads(x) for x in (tmp_path / "connections.jsonl").read_text().splitlines()]
    assert {c["event"] for c in conns} == {"open", "close"}
    trades = [json.loads(x) for x in (tmp_path / "trades.jsonl").read_text().splitlines()]
    assert trades and set(trades[0]) == {"venue", "symbol", "trade_id", "price", "qty", "side", "ts_exchange"}


def test_disconnect_and_rest_errors_are_injected_and_logged():
    faults = FaultConfig(disconnect=30, rest_error=120)

    async def main():
        async with running(venues=("binance",), assets=("BTC",), speed=5, seed=6, faults=faults) as sim:
            url = sim.urls()["binance"] + "/ws/btcusdt@trade"
            async with connect(url) as ws:
                with pytest.raises(ConnectionClosed) as e:
                    while True:
                        await asyncio.wait_for(ws.recv(), 30)
                assert e.value.rcvd is None  # no close frame: an abrupt drop
            statuses = set()
            async with httpx.AsyncClient() as h:
                for _ in range(200):
                    r = await h.get(sim.urls()["binance_rest"] + "/api/v3/depth",
                                    params={"symbol": "BTCUSDT", "limit": 10})
                    statuses.add(r.status_code)
                    if statuses & {429, 503} and 200 in statuses:
                        break
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
            return statuses, list(sim.truth.faults), list(sim.truth.connections)

    statuses, faults_, conns = asyncio.run(main())
    assert statuses & {429, 503} and 200 in statuses
    kinds = {f["kind"] for f in faults_}
    assert {"disconnect", "rest_error"} <= kinds
    closes = [c for c in conns if c["event"] == "close"]
    assert any("disconnect" in c["detail"] for c in closes)


def test_binance_connection_lifetime_closes_the_socket():
    async def main():
        async with running(venues=("binance",), assets=("BTC",), speed=50, lifetime_s=30.0) as sim:
            async with connect(sim.urls()["binance"] + "/ws/btcusdt@trade") as ws:
                with pytest.raises(ConnectionClosed) as e:
                    while True:
                        await asyncio.wait_for(ws.recv(), 30)
                assert e.value.rcvd is not None and e.value.rcvd.code == 1000

    asyncio.run(main())
