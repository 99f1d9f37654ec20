"""A consumer that subscribes to ``book_updates`` after the recorder started (the
arbitrage detector and paper trader under ``lab demo``) still gets whole books:
the hub asks the publishers to restate, and the restatement goes to the new
subscriber only."""

from __future__ import annotations

import asyncio
import signal

from busrows import row
from simrun import start_recorder, write_config

from lab.bus import Hub, Publisher, bus_token, subscribe


def bu(**extra):
    return row("book_updates", **extra)


def test_restatement_goes_to_the_new_subscriber_only(lab_data):
    async def scenario():
        hub = await Hub("127.0.0.1", 0).start()
        pub = Publisher(hub.url + "/publish")
        asks = []

        def on_control(row):
            asks.append(row)
            pub.publish_nowait("book_updates", [bu(restated_for=row["to"])], to=row["to"])

        pub.on_control = on_control
        await pub.start()
        while not hub.pubs:
            await asyncio.sleep(0.01)
        got = {"a": [], "b": [], "q": [], "n": []}

        async def consume(name, tables, n, restate=True):
            async for table, rows in subscribe(tables, url=hub.url, restate=restate):
                got[name].append((table, rows))
                if len(got[name]) >= n:
                    return

        a = asyncio.create_task(consume("a", ["book_updates"], 2))
        await hub.wait_subscribers(1)
        q = asyncio.create_task(consume("q", ["quotes"], 1))  # not a book subscriber: no restate
        await hub.wait_subscribers(2)
        n = asyncio.create_task(consume("n", ["book_updates"], 1, restate=False))  # did not ask
        await hub.wait_subscribers(3)
        b = asyncio.create_task(consume("b", ["book_updates"], 2))
        await hub.wait_subscribers(4)
        while len(asks) < 2:
            await asyncio.sleep(0.01)
        await pub.publish("book_updates", [bu(broadcast=1)])
        await pub.publish("quotes", [row("quotes", broadcast=2)])
        await asyncio.wait_for(asyncio.gather(a, b, q, n), 20)
        await pub.close()
        await hub.stop()
        return asks, got

    asks, got = asyncio.run(scenario())
    assert [r["op"] for r in asks] == ["restate", "restate"] and asks[0]["to"] != asks[1]["to"]
    assert got["a"] == [("book_updates", [bu(restated_for=asks[0]["to"])]),
                        ("book_updates", [bu(broadcast=1)])]
    assert got["b"] == [("book_updates", [bu(restated_for=asks[1]["to"])]),
                        ("book_updates", [bu(broadcast=1)])]
    assert got["q"] == [("quotes", [row("quotes", broadcast=2)])]
    assert got["n"] == [("book_updates", [bu(broadcast=1)])]


def test_a_subscriber_that_lost_book_frames_is_restated_once_it_catches_up(lab_data):
    async def scenario():
        # room for about four 200 kB frames per subscriber
        hub = await Hub("127.0.0.1", 0, max_queue_bytes=850_000, slow_after_s=3600).start()
        pub = Publisher(hub.url + "/publish", max_pending=10_000)
        asks = []

        def on_control(row):
            asks.append(row)
            pub.publish_nowait("book_updates", [bu(restated_for=row["to"], n=len(asks))], to=row["to"])

        pub.on_control = on_control
        await pub.start()
        while not hub.pubs:
            await asyncio.sleep(0.01)
        got = []
        import websockets

        # a raw subscriber that stops reading for a while: the hub's queue for it overflows
        async with websockets.connect(hub.url + "/subscribe?tables=book_updates&restate=1",
                                      max_size=2**26, max_queue=1,
                                      additional_headers={"Authorization": f"Bearer {bus_token()}"}) as ws:
            await hub.wait_subscribers(1)
            blob = "x" * 200_000
            for i in range(150):
                pub.publish_nowait("book_updates", [bu(i=i, pad=blob)])
            while pub.q.qsize():
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.5)
            assert hub.dropped > 0
            import msgspec
            while True:
                try:
                    f = msgspec.msgpack.decode(await asyncio.wait_for(ws.recv(), 3))
                except TimeoutError:
                    break
                got.append(f["rows"][0])
        await pub.close()
        await hub.stop()
        return asks, got, hub

    asks, got, hub = asyncio.run(scenario())
    restated = [r for r in got if "restated_for" in r]
    # one restatement on joining, one more after the loss (not one per lost frame)
    assert len(asks) == 2 and hub.restates_for_loss == 1, (asks, hub.dropped)
    assert [r["n"] for r in restated] == [1, 2]
    numbered = [r["i"] for r in got if "i" in r]
    assert numbered == sorted(numbered) and len(numbered) < 150  # frames were lost...
    assert got.index(restated[1]) > got.index(next(r for r in got if "i" in r))  # ...and healed after


def _apply(books: dict, started: set, rows: list[dict]) -> None:
    """L2 books from book_updates rows: a snapshot message (rows sharing book,
    ts_local and is_snapshot) replaces the book; books count from their first snapshot."""
    last_snap: dict = {}
    for r in rows:
        k = (r["venue"], r["symbol"])
        if r["is_snapshot"]:
            mk = (r["ts_local"], r["seq"])
            if last_snap.get(k) != mk:
                last_snap[k] = mk
                books[k] = {"bid": {}, "ask": {}}
                started.add(k)
        elif k not in started:
            continue
        side = books[k][r["side"]]
        if r["qty"] == 0:
            side.pop(r["price"], None)
        else:
            side[r["price"]] = r["qty"]


def _top(book: dict, n: int = 10) -> tuple:
    return (sorted(book["bid"].items(), reverse=True)[:n], sorted(book["ask"].items())[:n])


def test_a_late_subscriber_rebuilds_the_same_books_as_one_there_from_the_start(tmp_path, quiet_sim, lab_data):
    venues = ("binance", "coinbase", "kraken")
    cfg = write_config(tmp_path / "rec.toml", quiet_sim.urls(), venues, tmp_path / "lake", "restate",
                       flush_interval=0.3, maintain_every=0)

    async def follow(url, trace):
        books, started = {}, set()
        async for _table, rows in subscribe(["book_updates"], url=url, restate=True):
            _apply(books, started, rows)
            key = (rows[0]["ts_local"], rows[0]["venue"], rows[0]["symbol"], len(rows))
            trace.append((key, {k: _top(books[k]) for k in started}))

    async def scenario():
        hub = await Hub("127.0.0.1", 0).start()
        early_trace, late_trace = [], []
        early = asyncio.create_task(follow(hub.url, early_trace))
        await hub.wait_subscribers(1)
        rec = start_recorder(cfg, "--bus", hub.url + "/publish", log=tmp_path / "rec.log")
        try:
            for _ in range(600):  # every book synced and updating
                await asyncio.sleep(0.1)
                if early_trace and len(early_trace[-1][1]) == 6 and len(early_trace) > 200:
                    break
            late = asyncio.create_task(follow(hub.url, late_trace))
            await asyncio.sleep(4)
        finally:
            rec.send_signal(signal.SIGINT)
            await asyncio.to_thread(rec.wait, 60)
        early.cancel()
        late.cancel()
        await hub.stop()
        return early_trace, late_trace

    early_trace, late_trace = asyncio.run(scenario())
    assert len(early_trace[-1][1]) == 6, (tmp_path / "rec.log").read_text()[-2000:]
    # the restatement (after whatever frames were already on their way) brings all six
    # books at once: the late subscriber never holds a partial set
    sizes = [len(b) for _, b in late_trace]
    assert 6 in sizes and set(sizes) <= {0, 6}, sizes
    # after every frame both received, both hold the same books
    early_at = {k: b for k, b in early_trace}
    common = [(k, b) for k, b in late_trace if b and k in early_at]
    assert len(common) > 20
    for k, b in common:
        assert b == {x: early_at[k][x] for x in b}, k
