"""The live data bus contract (docs/CONTRACTS.md): table routing, msgpack frames,
best-effort publishing that never blocks."""

from __future__ import annotations

import asyncio

import msgspec
from busrows import row

from lab.bus import Hub, Publisher, bus_token, subscribe


async def _collect(url, tables, n, out):
    async for table, rows in subscribe(tables, url=url):
        out.append((table, rows))
        if len(out) >= n:
            return


def test_subscribers_get_only_their_tables_in_publish_order(lab_data):
    async def main():
        hub = await Hub("127.0.0.1", 0).start()
        q, t = [], []
        tq = asyncio.create_task(_collect(hub.url, ["quotes"], 2, q))
        tt = asyncio.create_task(_collect(hub.url, ["trades"], 1, t))
        await hub.wait_subscribers(2)
        pub = await Publisher(hub.url).start()  # base URL: /publish is implied
        await pub.publish("quotes", [row("quotes", bid_px=1.5, ts_local=1)])
        await pub.publish("trades", [row("trades", trade_id="7")])
        await pub.publish("quotes", [row("quotes", bid_px=1.6, ts_local=2)])
        await asyncio.wait_for(asyncio.gather(tq, tt), 30)
        await pub.close()
        await hub.stop()
        return q, t

    q, t = asyncio.run(main())
    assert q == [("quotes", [row("quotes", bid_px=1.5, ts_local=1)]),
                 ("quotes", [row("quotes", bid_px=1.6, ts_local=2)])]
    assert t == [("trades", [row("trades", trade_id="7")])]


def test_frames_are_msgpack_maps_readable_without_our_client(lab_data):
    import websockets

    auth = {"Authorization": f"Bearer {bus_token()}"}
    frame = {"table": "quotes", "rows": [row("quotes", bid_px=2.0)]}

    async def main():
        hub = await Hub("127.0.0.1", 0).start()
        async with websockets.connect(hub.url + "/subscribe?tables=quotes", additional_headers=auth) as sub:
            await hub.wait_subscribers(1)
            async with websockets.connect(hub.url + "/publish", additional_headers=auth) as p:
                await p.send(msgspec.msgpack.encode(frame))
                got = await asyncio.wait_for(sub.recv(), 10)
        await hub.stop()
        return got

    assert msgspec.msgpack.decode(asyncio.run(main())) == frame


def test_publisher_without_hub_never_blocks_and_counts_drops(lab_data):
    async def main():
        pub = await Publisher("ws://127.0.0.1:9/publish", max_pending=10).start()  # nothing listens
        accepted = [pub.publish_nowait("quotes", [{"i": i}]) for i in range(100)]
        await pub.close()
        return pub.dropped, accepted

    dropped, accepted = asyncio.run(main())
    assert accepted.count(False) >= 90
    assert dropped >= 90
