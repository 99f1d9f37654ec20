"""Shared pieces of the live simulator: the true book, outgoing messages,
connected clients and the base class of the per-venue protocol encoders.

Encoders turn market events into venue messages (:class:`Out`), once per
message whatever the number of clients; the server frames each message once
and writes every client's share of a tick in one ``transport.write``.

>>> b = LiveBook(0)
>>> b.apply(0, 100, 5); b.apply(0, 101, 2); b.apply(1, 103, 1); b.apply(0, 100, 0)
>>> b.top(0, 5), b.top(1, 5)
([(101, 2)], [(103, 1)])
"""

from __future__ import annotations

import heapq
import itertools
import json
from typing import Any

from recorders.sim.wire import frame, frames_blob

__all__ = ["LiveBook", "Out", "Client", "Encoder", "Prepared", "Batch", "position"]


class LiveBook:
    """The venue's true book as published so far (ticks -> lots)."""

    __slots__ = ("bids", "asks", "seq", "updates")

    def __init__(self, seq: int) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.seq = seq
        self.updates = 0

    def apply(self, side: int, px: int, q: int) -> None:
        d = self.bids if side == 0 else self.asks
        if q:
            d[px] = q
        else:
            d.pop(px, None)

    def top(self, side: int, n: int) -> list[tuple[int, int]]:
        d = self.bids if side == 0 else self.asks
        keys = heapq.nlargest(n, d) if side == 0 else heapq.nsmallest(n, d)
        return [(p, d[p]) for p in keys]


class Out:
    """One outgoing message: ``key`` selects the subscribers, ``text`` is the
    JSON (or ``parts`` = (head, tail) around a per-connection sequence number)."""

    __slots__ = ("key", "text", "kind", "symbol", "parts", "_frame", "alt", "pos")

    def __init__(self, key: Any, text: str | None, kind: str, symbol: str,
                 parts: tuple[str, str] | None = None, pos: int | None = None) -> None:
        self.key = key
        self.text = text
        self.kind = kind  # book, trade, ticker, heartbeat, control, ghost (dropped), malformed
        self.symbol = symbol  # canonical
        self.parts = parts
        self._frame: bytes | None = None
        self.alt: bytes | None = None  # e.g. Binance combined-stream frame
        # the order in which the venue produced the message: a fault that reorders,
        # repeats or drops messages keeps it, so a per-connection sequence number
        # (Coinbase) stays the venue's, not the order of sending
        self.pos = next(_positions) if pos is None else pos

    def frame(self) -> bytes:
        f = self._frame
        if f is None:
            f = self._frame = frame(self.text.encode())
        return f

    def copy(self) -> Out:
        """The same message again (same position: a duplicate carries the same number)."""
        return Out(self.key, self.text, self.kind, self.symbol, self.parts, self.pos)

    def ghost(self) -> Out:
        """A dropped message: sent to nobody, but it used its place in the sequence."""
        return Out(self.key, None, "ghost", self.symbol, None, self.pos)


class Prepared:
    """A chunk's messages for one listing, pre-encoded, in time order.

    Frames are built on first use, per variant (0 raw, 1 wrapped, e.g.
    Binance combined streams): ``blob(v)`` holds every frame back to back and
    ``off(v)`` the frame boundaries, so a client subscribed to every key of
    the chunk gets a tick's share as one slice of bytes.
    """

    __slots__ = ("t", "keys", "texts", "kinds", "symbol", "pos", "keyset", "_variants", "_built",
                 "_subsets")

    def __init__(self, t, keys: list, texts: list[str], kinds: list[str], symbol: str,
                 wrapped: list[str] | None = None) -> None:
        self.t = t
        self.keys = keys
        self.texts = texts
        self.kinds = kinds
        self.symbol = symbol
        self.pos = 0
        self.keyset = frozenset(keys)
        self._variants = [texts, wrapped if wrapped is not None else texts]
        self._built: dict[int, tuple] = {}
        self._subsets: dict = {}

    def _build(self, var: int) -> tuple:
        got = self._built.get(var)
        if got is None:
            got = self._built[var] = frames_blob(self._variants[var])
        return got

    def blob(self, var: int) -> bytes:
        return self._build(var)[0]

    def off(self, var: int):
        return self._build(var)[1]

    def subset(self, keys: frozenset, var: int):
        """(message indices, blob, offsets) of the messages whose key is in ``keys``."""
        import numpy as np

        got = self._subsets.get((keys, var))
        if got is None:
            idx = np.fromiter((k for k, key in enumerate(self.keys) if key in keys), np.int64)
            src = self._variants[var]
            blob, off = frames_blob([src[k] for k in idx.tolist()])
            got = self._subsets[(keys, var)] = (idx, blob, off)
        return got


class Batch:
    """Messages ``p0:p1`` of a :class:`Prepared` chunk, queued for delivery."""

    __slots__ = ("prep", "p0", "p1")

    def __init__(self, prep: Prepared, p0: int, p1: int) -> None:
        self.prep = prep
        self.p0 = p0
        self.p1 = p1

    def outs(self) -> list[Out]:
        p = self.prep
        return [Out(p.keys[k], p.texts[k], p.kinds[k], p.symbol) for k in range(self.p0, self.p1)]


_conn_ids = itertools.count(1)
_positions = itertools.count(1)


def position() -> int:
    """The next production position (see :attr:`Out.pos`)."""
    return next(_positions)


def json_request(text: str, field: str) -> tuple[dict, Any] | None:
    """A client's ``text`` as a JSON object and the value of its ``field``; None if it is not
    JSON, not an object, or has no ``field`` (the encoder answers with its venue's error).

    >>> json_request('{"op": "ping"}', "op"), json_request('["op"]', "op"), json_request("{", "op")
    (({'op': 'ping'}, 'ping'), None, None)
    """
    try:
        msg = json.loads(text)
    except ValueError:
        return None
    if not isinstance(msg, dict) or field not in msg:
        return None
    return msg, msg[field]


class Client:
    """One connected WebSocket client."""

    __slots__ = ("ws", "venue", "conn_id", "subs", "combined", "seq", "pending", "opened",
                 "meta", "closed", "since")

    def __init__(self, ws: Any, venue: str, opened: float) -> None:
        self.ws = ws
        self.venue = venue
        self.conn_id = f"{venue}-{next(_conn_ids)}"
        self.subs: set = set()
        self.combined = False
        self.seq = 0  # per-connection sequence (Coinbase sequence_num)
        self.pending: list[bytes] = []  # replies/snapshots queued before the next tick
        self.opened = opened
        self.meta: dict = {}
        self.closed = False
        # key -> production position when the client subscribed to it: a message produced
        # before (held by a stall, say) is not part of this subscription's stream
        self.since: dict = {}

    def queue(self, text: str) -> None:
        self.pending.append(frame(text.encode()))


class Encoder:
    """Base of the per-venue protocol encoders (one instance per venue)."""

    venue = ""
    vectorised = False  # True: prepare() pre-encodes whole chunks, on_* are not called
    # a client request is a JSON object naming its operation in this field; anything else gets
    # the venue's answer to a malformed request
    request_field = ""
    malformed_reply = ""

    def __init__(self, sim: Any, items: list[tuple[int, Any]]) -> None:
        self.sim = sim
        self.items = items  # (listing index, Listing)
        self.by_idx = {i: l for i, l in items}
        self.by_sym = {l.venue_symbol: i for i, l in items}  # the venue's symbol -> listing index
        self.out: list[Out] = []
        self.clients: set[Client] = set()
        # subscription key -> how many clients want it (a message nobody wants is not encoded)
        self.wanted: dict[Any, int] = {}

    def prepare(self, li: int, chunk: Any) -> Prepared | None:
        return None

    # market events -> self.out
    def on_book(self, li: int, t: int, seq: int, changes: list[tuple[int, int, int]],
                book: LiveBook) -> None: ...
    def on_trade(self, li: int, t: int, px: int, q: int, side: int, tid: int) -> None: ...
    def on_quote(self, li: int, t: int, bp: int, bq: int, ap: int, aq: int, seq: int) -> None: ...
    def on_clock(self, now: int) -> None: ...

    # connections
    def accepts(self, path: str) -> bool:
        return True

    def on_open(self, c: Client, path: str) -> None: ...

    def on_text(self, c: Client, text: str) -> None:
        if not self.request_field:
            return  # a venue that takes no requests
        req = json_request(text, self.request_field)
        if req is None:
            c.queue(self.malformed_reply)
            return
        self.on_request(c, *req)

    def on_request(self, c: Client, msg: dict, op: Any) -> None:
        """A client's request ``msg`` (a JSON object) for the operation ``op``."""

    def on_close(self, c: Client) -> None:
        for k in c.subs:
            if k in self.wanted:
                self.wanted[k] -= 1

    def subscribe(self, c: Client, key: Any) -> bool:
        """Subscribe ``c`` to ``key``; False if it already was."""
        if key in c.subs:
            return False
        c.subs.add(key)
        self.wanted[key] = self.wanted.get(key, 0) + 1
        return True

    def unsubscribe(self, c: Client, key: Any) -> None:
        """Unsubscribe ``c`` from ``key`` (nothing if it was not subscribed)."""
        if key in c.subs:
            c.subs.discard(key)
            self.wanted[key] -= 1

    def wants(self, c: Client, o: Out) -> bool:
        return o.key in c.subs

    def variant(self, c: Client) -> int:
        """Which pre-framed variant of a :class:`Prepared` chunk this client gets."""
        return 0

    def render(self, c: Client, o: Out) -> bytes:
        return o.frame()

    def bad_checksum(self, o: Out) -> Out | None:
        return None
