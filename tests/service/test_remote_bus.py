"""``lab.bus.subscribe`` pointed at the data service (``grpc://``): the consumers' one
dispatch place. The frames and rows must be those a ``ws://`` subscriber of the hub gets
(the reference: a ws subscriber of the same hub, same published frames), a late
``book_updates`` subscriber gets the books restated first, a refused token is final,
and a service that is not there yet is retried until it is."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from svchelp import TOKEN, private_ca, start

from lab.bus import Hub, Publisher, SubscribeStats, subscribe
from lab.service import DataService, ServiceConfig
from lab.service.client import TokenRefused

T0 = 1_780_000_000_000_000  # µs
BUS_TOKEN = "remote-bus-token-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _book(venue: str, symbol: str, ts: int, seq: int, levels: list[tuple[str, float, float]],
          snapshot: bool) -> list[dict]:
    return [{"ts_exchange": ts - 100, "ts_local": ts, "venue": venue, "symbol": symbol, "side": side,
             "price": px, "qty": qty, "is_snapshot": snapshot, "seq": seq} for side, px, qty in levels]


def _trade(i: int) -> dict:
    return {"ts_exchange": T0 + i, "ts_local": T0 + i + 3, "venue": "kraken", "symbol": "BTC-USD",
            "trade_id": str(i), "price": 100.0 + i % 5, "qty": 0.5, "side": "buy" if i % 2 else "sell"}


def test_grpc_subscriber_gets_the_ws_frames_restatement_first(seed_lake):
    snapshot = _book("binance", "BTC-USDT", T0, 7, [("bid", 99.0, 1.0), ("bid", 98.5, 2.0),
                                                    ("ask", 101.0, 1.5)], True)
    frames = []  # what is published once both subscribers are on: frames of 1 to 5 rows
    for i in range(60):
        if i % 3 == 2:
            frames.append(("trades", [_trade(10 * i + k) for k in range(1 + i % 4)]))
        else:
            frames.append(("book_updates", _book("binance", "BTC-USDT", T0 + 1000 * (i + 1), 8 + i,
                                                 [("bid", 99.0 - 0.5 * k, 1.0 + i) for k in range(1 + i % 5)],
                                                 False)))

    async def main():
        hub = Hub("127.0.0.1", 0, token=BUS_TOKEN)
        await hub.start()
        svc = start(seed_lake, bus_url=hub.url, bus_token=BUS_TOKEN)
        pub = Publisher(hub.url + "/publish", token=BUS_TOKEN)
        asks: list[int] = []

        def on_control(row: dict) -> None:  # a recorder restates its books to the new subscriber
            asks.append(row["to"])
            pub.publish_nowait("book_updates", snapshot, to=row["to"])

        pub.on_control = on_control
        await pub.start()
        while not hub.pubs:
            await asyncio.sleep(0.02)
        # before anyone subscribes: nobody sees it (the restatement stands for it)
        await pub.publish("book_updates", _book("binance", "BTC-USDT", T0 - 5, 6, [("bid", 1.0, 1.0)], False))
        while hub.frames_in < 1:
            await asyncio.sleep(0.02)
        want = sum(len(r) for _, r in frames) + len(snapshot)
        got: dict[str, list] = {"ws": [], "grpc": []}
        stats = SubscribeStats()

        async def consume(name: str, url: str, token: str) -> None:
            n = 0
            async for table, rows in subscribe(["book_updates", "trades"], url=url, token=token, restate=True,
                                               stats=stats if name == "grpc" else None):
                got[name].append((table, rows))
                n += len(rows)
                if n >= want:
                    return

        tasks = [asyncio.create_task(consume("ws", hub.url, BUS_TOKEN)),
                 asyncio.create_task(consume("grpc", svc.url, TOKEN))]
        await hub.wait_subscribers(3)  # ws: one connection; the service: one per table
        while len(asks) < 2 or not pub.q.empty():
            await asyncio.sleep(0.02)
        for table, rows in frames:
            await pub.publish(table, rows)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        await pub.close()
        await asyncio.to_thread(svc.shutdown)
        await hub.stop()
        return got, stats

    got, stats = asyncio.run(main())

    def per_table(seq: list, table: str) -> list:
        return [rows for t, rows in seq if t == table]

    assert got["ws"][0] == ("book_updates", snapshot)
    for table in ("book_updates", "trades"):
        assert per_table(got["grpc"], table) == per_table(got["ws"], table), table
    assert per_table(got["grpc"], "book_updates")[0] == snapshot  # restated before the updates
    assert len(got["grpc"]) == len(frames) + 1 and stats.frames == len(frames) + 1
    assert stats.connects == 1 and stats.dropped == 0


def test_a_refused_token_is_final_and_says_so(service):
    async def main():
        async for _ in subscribe(["quotes"], url=service.url, token="not-the-token"):
            pass

    with pytest.raises(TokenRefused, match="refused the token") as e:
        asyncio.run(asyncio.wait_for(main(), 30))
    assert e.value.exit_code == 2
    assert "not-the-token" not in str(e.value)


def test_a_missing_service_is_retried_said_once_and_then_used(seed_lake, caplog):
    caplog.set_level(logging.INFO, logger="lab.bus")
    port = _free_port()
    url = f"grpc://127.0.0.1:{port}"
    row = {"ts_exchange": T0, "ts_local": T0 + 1, "venue": "okx", "symbol": "BTC-USDT",
           "bid_px": 1.0, "bid_qty": 2.0, "ask_px": 3.0, "ask_qty": 4.0}

    async def main():
        hub = Hub("127.0.0.1", 0, token=BUS_TOKEN)
        await hub.start()
        pub = await Publisher(hub.url + "/publish", token=BUS_TOKEN).start()
        stats = SubscribeStats()

        async def consume():
            async for table, rows in subscribe(["quotes"], url=url, token=TOKEN, stats=stats):
                return table, rows

        task = asyncio.create_task(consume())
        while stats.failures < 3:  # refused, refused, ... with backoff
            await asyncio.sleep(0.05)
        assert not task.done()
        svc = DataService(ServiceConfig(lake=str(seed_lake.root), token=TOKEN, port=port, bus_url=hub.url,
                                        bus_token=BUS_TOKEN))
        try:
            await hub.wait_subscribers(1, timeout=60)
            await pub.publish("quotes", [row])
            got = await asyncio.wait_for(task, 60)
        finally:
            await pub.close()
            await asyncio.to_thread(svc.shutdown)
            await hub.stop()
        return got, stats

    got, stats = asyncio.run(main())
    assert got == ("quotes", [row])
    said = [r.getMessage() for r in caplog.records if url in r.getMessage()]
    assert len([m for m in said if "cannot connect" in m]) == 1, said
    assert any("connected to" in m and "failed attempts" in m for m in said), said
    assert stats.connects == 1 and stats.failures >= 3


def test_grpc_tls_with_the_private_ca_from_lab_service_ca(seed_lake, tmp_path, monkeypatch):
    """``grpc+tls://``: the CA comes from ``$LAB_SERVICE_CA`` (or ``tls_root_certs=``) as for
    ``lab.connect``; a CA that did not sign the service's certificate is never trusted (retried,
    no rows)."""
    chain, key = private_ca(tmp_path)
    row = {"ts_exchange": T0, "ts_local": T0 + 1, "venue": "okx", "symbol": "BTC-USDT",
           "bid_px": 1.0, "bid_qty": 2.0, "ask_px": 3.0, "ask_qty": 4.0}

    async def main():
        hub = Hub("127.0.0.1", 0, token=BUS_TOKEN)
        await hub.start()
        svc = start(seed_lake, bus_url=hub.url, bus_token=BUS_TOKEN, tls_cert=str(chain), tls_key=str(key))
        pub = await Publisher(hub.url + "/publish", token=BUS_TOKEN).start()
        untrusted = SubscribeStats()

        async def consume(ca_file: str | None, stats: SubscribeStats):
            async for table, rows in subscribe(["quotes"], url=svc.url, token=TOKEN, stats=stats,
                                               tls_root_certs=ca_file):
                return table, rows

        monkeypatch.setenv("LAB_SERVICE_CA", str(tmp_path / "ca.pem"))
        try:
            bad = asyncio.create_task(consume(str(tmp_path / "other.pem"), untrusted))  # overrides the env
            while untrusted.failures < 2:
                await asyncio.sleep(0.05)
            good = asyncio.create_task(consume(None, SubscribeStats()))
            await hub.wait_subscribers(1)
            await pub.publish("quotes", [row])
            got = await asyncio.wait_for(good, 60)
            assert not bad.done() and untrusted.connects == 0
            bad.cancel()
        finally:
            await pub.close()
            await asyncio.to_thread(svc.shutdown)
            await hub.stop()
        return svc.url, got

    url, got = asyncio.run(main())
    assert url.startswith("grpc+tls://") and got == ("quotes", [row])


def test_a_service_restart_is_retried_and_books_are_restated_on_reconnection(seed_lake, caplog):
    """The service goes away mid-stream and comes back on the same port: the subscriber
    says so once, reconnects, and (``restate=True``) gets whole books again before the
    updates that follow, as a ws subscriber does after a hub restart."""
    caplog.set_level(logging.INFO, logger="lab.bus")
    port = _free_port()
    url = f"grpc://127.0.0.1:{port}"
    snap = _book("kraken", "BTC-USD", T0, 1, [("bid", 99.0, 1.0), ("ask", 101.0, 1.0)], True)

    def upd(i: int) -> list[dict]:
        return _book("kraken", "BTC-USD", T0 + i, 1 + i, [("bid", 99.0, 1.0 + i)], False)

    async def main():
        hub = Hub("127.0.0.1", 0, token=BUS_TOKEN)
        await hub.start()
        pub = Publisher(hub.url + "/publish", token=BUS_TOKEN)
        pub.on_control = lambda row: pub.publish_nowait("book_updates", snap, to=row["to"])
        await pub.start()
        cfg = ServiceConfig(lake=str(seed_lake.root), token=TOKEN, port=port, bus_url=hub.url, bus_token=BUS_TOKEN)
        svc = DataService(cfg)
        got: list[list[dict]] = []
        stats = SubscribeStats()

        async def consume():
            async for _, rows in subscribe(["book_updates"], url=url, token=TOKEN, restate=True, stats=stats):
                got.append(rows)
                if len(got) == 4:
                    return

        task = asyncio.create_task(consume())
        try:
            while len(got) < 1:  # the restatement
                await asyncio.sleep(0.02)
            await pub.publish("book_updates", upd(1))
            while len(got) < 2:
                await asyncio.sleep(0.02)
            await asyncio.to_thread(svc.shutdown)
            while stats.failures < 1:
                await asyncio.sleep(0.02)
            await pub.publish("book_updates", upd(2))  # while it is away: lost (the restatement heals)
            svc = DataService(cfg)
            while len(got) < 3:
                await asyncio.sleep(0.02)
            await pub.publish("book_updates", upd(3))
            await asyncio.wait_for(task, 60)
        finally:
            task.cancel()
            await pub.close()
            await asyncio.to_thread(svc.shutdown)
            await hub.stop()
        return got, stats

    got, stats = asyncio.run(main())
    assert got == [snap, upd(1), snap, upd(3)]
    assert stats.connects == 2
    said = [r.getMessage() for r in caplog.records if url in r.getMessage()]
    assert len([m for m in said if "lost the connection" in m]) == 1, said
