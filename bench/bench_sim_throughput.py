"""How many messages/s the live simulator delivers to one local client.

Runs, in the same process and run:
  1. baseline: a bare ``websockets`` server looping ``await ws.send(msg)`` over
     pre-encoded Binance-like messages;
  2. the simulator (Binance, BTC/ETH/SOL + ETH-BTC, every stream) at a high
     ``--speed``.
The client is a separate process counting WebSocket frames straight off a raw
socket, so the receiver is not what is measured. Prints msgs/s for both and
the ratio simulator / baseline (target: simulator >= 150,000 msgs/s).

    .venv/bin/python bench/bench_sim_throughput.py [--quick] [--seconds S] [--speed N]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing as mp
import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _count_frames(host: str, port: int, path: str, seconds: float, warmup: float, q) -> None:
    """Raw-socket WebSocket client: handshake, then count frames for ``seconds``."""
    s = socket.create_connection((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, buf = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101"), head[:100]
    n = 0
    nbytes = 0
    t_start = time.perf_counter()
    counting = False
    t0 = 0.0
    while True:
        # parse as many complete frames as the buffer holds
        i = 0
        L = len(buf)
        while True:
            if L - i < 2:
                break
            b1 = buf[i + 1] & 0x7F
            if b1 < 126:
                h, ln = 2, b1
            elif b1 == 126:
                if L - i < 4:
                    break
                h, ln = 4, int.from_bytes(buf[i + 2:i + 4], "big")
            else:
                if L - i < 10:
                    break
                h, ln = 10, int.from_bytes(buf[i + 2:i + 10], "big")
            if L - i < h + ln:
                break
            if counting and buf[i] & 0x0F == 1:
                n += 1
                nbytes += ln
            i += h + ln
        buf = buf[i:]
        now = time.perf_counter()
        if not counting and now - t_start >= warmup:
            counting, t0 = True, now
        if counting and now - t0 >= seconds:
            break
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        buf += chunk
    dt = time.perf_counter() - t0
    s.close()
    q.put((n, nbytes, dt))


def _measure(port: int, path: str, seconds: float, warmup: float) -> tuple[int, int, float]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_count_frames, args=("127.0.0.1", port, path, seconds, warmup, q))
    p.start()
    return p, q


async def _wait(p, q):
    while p.is_alive() and q.empty():
        await asyncio.sleep(0.05)
    res = q.get(timeout=5)
    p.join(5)
    return res


async def baseline(seconds: float, warmup: float) -> tuple[int, int, float]:
    from websockets.asyncio.server import serve

    msgs = [
        (f'{{"e":"trade","E":1795000000{i % 1000:03d},"s":"BTCUSDT","t":{146000000 + i},'
         f'"p":"90012.{i % 100:02d}000000","q":"0.0{i % 1000:03d}0000","T":1795000000{i % 1000:03d},'
         f'"m":{"true" if i % 3 else "false"},"M":true}}')
        for i in range(10_000)
    ]

    async def handler(ws):
        try:
            while True:
                for m in msgs:
                    await ws.send(m)
        except Exception:
            return

    async with serve(handler, "127.0.0.1", 0, compression=None) as srv:
        port = srv.sockets[0].getsockname()[1]
        p, q = _measure(port, "/", seconds, warmup)
        return await _wait(p, q)


async def simulator(seconds: float, warmup: float, speed: float) -> tuple[int, int, float]:
    from recorders.sim.config import SimConfig
    from recorders.sim.server import Simulator

    sim = Simulator(SimConfig(venues=("binance",), assets=("BTC", "ETH", "SOL"), port_base=0,
                              speed=speed, truth_book_every=0))
    await sim.start()
    try:
        syms = [l.venue_symbol.lower() for l in sim.market.listings]
        streams = "/".join(f"{s}@{k}" for s in syms for k in ("trade", "aggTrade", "bookTicker", "depth@100ms"))
        p, q = _measure(sim.ports["binance"], "/stream?streams=" + streams, seconds, warmup)
        return await _wait(p, q)
    finally:
        await sim.stop()


def encode_only(sim_seconds: float, speed: float) -> tuple[int, float]:
    """The simulator's own ceiling: model + encoding + framing into a null transport."""
    from websockets.protocol import State

    from recorders.sim.config import SimConfig
    from recorders.sim.feed import Client
    from recorders.sim.server import Simulator

    class _T:
        def is_closing(self) -> bool:
            return False

        def write(self, data: bytes) -> None:
            pass

        def get_write_buffer_size(self) -> int:
            return 0

    class _W:
        transport = _T()
        state = State.OPEN

    async def run() -> tuple[int, float]:
        sim = Simulator(SimConfig(venues=("binance",), assets=("BTC", "ETH", "SOL"), port_base=0,
                                  speed=speed, truth_book_every=0))
        enc = sim.encoders["binance"]
        c = Client(_W(), "binance", 0.0)
        c.combined = True
        enc.clients.add(c)
        enc._sub(c, [f"{l.venue_symbol.lower()}@{k}" for l in sim.market.listings
                     for k in ("trade", "aggTrade", "bookTicker", "depth@100ms")])
        now = sim.start_ns
        step = int(0.005 * speed * 1e9)
        t = time.perf_counter()
        while now - sim.start_ns < sim_seconds * 1e9:
            now += step
            sim._tick(now)
            await sim._deliver()
        return sim.stats["messages"], time.perf_counter() - t

    return asyncio.run(run())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short run (3 s per measurement)")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    ap.add_argument("--speed", type=float, default=4000.0, help="simulator clock speed-up")
    a = ap.parse_args()
    secs = 3.0 if a.quick else a.seconds
    warm = 1.0 if a.quick else 2.0
    n0, b0, t0 = asyncio.run(baseline(secs, warm))
    n1, b1, t1 = asyncio.run(simulator(secs, warm, a.speed))
    n2, t2 = encode_only(600 if a.quick else 3000, a.speed)
    r0, r1 = n0 / t0, n1 / t1
    print(f"bare websockets send loop : {r0:12,.0f} msgs/s  ({b0 / t0 / 2**20:6.1f} MiB/s, {b0 / max(n0, 1):.0f} B/msg)")
    print(f"simulator (speed {a.speed:g}x)   : {r1:12,.0f} msgs/s  ({b1 / t1 / 2**20:6.1f} MiB/s, {b1 / max(n1, 1):.0f} B/msg)")
    print(f"simulator, no socket      : {n2 / t2:12,.0f} msgs/s  (model + encode + frame, null transport)")
    print(f"ratio simulator/baseline  : {r1 / r0:.2f}   target >= 150,000 msgs/s: {'OK' if r1 >= 150_000 else 'BELOW'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
