"""The live data bus (docs/CONTRACTS.md, port 50052).

Recorders publish normalised rows as they parse them; consumers (arbitrage
detector, paper runner, risk monitor, dashboards) subscribe by table. Best
effort: a slow subscriber or a missing hub loses frames (counted), never
blocks recording. The lake stays the record.

- publish: ``ws://127.0.0.1:50052/publish``
- subscribe: ``ws://127.0.0.1:50052/subscribe?tables=quotes,trades``
- frames: msgpack maps ``{"table": str, "rows": [{column: value}]}`` with the
  canonical columns of :mod:`lab.schema`; timestamps int microseconds since the epoch.
- late subscribers can get the books: when a subscriber of ``book_updates`` joins
  with ``&restate=1``, the hub asks every publisher to restate (control frame ``{"table": "_control", "rows":
  [{"op": "restate", "to": <subscriber id>}]}``); a recorder answers with one
  ``is_snapshot`` message per synced book, addressed (``"to"``) to that subscriber
  only, so consumers already running (and the lake) see nothing new. Such a
  subscriber that falls behind and loses ``book_updates`` frames is restated
  again once its queue has room (at most once a second), so its books heal.

Run a hub: ``python -m lab.bus --port 50052`` (or ``lab record --bus-serve``).

>>> import asyncio
>>> async def demo():
...     hub = Hub("127.0.0.1", 0); await hub.start()
...     got = []
...     async def consume():
...         async for table, rows in subscribe(["quotes"], url=hub.url):
...             got.append((table, rows)); return
...     task = asyncio.create_task(consume()); await hub.wait_subscribers(1)
...     pub = Publisher(hub.url + "/publish"); await pub.start()
...     await pub.publish("quotes", [{"venue": "binance", "bid_px": 1.0}])
...     await asyncio.wait_for(task, 10); await pub.close(); await hub.stop()
...     return got
>>> asyncio.run(demo())
[('quotes', [{'venue': 'binance', 'bid_px': 1.0}])]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Iterable
from urllib.parse import parse_qs, urlsplit

import msgspec
import websockets

__all__ = ["Hub", "Publisher", "subscribe", "DEFAULT_URL", "Frame"]

DEFAULT_URL = "ws://127.0.0.1:50052"
log = logging.getLogger("lab.bus")


class Frame(msgspec.Struct):
    table: str
    rows: list[dict]


class _Peek(msgspec.Struct):
    table: str
    to: int | None = None  # a subscriber id: deliver to that subscriber only


_peek = msgspec.msgpack.Decoder(_Peek)
_frame = msgspec.msgpack.Decoder(Frame)
_enc = msgspec.msgpack.Encoder()


def _base(url: str) -> str:
    p = urlsplit(url)
    return f"{p.scheme}://{p.netloc}"


class _Sub:
    __slots__ = ("id", "tables", "q", "dropped", "restate", "heal", "last_ask")

    def __init__(self, sub_id: int, tables: set[str] | None, size: int, restate: bool = False) -> None:
        self.id = sub_id
        self.tables = tables
        self.q: asyncio.Queue[bytes] = asyncio.Queue(size)
        self.dropped = 0
        self.restate = restate  # wants whole books on joining, and again after losing frames
        self.heal = False  # lost book_updates frames since the last restatement request
        self.last_ask = 0.0


class Hub:
    """Fan frames from publishers out to the subscribers of their table."""

    def __init__(self, host: str = "127.0.0.1", port: int = 50052, queue_size: int = 2000) -> None:
        self.host, self.port, self.queue_size = host, port, queue_size
        self.subs: set[_Sub] = set()
        self.pubs: set = set()  # publisher connections (they get restate requests)
        self._next_id = 0
        self.restates_for_loss = 0  # restatements asked because a subscriber lost frames
        self.frames_in = 0
        self.frames_out = 0
        self.dropped = 0
        self._server = None
        self._sub_event = asyncio.Event()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> Hub:
        self._server = await websockets.serve(self._handler, self.host, self.port,
                                              max_size=2**26, compression=None)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def serve_forever(self) -> None:
        await self.start()
        await asyncio.Future()

    async def _ask_restate(self, sub: _Sub) -> None:
        """Ask every publisher to restate its books to ``sub`` alone."""
        sub.last_ask = time.monotonic()
        ask = _enc.encode({"table": "_control", "rows": [{"op": "restate", "to": sub.id}]})
        for p in list(self.pubs):
            try:
                await p.send(ask)
            except websockets.ConnectionClosed:
                pass

    async def wait_subscribers(self, n: int, timeout: float = 30.0) -> None:
        async def _w():
            while len(self.subs) < n:
                self._sub_event.clear()
                await self._sub_event.wait()
        await asyncio.wait_for(_w(), timeout)

    async def _handler(self, ws) -> None:
        parts = urlsplit(ws.request.path)
        if parts.path.rstrip("/") == "/publish":
            self.pubs.add(ws)
            try:
                async for frame in ws:
                    if isinstance(frame, str):
                        frame = frame.encode()
                    try:
                        peek = _peek.decode(frame)
                    except msgspec.DecodeError:
                        continue
                    self.frames_in += 1
                    table = peek.table
                    for s in self.subs:
                        if (s.tables is None or table in s.tables) and (peek.to is None or peek.to == s.id):
                            try:
                                s.q.put_nowait(frame)
                            except asyncio.QueueFull:
                                s.dropped += 1
                                self.dropped += 1
                                if s.restate and table == "book_updates":
                                    s.heal = True
            except websockets.ConnectionClosed:
                pass  # a publisher that went away (a recorder stopping): nothing to do
            finally:
                self.pubs.discard(ws)
        elif parts.path.rstrip("/") == "/subscribe":
            query = parse_qs(parts.query)
            tables = {t for t in query.get("tables", [""])[0].split(",") if t} or None
            self._next_id += 1
            restate = query.get("restate", ["0"])[0] not in ("0", "", "false")
            sub = _Sub(self._next_id, tables, self.queue_size,
                       restate and (tables is None or "book_updates" in tables))
            self.subs.add(sub)
            self._sub_event.set()
            if sub.restate:
                await self._ask_restate(sub)
            try:
                reader = asyncio.create_task(ws.wait_closed())
                while not reader.done():
                    timeout = None
                    if sub.heal and sub.q.qsize() <= self.queue_size // 2:
                        timeout = 1.0 - (time.monotonic() - sub.last_ask)  # at most one ask a second
                        if timeout <= 0:
                            sub.heal = False
                            self.restates_for_loss += 1
                            await self._ask_restate(sub)
                            timeout = None
                    get = asyncio.create_task(sub.q.get())
                    await asyncio.wait({get, reader}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                    if not get.done():
                        get.cancel()
                        try:
                            await get
                        except asyncio.CancelledError:
                            pass
                    if get.done() and not get.cancelled():
                        await ws.send(get.result())
                        self.frames_out += 1
            except websockets.ConnectionClosed:
                pass
            finally:
                self.subs.discard(sub)
        else:
            await ws.close(1008, f"unknown path {parts.path!r}: use /publish or /subscribe?tables=")


class Publisher:
    """Send rows to a hub; never blocks the caller (drops and counts when behind)."""

    def __init__(self, url: str = DEFAULT_URL + "/publish", max_pending: int = 1000) -> None:
        if not urlsplit(url).path.rstrip("/"):
            url = url.rstrip("/") + "/publish"
        self.url = url
        self.q: asyncio.Queue[bytes] = asyncio.Queue(max_pending)
        self.sent = 0
        self.dropped = 0
        self.connected = False
        self._task: asyncio.Task | None = None
        # called with each control row from the hub, e.g. {"op": "restate", "to": 3}
        self.on_control = None

    async def start(self) -> Publisher:
        self._task = asyncio.create_task(self._run())
        return self

    def publish_nowait(self, table: str, rows: list[dict], to: int | None = None) -> bool:
        """Queue ``rows`` of ``table`` (for subscriber ``to`` only, if given)."""
        if not rows:
            return True
        frame = {"table": table, "rows": rows} if to is None else {"table": table, "rows": rows, "to": to}
        try:
            self.q.put_nowait(_enc.encode(frame))
            return True
        except asyncio.QueueFull:
            self.dropped += len(rows)
            return False

    async def publish(self, table: str, rows: list[dict]) -> bool:
        """Queue ``rows`` of ``table`` for the hub (False if dropped)."""
        ok = self.publish_nowait(table, rows)
        await asyncio.sleep(0)
        if ok and self._task is not None:
            for _ in range(200):  # give the sender a chance when the hub is up
                if self.q.empty() or not self.connected:
                    break
                await asyncio.sleep(0.005)
        return ok

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                async with websockets.connect(self.url, open_timeout=5, compression=None,
                                              max_size=2**26) as ws:
                    self.connected = True
                    backoff = 0.2
                    reader = asyncio.create_task(self._control(ws))
                    try:
                        while True:
                            frame = await self.q.get()
                            await ws.send(frame)
                            self.sent += 1
                    finally:
                        reader.cancel()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - best effort: drop while disconnected
                self.connected = False
                log.debug("bus publisher: %s", e)
                while not self.q.empty():
                    self.q.get_nowait()
                    self.dropped += 1
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 5.0)

    async def _control(self, ws) -> None:
        """Hand the hub's control rows to :attr:`on_control` (errors are logged, never raised)."""
        try:
            async for frame in ws:
                try:
                    f = _frame.decode(frame if isinstance(frame, bytes) else frame.encode())
                except msgspec.DecodeError:
                    continue
                if f.table == "_control" and self.on_control is not None:
                    for row in f.rows:
                        try:
                            self.on_control(row)
                        except Exception:  # noqa: BLE001
                            log.exception("bus control %r", row)
        except websockets.ConnectionClosed:
            pass

    async def close(self) -> None:
        if self._task is not None:
            for _ in range(100):
                if self.q.empty() or not self.connected:
                    break
                await asyncio.sleep(0.01)
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass


async def subscribe(tables: Iterable[str], url: str = DEFAULT_URL, *, reconnect: bool = True,
                    restate: bool = False) -> AsyncIterator[tuple[str, list[dict]]]:
    """Yield ``(table, rows)`` from the hub at ``url`` for ``tables`` (reconnecting).

    ``restate=True``: on each (re)connection, ask the recorders for every synced
    book as one ``is_snapshot`` message of ``book_updates`` rows, sent to this
    subscriber only (consumers that keep books from the stream need it when they
    start after the recorder or reconnect; frames lost meanwhile are then healed).
    """
    target = f"{_base(url)}/subscribe?tables={','.join(tables)}" + ("&restate=1" if restate else "")
    backoff = 0.2
    while True:
        try:
            async with websockets.connect(target, open_timeout=5, compression=None,
                                          max_size=2**26) as ws:
                backoff = 0.2
                async for frame in ws:
                    if isinstance(frame, str):
                        frame = frame.encode()
                    f = _frame.decode(frame)
                    yield f.table, f.rows
        except (OSError, websockets.WebSocketException, TimeoutError):
            if not reconnect:
                raise
        await asyncio.sleep(backoff * (0.5 + random.random()))
        backoff = min(backoff * 2, 5.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.bus",
                                description="Run the live data bus hub (publish/subscribe over WebSocket).")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (loopback by default)")
    p.add_argument("--port", type=int, default=50052, help="port to listen on")
    a = p.parse_args(argv)
    hub = Hub(a.host, a.port)
    print(f"bus hub on {hub.url} (publish: /publish, subscribe: /subscribe?tables=...)", flush=True)
    try:
        asyncio.run(hub.serve_forever())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
