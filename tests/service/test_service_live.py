"""Live rows over Flight: the bus -> the data service -> a remote subscriber."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pyarrow.flight as fl
import pytest
from svchelp import TOKEN, start

import lab
from lab.bus import Hub, Publisher
from lab.errors import ServiceError
from lab.service import live_ticket

T0 = 1_780_000_000_000_000  # µs
# the live-stream tests' server queue (rows); a frame larger than it is dropped whatever the client
# reads, while gRPC's buffers may absorb smaller ones as fast as they come
QUEUE_ROWS = 300


def quote(i: int, venue: str, symbol: str) -> dict:
    return {"ts_exchange": T0 + i, "ts_local": T0 + i + 7, "venue": venue, "symbol": symbol,
            "bid_px": 100.0 + i, "bid_qty": 1.0, "ask_px": 101.0 + i, "ask_qty": 2.0}


async def _hub_and_service(lake, **kw):
    hub = Hub("127.0.0.1", 0)
    await hub.start()
    svc = start(lake, bus_url=hub.url, **kw)
    pub = Publisher(hub.url + "/publish")
    await pub.start()
    return hub, svc, pub


async def _close(hub, svc, pub):
    await pub.close()
    await asyncio.to_thread(svc.shutdown)
    await hub.stop()


def test_remote_subscriber_gets_every_published_row_it_asked_for(seed_lake):
    async def main():
        hub, svc, pub = await _hub_and_service(seed_lake)
        published = [quote(i, v, s) for i in range(400)
                     for v, s in (("binance", "BTC-USDT"), ("kraken", "BTC-USD"), ("binance", "ETH-USDT"))]
        want = [r for r in published if r["venue"] == "binance" and r["symbol"] == "BTC-USDT"]
        got: list[dict] = []

        async def consume():
            sub = lab.subscribe("quotes", url=svc.url, token=TOKEN, venues=["binance"], symbols=["BTC-USDT"])
            async for batch in sub:
                got.extend(batch.to_pylist())
                if len(got) >= len(want):
                    return sub.dropped

        task = asyncio.create_task(consume())
        await hub.wait_subscribers(1)
        for k in range(0, len(published), 30):
            await pub.publish("quotes", published[k:k + 30])
        dropped = await asyncio.wait_for(task, 60)
        await _close(hub, svc, pub)
        return want, got, dropped

    want, got, dropped = asyncio.run(main())
    assert dropped == 0
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g["venue"] == w["venue"] and g["symbol"] == w["symbol"] and g["bid_px"] == w["bid_px"]
        assert int(g["ts_local"].timestamp() * 1e6) == w["ts_local"]


def test_late_book_updates_subscriber_gets_the_books_restated_first(seed_lake):
    snapshot = [{"ts_exchange": T0, "ts_local": T0, "venue": "binance", "symbol": "BTC-USDT", "side": side,
                 "price": px, "qty": 1.0, "is_snapshot": True, "seq": None}
                for side, px in (("bid", 99.0), ("bid", 98.0), ("ask", 101.0))]
    update = {**snapshot[0], "ts_local": T0 + 5, "qty": 3.0, "is_snapshot": False, "seq": 8}

    async def main():
        hub, svc, pub = await _hub_and_service(seed_lake)
        pub.on_control = lambda row: pub.publish_nowait("book_updates", snapshot, to=row["to"])
        await pub.publish("book_updates", [update])  # before the subscriber: never seen by it
        got: list[dict] = []

        async def consume():
            async for frame in lab.subscribe("book_updates", url=svc.url, token=TOKEN, as_polars=True):
                got.extend(frame.to_dicts())
                if len(got) >= 4:
                    return

        task = asyncio.create_task(consume())
        await hub.wait_subscribers(1)
        for _ in range(200):
            if got:
                break
            await asyncio.sleep(0.05)
        await pub.publish("book_updates", [update])
        await asyncio.wait_for(task, 60)
        await _close(hub, svc, pub)
        return got

    got = asyncio.run(main())
    assert [r["is_snapshot"] for r in got] == [True, True, True, False]
    assert [r["price"] for r in got[:3]] == [99.0, 98.0, 101.0]
    assert got[3]["qty"] == 3.0


def test_slow_subscriber_loses_rows_counted_and_the_server_queue_stays_bounded(seed_lake):
    """A client that does not read: the server queues at most its bound and counts the
    rest; what it then reads plus what was dropped is exactly what was published."""
    async def main():
        hub, svc, pub = await _hub_and_service(seed_lake, stream_queue_rows=QUEUE_ROWS)
        client = fl.FlightClient(svc.url)
        opts = fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {TOKEN}".encode())])
        reader = client.do_get(fl.Ticket(live_ticket("quotes")), opts)
        await hub.wait_subscribers(1)
        n = 0
        for k in range(60):  # 60 frames of 100 rows, nobody reading
            await pub.publish("quotes", [quote(100 * k + i, "binance", "BTC-USDT") for i in range(100)])
            n += 100
        # and one larger than the queue: a loss for certain
        await pub.publish("quotes", [quote(6_000 + i, "binance", "BTC-USDT") for i in range(QUEUE_ROWS + 100)])
        n += QUEUE_ROWS + 100
        await asyncio.sleep(1.0)
        received, dropped = 0, 0
        done = threading.Event()

        def read():
            nonlocal received, dropped
            while received + dropped < n:
                chunk = reader.read_chunk()
                received += chunk.data.num_rows
                dropped = json.loads(chunk.app_metadata.to_pybytes())["dropped"]
            done.set()

        # No row is published after this: the large frame's drop may come after the last queued
        # chunk was stamped, and the server must then tell a quiet stream's client by itself.
        t = threading.Thread(target=read, daemon=True)
        t.start()
        await asyncio.to_thread(done.wait, 30)
        reader.cancel()
        client.close()
        await _close(hub, svc, pub)
        return n, received, dropped, svc.stats

    n, received, dropped, stats = asyncio.run(main())
    assert dropped > 0
    assert received + dropped == n
    assert stats["live_queue_peak"] <= QUEUE_ROWS


def test_a_quiet_stream_is_told_of_a_drop_without_waiting_for_more_rows(seed_lake):
    """A frame larger than the queue is dropped and the bus then goes quiet: the client's
    ``dropped`` counts it within seconds, and its consumer is handed no empty batch."""
    async def main():
        hub, svc, pub = await _hub_and_service(seed_lake, stream_queue_rows=QUEUE_ROWS)
        sub = lab.subscribe("quotes", url=svc.url, token=TOKEN)
        sizes: list[int] = []

        async def consume():
            async for batch in sub:
                sizes.append(batch.num_rows)

        task = asyncio.create_task(consume())
        await hub.wait_subscribers(1)
        await pub.publish("quotes", [quote(i, "binance", "BTC-USDT") for i in range(10)])
        t_end = time.monotonic() + 30
        while sum(sizes) < 10 and time.monotonic() < t_end:
            await asyncio.sleep(0.05)
        await pub.publish("quotes", [quote(100 + i, "binance", "BTC-USDT") for i in range(QUEUE_ROWS + 100)])
        t_end = time.monotonic() + 15
        while sub.dropped == 0 and time.monotonic() < t_end:
            await asyncio.sleep(0.05)
        task.cancel()
        await _close(hub, svc, pub)
        return sizes, sub.dropped

    sizes, dropped = asyncio.run(main())
    assert dropped == QUEUE_ROWS + 100
    assert sum(sizes) == 10 and 0 not in sizes


def test_stream_bound_refuses_extra_streams_and_frees_a_closed_one(seed_lake):
    async def main():
        hub, svc, pub = await _hub_and_service(seed_lake, max_streams=1)
        opts = fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {TOKEN}".encode())])
        c1 = fl.FlightClient(svc.url)
        r1 = c1.do_get(fl.Ticket(live_ticket("trades")), opts)
        await hub.wait_subscribers(1)
        second = lab.subscribe("trades", url=svc.url, token=TOKEN)
        with pytest.raises(ServiceError, match=r"too many live streams \(1\)"):
            async for _ in second:
                break
        r1.cancel()
        c1.close()
        t_end = time.monotonic() + 20
        while svc._streams._value < 1 and time.monotonic() < t_end:  # the server notices the cancel
            await asyncio.sleep(0.1)
        got = []

        async def consume():
            async for b in lab.subscribe("trades", url=svc.url, token=TOKEN):
                got.append(b)
                return

        task = asyncio.create_task(consume())
        for _ in range(100):
            await pub.publish("trades", [{"ts_exchange": T0, "ts_local": T0, "venue": "binance",
                                          "symbol": "BTC-USDT", "trade_id": "1", "price": 1.0, "qty": 1.0,
                                          "side": "buy"}])
            if task.done():
                break
            await asyncio.sleep(0.1)
        await asyncio.wait_for(task, 30)
        await _close(hub, svc, pub)
        return got

    got = asyncio.run(main())
    assert got and got[0].num_rows >= 1


def test_book_updates_stream_that_lost_rows_gets_its_books_restated(seed_lake):
    """Dropping book_updates rows breaks the client's books: once its queue has room the
    service subscribes again with restate, and the client receives whole books again."""
    snap = [{"ts_exchange": T0, "ts_local": T0, "venue": "binance", "symbol": "BTC-USDT", "side": "bid",
             "price": 99.0, "qty": 1.0, "is_snapshot": True, "seq": None}]

    def upd(i: int) -> dict:
        return {**snap[0], "ts_local": T0 + i, "qty": 1.0 + i, "is_snapshot": False, "seq": i}

    async def main():
        hub, svc, pub = await _hub_and_service(seed_lake, stream_queue_rows=QUEUE_ROWS)
        asks: list[int] = []

        def on_control(row: dict) -> None:
            asks.append(row["to"])
            pub.publish_nowait("book_updates", snap, to=row["to"])

        pub.on_control = on_control
        while not hub.pubs:  # the publisher connects in the background: the restate ask must find it
            await asyncio.sleep(0.01)
        client = fl.FlightClient(svc.url)
        opts = fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {TOKEN}".encode())])
        reader = client.do_get(fl.Ticket(live_ticket("book_updates", restate=True)), opts)
        await hub.wait_subscribers(1)
        while not asks:
            await asyncio.sleep(0.05)
        for k in range(20):  # 2,000 rows while the client reads nothing (CI once saw none dropped)
            await pub.publish("book_updates", [upd(100 * k + i) for i in range(100)])
        await pub.publish("book_updates", [upd(5_000 + i) for i in range(QUEUE_ROWS + 100)])  # dropped
        seen: list[bool] = []
        stop = threading.Event()

        def read():
            while not stop.is_set():
                try:
                    chunk = reader.read_chunk()
                except (StopIteration, fl.FlightError):
                    return
                seen.extend(chunk.data.column("is_snapshot").to_pylist())

        t = threading.Thread(target=read, daemon=True)
        t.start()
        await asyncio.sleep(1.2)
        for k in range(100):
            await pub.publish("book_updates", [upd(10_000 + k)])
            if len(asks) >= 2 and True in seen[seen.index(False):]:
                break
            await asyncio.sleep(0.1)
        stop.set()
        reader.cancel()
        client.close()
        await _close(hub, svc, pub)
        return asks, seen, svc.stats

    asks, seen, stats = asyncio.run(main())
    assert stats["live_restates"] >= 1 and len(asks) >= 2
    first_update = seen.index(False)
    assert seen[0] is True and True in seen[first_update:]  # restated after the losses
