"""The live bus hub under attack and abuse (issue 15, "The live bus is open and fragile"):
no token, no bus; only rows that match their table get through; a subscriber that never
reads cannot grow the hub without bound."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import msgspec
import psutil
import pytest
import websockets

from lab.bus import CLOSE_TOO_SLOW, Hub, Publisher, subscribe
from lab.schema import TABLES
from recorders.sim.harness import free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "the-right-token-" + "x" * 20


def quote(i: int = 0, **kw) -> dict:
    r = {"ts_exchange": 1_700_000_000_000_000 + i, "ts_local": 1_700_000_000_000_500 + i,
         "venue": "binance", "symbol": "BTC-USDT", "bid_px": 100.0 + i, "bid_qty": 1.0,
         "ask_px": 100.5 + i, "ask_qty": 2.0}
    r.update(kw)
    return r


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ------------------------------------------------------------------------- authentication
def test_publish_and_subscribe_without_the_right_token_are_refused_at_the_handshake(caplog):
    caplog.set_level(logging.WARNING, logger="lab.bus")

    async def main():
        hub = await Hub("127.0.0.1", 0, token=TOKEN).start()
        codes = []
        try:
            for path in ("/publish", "/subscribe?tables=quotes"):
                for headers in ({}, auth("wrong"), {"Authorization": TOKEN}):  # none, wrong, not Bearer
                    try:
                        async with websockets.connect(hub.url + path, additional_headers=headers):
                            codes.append(101)
                    except websockets.InvalidStatus as e:
                        codes.append(e.response.status_code)
            # the right token gets in, and a forged publisher's frames reach nobody
            async with websockets.connect(hub.url + "/subscribe?tables=quotes", additional_headers=auth()) as sub:
                await hub.wait_subscribers(1)
                try:
                    async with websockets.connect(hub.url + "/publish", additional_headers=auth("forged")) as p:
                        await p.send(msgspec.msgpack.encode({"table": "quotes", "rows": [quote(bid_px=1e7)]}))
                except websockets.InvalidStatus:
                    pass
                async with websockets.connect(hub.url + "/publish", additional_headers=auth()) as p:
                    await p.send(msgspec.msgpack.encode({"table": "quotes", "rows": [quote(7)]}))
                    first = msgspec.msgpack.decode(await asyncio.wait_for(sub.recv(), 10))
            stats_no = await asyncio.to_thread(_get, hub.url.replace("ws:", "http:") + "/stats", {})
            stats = await asyncio.to_thread(_get, hub.url.replace("ws:", "http:") + "/stats", auth())
        finally:
            await hub.stop()
        return codes, first, stats_no, stats, hub

    codes, first, stats_no, stats, hub = asyncio.run(main())
    assert codes == [401] * 6
    assert first["rows"] == [quote(7)]  # the forged 10,000,000 bid never arrived
    assert stats_no[0] == 401 and hub.refused == 8  # 6 + the forged publisher + /stats without it
    assert stats[0] == 200 and stats[1]["refused"] == 8 and stats[1]["frames_in"] == 1
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1, [r.getMessage() for r in refusals]  # once per interval, not per attempt
    assert all(TOKEN not in r.getMessage() and "forged" not in r.getMessage() for r in caplog.records)


def _get(url: str, headers: dict) -> tuple[int, dict | None]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None


def test_clients_share_the_generated_token_file_and_refusal_is_explained(lab_data, caplog, monkeypatch):
    monkeypatch.delenv("LAB_BUS_TOKEN", raising=False)
    caplog.set_level(logging.WARNING, logger="lab.bus")

    async def main():
        hub = await Hub("127.0.0.1", 0).start()  # generates $LAB_DATA/run/bus_token
        try:
            got = []

            async def consume():
                async for table, rows in subscribe(["quotes"], url=hub.url):
                    got.append(rows)
                    return

            task = asyncio.create_task(consume())
            await hub.wait_subscribers(1)
            pub = await Publisher(hub.url).start()
            await pub.publish("quotes", [quote(1)])
            await asyncio.wait_for(task, 20)
            await pub.close()
            bad = await Publisher(hub.url, token="not-it").start()
            for _ in range(300):
                if hub.refused >= 2:
                    break
                await asyncio.sleep(0.05)
            await bad.close()
        finally:
            await hub.stop()
        return got, hub

    got, hub = asyncio.run(main())
    path = lab_data / "run" / "bus_token"
    assert got == [[quote(1)]]
    assert path.stat().st_mode & 0o777 == 0o600 and len(path.read_text().strip()) >= 32
    assert hub.refused >= 2
    said = [r.getMessage() for r in caplog.records if "bus publisher" in r.getMessage()]
    assert len(said) == 1 and "HTTP 401" in said[0] and "bus_token" in said[0]
    assert all(path.read_text().strip() not in r.getMessage() for r in caplog.records)


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_the_token_never_reaches_a_log_even_at_debug(lab_data):
    # websockets logs every handshake header at DEBUG. Earlier tests' libraries (Ray, papermill)
    # configure logging their own way (levels, disabled loggers, propagation), so this test
    # attaches its own handler to websockets' loggers and sets them to DEBUG itself.
    keep = _Keep()
    names = ("websockets", "websockets.client", "websockets.server")
    saved = [(lg, lg.level, lg.disabled, lg.propagate) for lg in map(logging.getLogger, names)]
    saved_disable = logging.root.manager.disable
    logging.disable(logging.NOTSET)
    for lg, *_ in saved:
        lg.setLevel(logging.DEBUG)
        lg.disabled = False
    logging.getLogger("websockets").addHandler(keep)

    async def main():
        hub = await Hub("127.0.0.1", 0, token=TOKEN).start()
        try:
            async for _ in subscribe(["quotes"], url=hub.url, token=TOKEN, reconnect=False):
                pass
        except Exception:  # noqa: BLE001 - closed by hub.stop below
            pass

    async def run():
        task = asyncio.create_task(main())
        await asyncio.sleep(0)
        for _ in range(200):
            if any("Authorization" in m for m in keep.messages):
                break
            await asyncio.sleep(0.02)
        task.cancel()

    try:
        asyncio.run(run())
    finally:
        logging.getLogger("websockets").removeHandler(keep)
        for lg, level, disabled, propagate in saved:
            lg.setLevel(level)
            lg.disabled, lg.propagate = disabled, propagate
        logging.disable(saved_disable)
    headers = [m for m in keep.messages if "Authorization" in m]
    assert headers, "websockets did not log the handshake at DEBUG: nothing was checked"
    assert all(TOKEN not in m for m in keep.messages)


# ------------------------------------------------------------------------- validation
BAD_FRAMES = {
    "rows not a list": {"table": "book_updates", "rows": "x"},
    "missing column": {"table": "quotes", "rows": [{k: v for k, v in quote().items() if k != "ask_px"}]},
    "string price": {"table": "quotes", "rows": [quote(bid_px="10000000")]},
    "bool timestamp": {"table": "quotes", "rows": [quote(ts_local=True)]},
    "null venue": {"table": "quotes", "rows": [quote(venue=None)]},
    "unknown table": {"table": "nope", "rows": [quote()]},
    "control table": {"table": "_control", "rows": [{"op": "restate", "to": 1}]},
    "one bad row among good": {"table": "quotes", "rows": [quote(1), quote(2, ask_qty="x")]},
    "not a map": [1, 2, 3],
}


def test_the_hub_forwards_only_frames_that_match_their_table():
    async def main():
        hub = await Hub("127.0.0.1", 0, token=TOKEN).start()
        try:
            async with websockets.connect(hub.url + "/subscribe", additional_headers=auth()) as sub:
                await hub.wait_subscribers(1)
                async with websockets.connect(hub.url + "/publish", additional_headers=auth()) as p:
                    for frame in BAD_FRAMES.values():
                        await p.send(msgspec.msgpack.encode(frame))
                    await p.send(b"\xc1 not msgpack")
                    await p.send("text, not msgpack")
                    good = {"table": "quotes", "rows": [quote(3), quote(4, bid_px=5)]}  # an int price is a number
                    await p.send(msgspec.msgpack.encode(good))
                    first = msgspec.msgpack.decode(await asyncio.wait_for(sub.recv(), 10))
        finally:
            await hub.stop()
        return first, hub

    first, hub = asyncio.run(main())
    assert first == {"table": "quotes", "rows": [quote(3), quote(4, bid_px=5)]}
    assert hub.frames_in == 1 and hub.frames_out == 1
    assert sum(hub.invalid.values()) == len(BAD_FRAMES) + 2
    assert hub.invalid == {"bad_rows": 6, "unknown_table": 2, "undecodable": 3}


def test_every_canonical_table_has_a_checker_that_accepts_its_rows():
    from lab.bus import check_frame

    values = {"Datetime": 1, "String": "a", "Float64": 1.5, "Int64": 3, "Int32": 3, "Boolean": True}
    for name, spec in TABLES.items():
        row = {c: values[type(d).__name__] for c, d in spec.columns.items()}
        assert check_frame(msgspec.msgpack.encode({"table": name, "rows": [row]})) == (name, 1, None)


# ------------------------------------------------------------------------- memory
def _raw_subscriber_that_never_reads(port: int, token: str) -> socket.socket:
    """A WebSocket subscriber that completes the handshake and then never reads a byte."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.connect(("127.0.0.1", port))
    s.sendall((f"GET /subscribe?tables=quotes HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def test_a_subscriber_that_never_reads_keeps_the_hub_bounded_and_the_loss_counted(tmp_path):
    port = free_port()
    env = {**os.environ, "LAB_BUS_TOKEN": TOKEN, "LAB_DATA": str(tmp_path)}
    hub = subprocess.Popen([sys.executable, "-m", "lab.bus", "--port", str(port), "--max-queue-bytes",
                            str(2_000_000), "--slow-after", "3600"], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "bus hub on" in hub.stdout.readline()
        proc = psutil.Process(hub.pid)
        frame = msgspec.msgpack.encode({"table": "quotes", "rows": [quote(i) for i in range(1000)]})
        sent_bytes = 250_000_000

        async def flood() -> tuple[int, int]:
            async with websockets.connect(f"ws://127.0.0.1:{port}/publish", additional_headers=auth(),
                                          compression=None) as p:
                warm = 0
                while warm < 5_000_000:  # warm the allocator before the baseline
                    await p.send(frame)
                    warm += len(frame)
                await asyncio.sleep(0.5)
                base = proc.memory_info().rss
                sock = _raw_subscriber_that_never_reads(port, TOKEN)
                peak, n = base, 0
                try:
                    while n * len(frame) < sent_bytes:
                        await p.send(frame)
                        n += 1
                        if n % 100 == 0:
                            peak = max(peak, proc.memory_info().rss)
                    await p.ping()
                    peak = max(peak, proc.memory_info().rss)
                finally:
                    sock.close()
                return base, peak

        base, peak = asyncio.run(flood())
        _, stats = _get(f"http://127.0.0.1:{port}/stats", auth())
    finally:
        hub.terminate()
        out = hub.communicate(timeout=30)[0]
    assert hub.returncode == 0, out
    grew = (peak - base) / 1e6
    # 250 MB went to a subscriber that never read: the hub kept its bound (2 MB queue + socket
    # buffers + one frame in flight), and said what it dropped
    assert grew < 60, f"hub RSS grew {grew:.0f} MB"
    assert stats["frames_in"] >= sent_bytes // len(frame)
    assert stats["dropped_frames"] > 1000 and stats["dropped_rows"] == 1000 * stats["dropped_frames"]
    assert "behind" in out


def test_a_subscriber_that_stays_behind_is_disconnected_with_1013_and_counted():
    async def main():
        hub = await Hub("127.0.0.1", 0, token=TOKEN, max_queue_bytes=300_000, slow_after_s=0.2).start()
        try:
            frame = msgspec.msgpack.encode({"table": "quotes", "rows": [quote(i) for i in range(500)]})
            # a client that takes one frame into its buffer and then stops reading
            async with websockets.connect(hub.url + "/subscribe?tables=quotes", additional_headers=auth(),
                                          max_queue=1) as sub:
                await hub.wait_subscribers(1)
                async with websockets.connect(hub.url + "/publish", additional_headers=auth()) as p:
                    deadline = time.monotonic() + 60
                    while hub.slow_disconnects == 0 and time.monotonic() < deadline:
                        await p.send(frame)
                        await asyncio.sleep(0.001)
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    while True:
                        await asyncio.wait_for(sub.recv(), 30)
        finally:
            await hub.stop()
        return closed.value, hub

    closed, hub = asyncio.run(main())
    assert hub.slow_disconnects == 1 and hub.dropped > 0 and not hub.subs
    assert closed.rcvd is not None and closed.rcvd.code == CLOSE_TOO_SLOW


def test_a_frame_above_the_cap_closes_its_publisher_and_is_counted():
    async def main():
        hub = await Hub("127.0.0.1", 0, token=TOKEN, max_frame_bytes=100_000).start()
        try:
            async with websockets.connect(hub.url + "/publish", additional_headers=auth(),
                                          max_size=None) as p:
                await p.send(msgspec.msgpack.encode({"table": "quotes", "rows": [quote(i) for i in range(2000)]}))
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(p.recv(), 10)
            for _ in range(100):
                if hub.oversize:
                    break
                await asyncio.sleep(0.02)
        finally:
            await hub.stop()
        return closed.value, hub

    closed, hub = asyncio.run(main())
    assert closed.rcvd.code == 1009 and hub.oversize == 1 and hub.frames_in == 0


def test_the_publisher_splits_a_large_restatement_between_books():
    # five books of 400 rows, one message each (a restatement: same receive time)
    rows = [quote(0, symbol=f"S{i // 400}-USD", bid_px=float(i)) for i in range(2000)]
    pub = Publisher("ws://127.0.0.1:9/publish", token=TOKEN, max_frame_bytes=100_000)
    encoded = pub._encode("quotes", rows, 3)
    assert sum(n for _, n in encoded) == len(rows)
    frames = [msgspec.msgpack.decode(f) for f, _ in encoded]
    assert len(frames) > 1 and all(f["to"] == 3 for f in frames)
    assert [r for f in frames for r in f["rows"]] == rows
    # a book never straddles two frames: each symbol's 400 rows sit in one frame
    where = {}
    for i, f in enumerate(frames):
        for r in f["rows"]:
            where.setdefault(r["symbol"], set()).add(i)
    assert all(len(v) == 1 for v in where.values()), where
    # one book alone above the cap is dropped and counted, not sent in pieces
    one = [quote(0, bid_px=float(i)) for i in range(2000)]
    assert pub._encode("quotes", one, None) == [] and pub.oversize == 1 and pub.dropped == 2000
