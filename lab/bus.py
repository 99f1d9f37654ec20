"""The live data bus (docs/CONTRACTS.md, port 50052).

Recorders publish normalised rows as they parse them; consumers (arbitrage
detector, paper runner, risk monitor, dashboards) subscribe by table. Best
effort: a slow subscriber or a missing hub loses frames (counted), never
blocks recording. The lake stays the record.

- publish: ``ws://127.0.0.1:50052/publish``
- subscribe: ``ws://127.0.0.1:50052/subscribe?tables=quotes,trades``
- both need ``Authorization: Bearer <token>`` (:func:`bus_token`: ``$LAB_BUS_TOKEN``,
  else ``$LAB_DATA/run/bus_token``, generated once with mode 0600); anything else is
  refused at the handshake with HTTP 401. ``GET /stats`` (same header) answers the
  hub's counters as JSON.
- frames: msgpack maps ``{"table": str, "rows": [{column: value}]}`` with the
  canonical columns of :mod:`lab.schema`; timestamps int microseconds since the epoch.
  The hub checks every published frame against the table's schema
  (:func:`check_frame`) and drops (and counts) what does not match: it never
  reaches a subscriber.
- memory is bounded in bytes: a frame above ``max_frame_bytes`` closes its
  publisher (1009); each subscriber's queue holds at most ``max_queue_bytes``
  (the oldest frames are dropped and counted; a ``restate`` subscriber that
  lost ``book_updates`` is restated); a subscriber that keeps losing frames
  for ``slow_after_s`` is disconnected (close code 1013, it reconnects).
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
...     hub = Hub("127.0.0.1", 0, token="t0ken"); await hub.start()
...     got = []
...     async def consume():
...         async for table, rows in subscribe(["quotes"], url=hub.url, token="t0ken"):
...             got.append((table, rows)); return
...     task = asyncio.create_task(consume()); await hub.wait_subscribers(1)
...     pub = Publisher(hub.url + "/publish", token="t0ken"); await pub.start()
...     row = {"ts_exchange": 1, "ts_local": 2, "venue": "binance", "symbol": "BTC-USDT",
...            "bid_px": 1.0, "bid_qty": 2.0, "ask_px": 1.5, "ask_qty": 3.0}
...     await pub.publish("quotes", [row])
...     await asyncio.wait_for(task, 10); await pub.close(); await hub.stop()
...     return got[0][0], got[0][1][0]["bid_px"]
>>> asyncio.run(demo())
('quotes', 1.0)
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import os
import random
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import polars as pl
import websockets
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import Server
from websockets.asyncio.server import serve as ws_serve

from lab import eventloop
from lab.errors import ConfigError

__all__ = [
    "Hub",
    "Publisher",
    "subscribe",
    "SubscribeStats",
    "DEFAULT_URL",
    "Frame",
    "BadFrame",
    "check_frame",
    "bus_token",
    "token_path",
    "TOKEN_ENV",
    "DEFAULT_MAX_FRAME_BYTES",
    "DEFAULT_QUEUE_BYTES",
    "CLOSE_TOO_SLOW",
]

DEFAULT_URL = "ws://127.0.0.1:50052"
TOKEN_ENV = "LAB_BUS_TOKEN"
DEFAULT_MAX_FRAME_BYTES = 8 << 20  # a publisher's frame above this closes its connection (1009)
DEFAULT_QUEUE_BYTES = 4 << 20  # per subscriber; the oldest frames go first
CLOSE_TOO_SLOW = 1013  # "try again later": the subscriber lost frames for too long
log = logging.getLogger("lab.bus")


# --------------------------------------------------------------------------- token
def token_path() -> Path:
    """Where the generated bus token lives: ``$LAB_DATA/run/bus_token``."""
    from lab.lake import data_dir

    return data_dir() / "run" / "bus_token"


def bus_token(create: bool = True, path: Path | None = None) -> str:
    """The bus token: ``$LAB_BUS_TOKEN``, else ``$LAB_DATA/run/bus_token``.

    The file is generated once (32 random bytes, mode 0600) by whichever of the
    hub or a client needs it first, so every process started with the same
    ``LAB_DATA`` agrees without passing anything. A file readable by others is
    tightened to 0600. Raises :class:`~lab.errors.ConfigError` when there is no
    token and the file cannot be written.

    ``path`` overrides the file (tests).

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "run" / "bus_token"
    >>> t = bus_token(path=p); t == bus_token(path=p) and len(t) >= 32, oct(p.stat().st_mode & 0o777)
    (True, '0o600')
    """
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        return env
    path = path or token_path()
    for _ in range(3):
        try:
            text = path.read_text().strip()
            if text:
                if path.stat().st_mode & 0o077:
                    try:
                        path.chmod(0o600)
                    except OSError:
                        log.warning("bus token %s is readable by others; chmod 600 it", path)
                return text
        except FileNotFoundError:
            pass
        except OSError as e:
            raise ConfigError(f"cannot read the bus token {path}: {e.strerror or e}") from None
        if not create:
            raise ConfigError(f"no bus token: set {TOKEN_ENV} or create {path}")
        token = secrets.token_urlsafe(32)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            time.sleep(0.05)  # another process is writing it: read theirs
            continue
        except OSError as e:
            raise ConfigError(f"cannot create the bus token {path} ({e.strerror or e}); "
                              f"set {TOKEN_ENV} or fix LAB_DATA") from None
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token
    raise ConfigError(f"the bus token file {path} is empty; delete it or set {TOKEN_ENV}")


class _NoToken(logging.Filter):
    """websockets logs every handshake header at DEBUG: never the bearer token."""

    def filter(self, record: logging.LogRecord) -> bool:
        a = record.args
        if isinstance(a, tuple) and len(a) == 2 and str(a[0]).lower() == "authorization":
            record.args = (a[0], "Bearer [redacted]")
        return True


for _name in ("websockets.client", "websockets.server"):
    logging.getLogger(_name).addFilter(_NoToken())


def _auth_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _token_ok(header: str | None, token: str) -> bool:
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[7:].strip().encode(), token.encode())


class _Throttle:
    """Log a recurring event at most once per ``interval`` per key, with the count since."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def __call__(self, key: str, level: int, msg: str, *args: Any) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] = self._held.get(key, 0) + 1
            return
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            msg += f" (and {held} more in the last {self.interval:g} s)"
        log.log(level, msg, *args)


# --------------------------------------------------------------------------- frames
class Frame(msgspec.Struct):
    table: str
    rows: list[dict]


class _Peek(msgspec.Struct):
    table: str
    to: int | None = None  # a subscriber id: deliver to that subscriber only


_peek = msgspec.msgpack.Decoder(_Peek)
_frame = msgspec.msgpack.Decoder(Frame)
_enc = msgspec.msgpack.Encoder()

# market rows are keyed by these: a null there is not a row
_NOT_NULL = {"ts_local", "venue", "symbol"}
_MARKET = {"trades", "book_updates", "quotes", "book_snapshots"}


class BadFrame(ValueError):
    """A bus frame that does not match its table (``reason`` is a short counter key)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def _py_type(dtype: pl.DataType) -> Any:
    if isinstance(dtype, pl.Datetime):
        return int
    if dtype == pl.String:
        return str
    if dtype == pl.Boolean:
        return bool
    if dtype.is_float():
        return float
    if dtype.is_integer():
        return int
    return Any


_decoders: dict[str, tuple[Any, msgspec.msgpack.Decoder]] = {}


def _decoder(table: str) -> msgspec.msgpack.Decoder | None:
    """A msgpack decoder that type-checks a whole frame of ``table`` (None: unknown table)."""
    from lab.schema import TABLES

    spec = TABLES.get(table)
    if spec is None:
        return None
    hit = _decoders.get(table)
    if hit is not None and hit[0] is spec:
        return hit[1]
    fields = []
    for name, dtype in spec.columns.items():
        t = _py_type(dtype)
        if not (table in _MARKET and name in _NOT_NULL):
            t = t | None
        fields.append((name, t, None) if name in spec.optional else (name, t))
    fields.sort(key=len)  # required fields first (msgspec wants defaults last)
    row = msgspec.defstruct(f"_{table}_row", fields, gc=False)
    frame = msgspec.defstruct(f"_{table}_frame", [("table", str), ("rows", list[row]),  # type: ignore[valid-type]
                                                  ("to", int | None, None)])
    dec = msgspec.msgpack.Decoder(frame)
    _decoders[table] = (spec, dec)
    return dec


def check_frame(data: bytes) -> tuple[str, int, int | None]:
    """Check a msgpack bus frame against its table's schema; ``(table, rows, to)``.

    Every row must carry every column of the table (:data:`lab.schema.TABLES`)
    with its Python type (timestamps int µs, prices float or int, flags bool;
    null allowed except ``ts_local``, ``venue``, ``symbol`` of market tables);
    extra columns pass. Raises :class:`BadFrame` with ``reason`` one of
    ``undecodable``, ``unknown_table``, ``bad_rows``.

    >>> good = {"table": "trades", "rows": [{"ts_exchange": 1, "ts_local": 2, "venue": "okx",
    ...         "symbol": "BTC-USDT", "trade_id": "9", "price": 5.0, "qty": 1, "side": "buy"}]}
    >>> check_frame(msgspec.msgpack.encode(good))
    ('trades', 1, None)
    >>> check_frame(msgspec.msgpack.encode({"table": "book_updates", "rows": "x"}))
    Traceback (most recent call last):
    lab.bus.BadFrame: bad_rows: book_updates: Expected `array`, got `str` - at `$.rows`
    """
    try:
        peek = _peek.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise BadFrame("undecodable", str(e)) from None
    dec = _decoder(peek.table)
    if dec is None or peek.table.startswith("_"):
        raise BadFrame("unknown_table", repr(peek.table[:64]))
    try:
        f = dec.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise BadFrame("bad_rows", f"{peek.table}: {e}") from None
    return peek.table, len(f.rows), f.to


# --------------------------------------------------------------------------- hub
class _Sub:
    """One subscriber: its tables and a byte-bounded queue of frames (oldest dropped first)."""

    __slots__ = ("id", "tables", "q", "nbytes", "wake", "dropped", "dropped_rows", "restate",
                 "heal", "last_ask", "over_since", "ws", "peer")

    def __init__(self, sub_id: int, tables: set[str] | None, restate: bool, ws: Any) -> None:
        self.id = sub_id
        self.tables = tables
        self.q: deque[tuple[bytes, str, int]] = deque()
        self.nbytes = 0
        self.wake = asyncio.Event()
        self.dropped = 0
        self.dropped_rows = 0
        self.restate = restate  # wants whole books on joining, and again after losing frames
        self.heal = False  # lost book_updates frames since the last restatement request
        self.last_ask = 0.0
        self.over_since: float | None = None  # losing frames since (cleared once half empty)
        self.ws = ws
        self.peer = ws.remote_address


class Hub:
    """Fan frames from publishers out to the subscribers of their table.

    ``token``: the bearer token publishers and subscribers must present (default
    :func:`bus_token`). ``max_frame_bytes`` caps an incoming frame;
    ``max_queue_bytes`` bounds each subscriber's queue (a frame always fits an
    empty queue); ``slow_after_s``: a subscriber losing frames that long is
    disconnected. Refusals, bad frames and losses are counted (:meth:`stats`)
    and logged at most once per ``log_every_s``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 50052, *, token: str | None = None,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 max_queue_bytes: int = DEFAULT_QUEUE_BYTES, slow_after_s: float = 10.0,
                 log_every_s: float = 10.0) -> None:
        self.host, self.port = host, port
        self.token = token if token is not None else bus_token()
        self.max_frame_bytes = max_frame_bytes
        self.max_queue_bytes = max_queue_bytes
        self.slow_after_s = slow_after_s
        self.subs: set[_Sub] = set()
        self.pubs: set = set()  # publisher connections (they get restate requests)
        self._next_id = 0
        self.restates_for_loss = 0  # restatements asked because a subscriber lost frames
        self.frames_in = 0
        self.frames_out = 0
        self.dropped = 0  # frames dropped from subscriber queues (oldest first)
        self.dropped_rows = 0
        self.refused = 0  # handshakes without the right token
        self.invalid: dict[str, int] = {}  # frames dropped at the door, by reason
        self.oversize = 0  # publisher connections closed for a frame above max_frame_bytes
        self.slow_disconnects = 0
        self._log = _Throttle(log_every_s)
        self._server: Server | None = None
        self._sub_event = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def stats(self) -> dict[str, Any]:
        """The hub's counters (also served as JSON on ``GET /stats``)."""
        return {"frames_in": self.frames_in, "frames_out": self.frames_out,
                "dropped_frames": self.dropped, "dropped_rows": self.dropped_rows,
                "refused": self.refused, "invalid_frames": sum(self.invalid.values()),
                "invalid": dict(self.invalid),
                "oversize": self.oversize, "slow_disconnects": self.slow_disconnects,
                "restates_for_loss": self.restates_for_loss, "subscribers": len(self.subs),
                "publishers": len(self.pubs),
                "queued_bytes": sum(s.nbytes for s in self.subs),
                "max_queue_bytes": self.max_queue_bytes, "max_frame_bytes": self.max_frame_bytes}

    async def start(self) -> Hub:
        self._server = await ws_serve(
            self._handler, self.host, self.port, process_request=self._process_request,
            max_size=self.max_frame_bytes, max_queue=4, compression=None, close_timeout=2)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def serve_forever(self) -> None:
        await self.start()
        await asyncio.Future()

    def _process_request(self, connection, request):
        """Refuse at the handshake: unknown paths (404) and missing/wrong tokens (401)."""
        path = urlsplit(request.path).path.rstrip("/")
        if path not in ("/publish", "/subscribe", "/stats"):
            return connection.respond(HTTPStatus.NOT_FOUND,
                                      "unknown path: use /publish or /subscribe?tables=\n")
        if not _token_ok(request.headers.get("Authorization"), self.token):
            self.refused += 1
            self._log("refused", logging.WARNING,
                      "bus hub: refused %s from %s: missing or wrong bus token (%d refused so far)",
                      path, connection.remote_address, self.refused)
            resp = connection.respond(HTTPStatus.UNAUTHORIZED, "bus token required\n")
            resp.headers["WWW-Authenticate"] = 'Bearer realm="lab bus"'
            return resp
        if path == "/stats":
            resp = connection.respond(HTTPStatus.OK, json.dumps(self.stats()) + "\n")
            resp.headers["Content-Type"] = "application/json"
            return resp
        return None

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
            await self._publisher(ws)
        else:
            await self._subscriber(ws, parse_qs(parts.query))

    # -- publishers -------------------------------------------------------------------
    async def _publisher(self, ws) -> None:
        self.pubs.add(ws)
        try:
            async for frame in ws:
                if isinstance(frame, str):
                    frame = frame.encode()
                try:
                    table, nrows, to = check_frame(frame)
                except BadFrame as e:
                    self.invalid[e.reason] = self.invalid.get(e.reason, 0) + 1
                    self._log("invalid", logging.WARNING,
                              "bus hub: dropped a frame from %s (%s); %d dropped so far",
                              ws.remote_address, str(e)[:300], sum(self.invalid.values()))
                    continue
                self.frames_in += 1
                for s in list(self.subs):
                    if (s.tables is None or table in s.tables) and (to is None or to == s.id):
                        self._offer(s, frame, table, nrows)
        except websockets.ConnectionClosed as e:
            if e.sent is not None and e.sent.code == 1009:
                self.oversize += 1
                self._log("oversize", logging.WARNING,
                          "bus hub: closed publisher %s: frame above %d bytes",
                          ws.remote_address, self.max_frame_bytes)
        finally:
            self.pubs.discard(ws)

    def _offer(self, s: _Sub, frame: bytes, table: str, nrows: int) -> None:
        """Queue ``frame`` for ``s``, dropping its oldest frames beyond the byte bound."""
        n = len(frame)
        lost = False
        while s.q and s.nbytes + n > self.max_queue_bytes:
            _, old_table, old_rows = self._pop(s)
            lost = True
            s.dropped += 1
            s.dropped_rows += old_rows
            self.dropped += 1
            self.dropped_rows += old_rows
            if s.restate and old_table == "book_updates":
                s.heal = True
        s.q.append((frame, table, nrows))
        s.nbytes += n
        s.wake.set()
        if lost:
            now = time.monotonic()
            if s.over_since is None:
                s.over_since = now
                self._log("slow", logging.WARNING,
                          "bus hub: subscriber %d at %s is behind: dropping its oldest frames "
                          "(queue bound %d bytes)", s.id, s.peer, self.max_queue_bytes)
            elif now - s.over_since > self.slow_after_s:
                self._kick(s)

    @staticmethod
    def _pop(s: _Sub) -> tuple[bytes, str, int]:
        item = s.q.popleft()
        s.nbytes -= len(item[0])
        return item

    def _kick(self, s: _Sub) -> None:
        """Disconnect a subscriber that kept losing frames for ``slow_after_s``."""
        if s not in self.subs:
            return
        self.subs.discard(s)
        self.slow_disconnects += 1
        self._log("kick", logging.WARNING,
                  "bus hub: disconnected subscriber %d at %s: lost %d frames, behind for more "
                  "than %g s", s.id, s.peer, s.dropped, self.slow_after_s)
        s.q.clear()
        s.nbytes = 0
        s.wake.set()
        t = asyncio.create_task(s.ws.close(CLOSE_TOO_SLOW, "too slow: frames lost"))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # -- subscribers ------------------------------------------------------------------
    async def _subscriber(self, ws, query: dict[str, list[str]]) -> None:
        tables = {t for t in query.get("tables", [""])[0].split(",") if t} or None
        self._next_id += 1
        restate = query.get("restate", ["0"])[0] not in ("0", "", "false")
        sub = _Sub(self._next_id, tables, restate and (tables is None or "book_updates" in tables), ws)
        self.subs.add(sub)
        self._sub_event.set()

        async def drain() -> None:  # read (and ignore) what a subscriber sends; notice its close
            try:
                async for _ in ws:
                    pass
            except websockets.ConnectionClosed:
                pass
            finally:
                sub.wake.set()

        reader = asyncio.create_task(drain())
        try:
            if sub.restate:
                await self._ask_restate(sub)
            half = self.max_queue_bytes // 2
            while not reader.done() and sub in self.subs:
                if not sub.q:
                    timeout = None
                    if sub.heal:
                        timeout = 1.0 - (time.monotonic() - sub.last_ask)  # at most one ask a second
                        if timeout <= 0:
                            sub.heal = False
                            self.restates_for_loss += 1
                            await self._ask_restate(sub)
                            continue
                    sub.wake.clear()
                    try:
                        await asyncio.wait_for(sub.wake.wait(), timeout)
                    except TimeoutError:
                        pass
                    continue
                frame, _, _ = self._pop(sub)
                if sub.nbytes <= half:
                    sub.over_since = None
                    if sub.heal and time.monotonic() - sub.last_ask >= 1.0:
                        sub.heal = False
                        self.restates_for_loss += 1
                        await self._ask_restate(sub)
                await ws.send(frame)
                self.frames_out += 1
        except websockets.ConnectionClosed:
            pass
        finally:
            self.subs.discard(sub)
            reader.cancel()


# --------------------------------------------------------------------------- clients
def _describe(e: BaseException) -> str:
    """One line for a connection failure; a 401 says what to do (never the token)."""
    resp = getattr(e, "response", None)
    code = getattr(resp, "status_code", None)
    if code == 401:
        return (f"refused: missing or wrong bus token (HTTP 401); the hub and this process must "
                f"share {TOKEN_ENV} or $LAB_DATA/run/bus_token")
    if code is not None:
        return f"refused with HTTP {code}"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


class _Series:
    """Say once per series of failed attempts that a bus client cannot connect, and once
    when it is back."""

    def __init__(self, what: str, url: str) -> None:
        self.what, self.url = what, url
        self.failures = 0
        self.since = 0.0
        self.ever = False

    def failed(self, e: BaseException, lost: bool = False) -> None:
        if self.failures == 0:
            self.since = time.monotonic()
            verb = "lost the connection to" if lost else "cannot connect to"
            log.warning("bus %s: %s %s (%s); retrying with backoff", self.what, verb, self.url,
                        _describe(e))
        self.failures += 1

    def connected(self) -> None:
        if self.failures:
            log.warning("bus %s: connected to %s after %d failed attempts (%.0f s)", self.what,
                        self.url, self.failures, time.monotonic() - self.since)
        elif not self.ever:
            log.info("bus %s: connected to %s", self.what, self.url)
        self.failures = 0
        self.ever = True


_RETRY = (OSError, websockets.WebSocketException, TimeoutError)


class Publisher:
    """Send rows to a hub; never blocks the caller (drops and counts when behind).

    ``token`` defaults to :func:`bus_token`. A frame above ``max_frame_bytes``
    (the hub's cap) is split between books, or dropped and counted if one
    book alone is too big.
    """

    def __init__(self, url: str = DEFAULT_URL + "/publish", max_pending: int = 1000, *,
                 token: str | None = None,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        if not urlsplit(url).path.rstrip("/"):
            url = url.rstrip("/") + "/publish"
        self.url = url
        self.token = token
        self._own_token = token is None  # read from bus_token(): re-read after a refusal
        self.max_frame_bytes = max_frame_bytes
        self.q: asyncio.Queue[bytes] = asyncio.Queue(max_pending)
        self.sent = 0
        self.dropped = 0
        self.oversize = 0
        self.connected = False
        self._task: asyncio.Task | None = None
        self._log = _Throttle(10.0)
        # called with each control row from the hub, e.g. {"op": "restate", "to": 3}
        self.on_control = None

    async def start(self) -> Publisher:
        if self.token is None:
            self.token = bus_token()
        self._task = asyncio.create_task(self._run())
        return self

    def _encode(self, table: str, rows: list[dict], to: int | None) -> list[tuple[bytes, int]]:
        """``rows`` as frames of at most ``max_frame_bytes``: ``[(frame, rows in it)]``."""
        frame = {"table": table, "rows": rows} if to is None else {"table": table, "rows": rows, "to": to}
        data = _enc.encode(frame)
        if len(data) <= self.max_frame_bytes:
            return [(data, len(rows))]
        # split between books (a book's message must stay whole: its snapshot resets the book)
        key = lambda r: (r.get("venue"), r.get("symbol"), r.get("ts_local"))  # noqa: E731
        mid = len(rows) // 2
        cut = next((i for i in range(mid, len(rows)) if key(rows[i]) != key(rows[i - 1])), None)
        if cut is None:
            cut = next((i for i in range(mid, 0, -1) if key(rows[i]) != key(rows[i - 1])), None)
        if cut is None:
            self.oversize += 1
            self.dropped += len(rows)
            self._log("oversize", logging.ERROR, "bus publisher: dropped a %s frame of %d bytes "
                      "(one book, above %d)", table, len(data), self.max_frame_bytes)
            return []
        return self._encode(table, rows[:cut], to) + self._encode(table, rows[cut:], to)

    def publish_nowait(self, table: str, rows: list[dict], to: int | None = None) -> bool:
        """Queue ``rows`` of ``table`` (for subscriber ``to`` only, if given)."""
        if not rows:
            return True
        frames = self._encode(table, rows, to)
        ok = bool(frames)
        for data, n in frames:
            try:
                self.q.put_nowait(data)
            except asyncio.QueueFull:
                self.dropped += n
                ok = False
        return ok

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
        series = _Series("publisher", self.url)
        while True:
            lost = False
            try:
                async with ws_connect(self.url, open_timeout=5, compression=None,
                                      max_size=self.max_frame_bytes,
                                      additional_headers=_auth_headers(self.token or "")) as ws:
                    self.connected = True
                    series.connected()
                    backoff = 0.2
                    lost = True
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
                series.failed(e, lost)
                while not self.q.empty():
                    self.q.get_nowait()
                    self.dropped += 1
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 5.0)
                if not lost and self._own_token:
                    try:
                        self.token = bus_token()  # a hub restarted with a new token file
                    except ConfigError:
                        pass

    async def _control(self, ws) -> None:
        """Hand the hub's control rows to :attr:`on_control` (errors are logged, never raised)."""
        try:
            async for frame in ws:
                try:
                    f = _frame.decode(frame if isinstance(frame, bytes) else frame.encode())
                except (msgspec.DecodeError, msgspec.ValidationError):
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


class SubscribeStats:
    """What :func:`subscribe` saw: frames yielded, bad frames skipped, connections, and
    (from a data service) rows the service dropped for this subscriber (``dropped``)."""

    __slots__ = ("frames", "bad_frames", "connects", "failures", "connected", "dropped")

    def __init__(self) -> None:
        self.frames = 0
        self.bad_frames = 0
        self.connects = 0
        self.failures = 0
        self.connected = False
        self.dropped = 0

    def __repr__(self) -> str:
        return (f"SubscribeStats(frames={self.frames}, bad_frames={self.bad_frames}, "
                f"connects={self.connects}, failures={self.failures})")


def _base(url: str) -> str:
    p = urlsplit(url)
    return f"{p.scheme}://{p.netloc}"


async def subscribe(tables: Iterable[str], url: str = DEFAULT_URL, *, reconnect: bool = True,
                    restate: bool = False, token: str | None = None,
                    stats: SubscribeStats | None = None,
                    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                    tls_root_certs: str | None = None,
                    ) -> AsyncIterator[tuple[str, list[dict]]]:
    """Yield ``(table, rows)`` from the hub at ``url`` for ``tables`` (reconnecting).

    ``url`` may also be a data service (``grpc://host:50053``, ``grpc+tls://...``,
    ``lab serve``), for a consumer on another machine: the same frames and rows
    come through its live Flight streams (see :func:`_subscribe_service`);
    ``token`` is then the service's token (default ``$LAB_SERVICE_TOKEN``, else
    ``$LAB_DATA/run/service_token``) and ``tls_root_certs`` a private CA (PEM text
    or file; default ``$LAB_SERVICE_CA``).

    Never dies of data: a frame that does not match its table's schema
    (:func:`check_frame`) is skipped, counted in ``stats.bad_frames`` and
    logged at most every 10 s. When the hub is not there or goes away it
    retries with backoff (capped at 5 s) and says so once per series of
    attempts (logger ``lab.bus``); ``reconnect=False`` raises instead.
    ``token`` defaults to :func:`bus_token`.

    ``restate=True``: on each (re)connection, ask the recorders for every synced
    book as one ``is_snapshot`` message of ``book_updates`` rows, sent to this
    subscriber only (consumers that keep books from the stream need it when they
    start after the recorder or reconnect; frames lost meanwhile are then healed).
    """
    tables = list(tables)
    if urlsplit(url).scheme in _SERVICE_SCHEMES:
        async for item in _subscribe_service(tables, url, reconnect=reconnect, restate=restate,
                                             token=token, stats=stats, tls_root_certs=tls_root_certs):
            yield item
        return
    target = f"{_base(url)}/subscribe?tables={','.join(tables)}" + ("&restate=1" if restate else "")
    st = stats if stats is not None else SubscribeStats()
    series = _Series("subscriber", _base(url))
    throttle = _Throttle(10.0)
    backoff = 0.2
    while True:
        lost = False
        try:
            tok = token if token is not None else bus_token()
            async with ws_connect(target, open_timeout=5, compression=None, max_size=max_frame_bytes,
                                  additional_headers=_auth_headers(tok)) as ws:
                series.connected()
                st.connects += 1
                st.connected = True
                lost = True
                backoff = 0.2
                async for frame in ws:
                    if isinstance(frame, str):
                        frame = frame.encode()
                    try:
                        check_frame(frame)
                        f = _frame.decode(frame)
                    except (BadFrame, msgspec.DecodeError, msgspec.ValidationError) as e:
                        st.bad_frames += 1
                        throttle("bad", logging.WARNING, "bus subscriber: skipped a bad frame "
                                 "(%s); %d skipped so far", str(e)[:300], st.bad_frames)
                        continue
                    st.frames += 1
                    yield f.table, f.rows
        except websockets.InvalidURI as e:
            raise ConfigError(f"bad bus URL {url!r}: {e}") from None
        except _RETRY as e:
            st.connected = False
            st.failures += 1
            if not reconnect:
                raise
            series.failed(e, lost)
        else:
            st.connected = False
            if not reconnect:
                return
            series.failed(ConnectionError("the hub closed the connection"), lost)
        await asyncio.sleep(backoff * (0.5 + random.random()))
        backoff = min(backoff * 2, 5.0)


_SERVICE_SCHEMES = ("grpc", "grpc+tcp", "grpc+tls")


async def _subscribe_service(tables: list[str], url: str, *, reconnect: bool, restate: bool,
                             token: str | None, stats: SubscribeStats | None,
                             tls_root_certs: str | None) -> AsyncIterator[tuple[str, list[dict]]]:
    """:func:`subscribe` through a data service: one live Flight stream per table.

    Each stream's batches carry the bus frames' boundaries, so the frames come out
    as the service's own bus subscription received them, rows as bus dicts (int µs
    timestamps). ``restate`` applies to ``book_updates`` (the service subscribes to
    the bus with ``restate=1`` on each stream it opens, i.e. on each reconnection).
    Across two tables the order is each stream's own (frames of one table never
    reorder). A refused token raises :class:`lab.service.client.TokenRefused` (a
    wrong token stays wrong); the service being away, or going away, is retried
    with backoff and said once per series, as for the hub.
    """
    from lab.schema import TABLES
    from lab.service.client import _OPENED, Subscription, TokenRefused, service_token

    unknown = [t for t in tables if t not in TABLES or t.startswith("_")]
    if unknown or not tables:
        raise ConfigError(f"no live table {', '.join(unknown) or '(none)'} on {url}; tables: "
                          f"{', '.join(sorted(TABLES))}")
    tok = service_token(token)
    st = stats if stats is not None else SubscribeStats()
    series = _Series("subscriber", url)
    backoff = 0.2
    while True:
        subs = [Subscription(t, url, tok, None, None, restate and t == "book_updates", False,
                             tls_root_certs, 64) for t in tables]
        q: asyncio.Queue = asyncio.Queue(64)
        end = object()

        async def feed(sub: Subscription) -> None:
            chunks = sub._chunks()
            try:
                async for item in chunks:
                    await q.put((sub, item))
                await q.put((sub, end))
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - handed to the reader below
                await q.put((sub, e))
            finally:
                await chunks.aclose()  # type: ignore[attr-defined]  # stops its reader thread now

        tasks = [asyncio.create_task(feed(sub)) for sub in subs]
        lost = False
        opened = 0
        try:
            while True:
                sub, item = await q.get()
                if isinstance(item, TokenRefused):
                    st.failures += 1
                    raise item
                if isinstance(item, Exception):
                    raise item
                if item is end:
                    raise ConnectionError("the data service ended the stream")
                if item is _OPENED:
                    opened += 1
                    if opened == len(subs):
                        series.connected()
                        st.connects += 1
                        st.connected = True
                        lost = True
                        backoff = 0.2
                    continue
                batch, frames = item
                st.dropped = sum(s.dropped for s in subs)
                for rows in _service_rows(sub.table, batch, frames):
                    st.frames += 1
                    yield sub.table, rows
        except TokenRefused:
            raise
        except Exception as e:  # noqa: BLE001 - away, restarting, busy: retried like the hub
            st.connected = False
            st.failures += 1
            if not reconnect:
                raise
            series.failed(e, lost)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(backoff * (0.5 + random.random()))
        backoff = min(backoff * 2, 5.0)


def _service_rows(table: str, batch: Any, frames: list[int] | None) -> list[list[dict]]:
    from lab.service.client import rows_of, split_frames

    return split_frames(rows_of(batch, table), frames)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.bus",
                                description="Run the live data bus hub (publish/subscribe over WebSocket).")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (loopback by default)")
    p.add_argument("--port", type=int, default=50052, help="port to listen on")
    p.add_argument("--max-queue-bytes", type=int, default=DEFAULT_QUEUE_BYTES,
                   help="bound of each subscriber's queue in bytes (oldest frames dropped beyond)")
    p.add_argument("--max-frame-bytes", type=int, default=DEFAULT_MAX_FRAME_BYTES,
                   help="largest frame a publisher may send (bytes)")
    p.add_argument("--slow-after", type=float, default=10.0,
                   help="disconnect a subscriber that keeps losing frames this many seconds")
    p.add_argument("-v", "--verbose", action="store_true", help="log connections")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        hub = Hub(a.host, a.port, max_queue_bytes=a.max_queue_bytes,
                  max_frame_bytes=a.max_frame_bytes, slow_after_s=a.slow_after)
    except ConfigError as e:
        print(f"python -m lab.bus: {e}", flush=True)
        return 2

    async def serve() -> None:
        import signal

        await hub.start()
        print(f"bus hub on {hub.url} (publish: /publish, subscribe: /subscribe?tables=...; "
              f"token: ${TOKEN_ENV} or {token_path()})", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await hub.stop()

    eventloop.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
