"""A Binance-shaped stream server for the recorder benches (run as a subprocess):
pre-encoded depth diffs and trades for BTCUSDT sent as fast as the socket takes
them (or at ``--rate`` msgs/s), plus the REST depth snapshot on the same port."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

import websockets


def _frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


EXCHANGE_INFO = json.dumps({"symbols": [{"symbol": "BTCUSDT", "baseAsset": "BTC", "quoteAsset": "USDT",
                                          "status": "TRADING",
                                          "filters": [{"filterType": "PRICE_FILTER", "tickSize": "0.01000000"}]}]})


def build(n: int, seed: int = 0) -> tuple[list[str], dict]:
    rng = random.Random(seed)
    bids = {round(100.0 - i * 0.01, 2): 1.0 for i in range(1, 101)}
    asks = {round(100.0 + i * 0.01, 2): 1.0 for i in range(1, 101)}
    snap = {"lastUpdateId": 1000, "bids": [[f"{p:.2f}", "1.00000000"] for p in bids],
            "asks": [[f"{p:.2f}", "1.00000000"] for p in asks]}
    out = []
    u = 1000
    tid = 0
    for i in range(n):
        ms = 1_700_000_000_000 + i
        if i % 4 == 3:
            tid += 1
            out.append(json.dumps({"stream": "btcusdt@trade", "data": {
                "e": "trade", "E": ms, "s": "BTCUSDT", "t": tid, "p": "100.00000000",
                "q": f"{rng.random():.8f}", "T": ms, "m": rng.random() < 0.5, "M": True}},
                separators=(",", ":")))
        else:
            u += 1
            side = "b" if rng.random() < 0.5 else "a"
            p = round(100.0 + (-1 if side == "b" else 1) * rng.randint(1, 100) * 0.01, 2)
            q = "0.00000000" if rng.random() < 0.2 else f"{rng.random() * 3:.8f}"
            d = {"e": "depthUpdate", "E": ms, "s": "BTCUSDT", "U": u, "u": u, "b": [], "a": []}
            d[side] = [[f"{p:.2f}", q]]
            out.append(json.dumps({"stream": "btcusdt@depth@100ms", "data": d}, separators=(",", ":")))
    return out, snap


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("-n", type=int, default=200_000)
    ap.add_argument("--rate", type=float, default=0.0, help="msgs/s (0 = as fast as possible)")
    ap.add_argument("--burst", type=float, default=0.0, help="seconds at 10x --rate every 5 s")
    a = ap.parse_args()
    msgs, snap = build(a.n)
    body = json.dumps(snap)

    snapshot_served = asyncio.Event()

    def process_request(conn, req):
        if req.path.startswith("/api/v3/exchangeInfo"):  # cryptofeed reads its symbol map first
            return conn.respond(200, EXCHANGE_INFO)
        if req.path.startswith("/api/v3/depth"):
            snapshot_served.set()
            return conn.respond(200, body)
        return None

    frames = [_frame(m.encode()) for m in msgs]
    agg_frames: list[bytes] = []

    def frames_for(path: str) -> list[bytes]:
        """The stream a client subscribed to: cryptofeed's Binance feed takes trades from
        ``@aggTrade`` (``"e":"aggTrade"``, id in ``"a"``), the recorder from ``@trade``;
        the same events either way, built once on first use."""
        if "aggTrade" not in path:
            return frames
        if not agg_frames:
            agg_frames.extend(_frame(m.replace('"stream":"btcusdt@trade"', '"stream":"btcusdt@aggTrade"')
                                     .replace('"e":"trade"', '"e":"aggTrade"').replace(',"t":', ',"a":').encode())
                              if '"e":"trade"' in m else f for m, f in zip(msgs, frames))
        return agg_frames

    async def handler(ws):
        # Pre-framed text frames written straight to the transport in chunks, so the
        # server is never the bottleneck of the measurement.
        t0 = time.perf_counter()
        frames = frames_for(ws.request.path)
        tr = ws.transport
        chunk = 50 if a.rate else 500
        sent = 0
        for i in range(0, len(frames), chunk):
            while tr.get_write_buffer_size() > 4 * 2**20:
                await asyncio.sleep(0.001)
            if tr.is_closing():
                return
            try:
                tr.write(b"".join(frames[i:i + chunk]))
            except RuntimeError:  # the client closed (write after EOF): this stream is over
                return
            sent += chunk
            if i == 0 and "bench=bare" not in ws.request.path:
                # A recorder: let its REST snapshot in before the flood, so the book
                # syncs and the whole run measures the book path, not a diff buffer
                # overflowing while the snapshot queues behind megabytes of frames.
                try:
                    await asyncio.wait_for(snapshot_served.wait(), 10)
                except TimeoutError:
                    pass
                snapshot_served.clear()
            if a.rate:
                el = time.perf_counter() - t0
                r = a.rate * (10 if a.burst and el % 5 < a.burst else 1)
                await asyncio.sleep(max(0.0, chunk / r))
            else:
                await asyncio.sleep(0)
        await ws.wait_closed()

    async with websockets.serve(handler, "127.0.0.1", a.port, process_request=process_request,
                                compression=None, max_size=2**24) as srv:
        print(srv.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
