"""Binance spot: trades and depth diffs on one combined stream, REST snapshots.

Book rule (Binance "How to manage a local order book correctly"): buffer the
diffs, fetch ``GET /api/v3/depth``; if the snapshot's ``lastUpdateId`` is older
than the first buffered ``U`` fetch again; drop diffs with ``u <= lastUpdateId``;
the first applied diff must straddle ``lastUpdateId + 1``; after that every
diff has ``U == previous u + 1``, or the book is out of sync and starts over.
Diffs received while the snapshot is in flight are kept in the buffer.

>>> a = BinanceAdapter(["BTC-USDT"])
>>> a.feed('{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT",'
...        '"U":11,"u":12,"b":[["100.0","2"]],"a":[]}}', 5)
>>> a.actions
[('snapshot', 'BTC-USDT')]
>>> a.on_snapshot("BTC-USDT", '{"lastUpdateId":10,"bids":[["99.0","1"]],"asks":[["101.0","1"]]}', 6)
>>> a.books["BTC-USDT"].top()
(100.0, 2.0, 101.0, 1.0)
"""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

from recorders.venues.base import Adapter, split_symbol

__all__ = ["BinanceAdapter", "venue_symbol"]

MAX_BUFFER = 50_000  # diffs held per symbol while waiting for a snapshot


def venue_symbol(symbol: str) -> str:
    """``BTC-USDT`` -> ``BTCUSDT``."""
    b, q = split_symbol(symbol)
    return b + q


# A number of the wire: float for the fast path (decimal strings decoded straight to float by
# msgspec, strict=False, in C, with the same result as float(text)), str for the slow one.
N = TypeVar("N", float, str)


class Trade(msgspec.Struct, Generic[N], tag_field="e", tag="trade"):
    E: int
    s: str
    t: int
    p: N
    q: N
    m: bool
    T: int = 0


class DepthUpdate(msgspec.Struct, Generic[N], tag_field="e", tag="depthUpdate"):
    E: int
    s: str
    U: int
    u: int
    b: list[tuple[N, N]]
    a: list[tuple[N, N]]


class Envelope(msgspec.Struct, Generic[N]):
    stream: str
    data: Trade[N] | DepthUpdate[N]


class Reply(msgspec.Struct):
    id: int | str | None  # required: anything without it is not a reply
    result: object | None = None
    error: object | None = None


class Snapshot(msgspec.Struct):
    lastUpdateId: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]


def _loose(raw: bytes | str) -> Trade[float] | DepthUpdate[float] | None:
    """Decode ``raw`` with the numbers kept as text and convert them with ``float`` (None if
    it is not a trade or depth message at all): msgspec refuses a decimal string that
    overflows a float ("1e309"); read this way, float() gives inf and the value check names
    it (a bad_value event) instead of rejecting the whole message."""
    try:
        m = _env_text.decode(raw).data
    except msgspec.ValidationError:
        try:
            m = _bare_text.decode(raw)
        except msgspec.ValidationError:
            return None
    if isinstance(m, Trade):
        return Trade(E=m.E, s=m.s, t=m.t, p=float(m.p), q=float(m.q), m=m.m, T=m.T)
    conv = lambda ls: [(float(p), float(q)) for p, q in ls]  # noqa: E731
    return DepthUpdate(E=m.E, s=m.s, U=m.U, u=m.u, b=conv(m.b), a=conv(m.a))


_env = msgspec.json.Decoder(Envelope[float], strict=False)
_bare = msgspec.json.Decoder(Trade[float] | DepthUpdate[float], strict=False)
_env_text = msgspec.json.Decoder(Envelope[str])
_bare_text = msgspec.json.Decoder(Trade[str] | DepthUpdate[str])
_reply = msgspec.json.Decoder(Reply)
_snap = msgspec.json.Decoder(Snapshot, strict=False)


class BinanceAdapter(Adapter):
    venue = "binance"
    rest_snapshots = True
    silence_timeout = 30.0
    depth = 1000  # REST snapshot limit

    def __init__(self, symbols, out=None, **kw) -> None:
        super().__init__(symbols, out, **kw)
        self._by_venue = {venue_symbol(s): s for s in self.symbols}
        self._buffer: dict[str, list[DepthUpdate]] = {s: [] for s in self.symbols}
        self._last_u: dict[str, int] = {}
        self._pending: set[str] = set()  # symbols with a snapshot requested
        self._fresh: set[str] = set()  # synced, but no diff applied since the snapshot

    def streams(self) -> list[str]:
        out = []
        for s in self.symbols:
            v = venue_symbol(s).lower()
            out += [f"{v}@trade", f"{v}@depth@100ms"]
        return out

    def url(self, base_url: str) -> str:
        return f"{base_url.rstrip('/')}/stream?streams={'/'.join(self.streams())}"

    def subscribe_messages(self) -> list[str]:
        return []  # the streams are in the URL

    def snapshot_url(self, rest_base: str, symbol: str) -> str:
        return f"{rest_base.rstrip('/')}/api/v3/depth?symbol={venue_symbol(symbol)}&limit={self.depth}"

    def request_book(self, symbol: str) -> None:
        self._buffer[symbol] = []
        self._fresh.discard(symbol)
        self._request_snapshot(symbol)

    def _request_snapshot(self, sym: str) -> None:
        if sym not in self._pending:
            self._pending.add(sym)
            self.actions.append(("snapshot", sym))

    def on_message(self, raw: bytes | str, ts_local: int) -> None:
        try:
            msg = _env.decode(raw).data
        except msgspec.ValidationError:
            try:
                msg = _bare.decode(raw)  # a /ws/<stream> connection sends bare payloads
            except msgspec.ValidationError:
                msg = _loose(raw)  # a number out of float range, say
                if msg is None:
                    rep = _reply.decode(raw)  # subscription replies; anything else is rejected
                    if rep.error is not None:
                        self.event(ts_local, None, "venue_error", str(rep.error))
                    return
        self.stats["messages"] += 1
        sym = self._sym(msg.s)
        self.last_msg_us[sym] = ts_local
        if isinstance(msg, Trade):
            # m: the buyer was the maker, so the aggressor sold.
            self.trade((msg.T or msg.E) * 1000, ts_local, sym, str(msg.t), msg.p, msg.q,
                       "sell" if msg.m else "buy")
            return
        if not self.book_enabled:
            self.lag(msg.E * 1000, ts_local, sym)  # still a sample of the receive delay
            return
        if not self.synced[sym]:
            buf = self._buffer[sym]
            buf.append(msg)
            if len(buf) > MAX_BUFFER:  # REST down for long: keep memory bounded; the
                del buf[: MAX_BUFFER // 2]  # snapshot then proves older or newer than we hold
            self._request_snapshot(sym)
            return
        last = self._last_u[sym]
        if msg.u <= last:
            self.duplicate()  # a diff already applied, sent again
            return
        if msg.U != last + 1 and not (sym in self._fresh and msg.U <= last + 1):
            self.gap(ts_local, sym, f"U={msg.U} expected {last + 1} (previous u={last})")
            self.resync(ts_local, sym, "depth diff sequence gap")
            self._buffer[sym] = [msg]
            self._request_snapshot(sym)
            return
        self._apply(sym, msg, ts_local)

    def _apply(self, sym: str, d: DepthUpdate, ts_local: int) -> bool:
        """Apply one diff; False if it was refused (bad value, crossed book: resyncing)."""
        if not (self.levels_ok(ts_local, sym, "bid", d.b) and self.levels_ok(ts_local, sym, "ask", d.a)):
            return False
        self._fresh.discard(sym)
        book = self.books[sym]
        ts_ex = d.E * 1000
        seq = d.u
        c0, c1, c2, c3, c4, c5, c6, c7, c8 = self.out.book_updates
        mark = len(c0)
        venue = self.venue
        bset = book.set
        for side, levels in (("bid", d.b), ("ask", d.a)):
            for px, qty in levels:
                bset(side, px, qty)
                c0.append(ts_ex); c1.append(ts_local); c2.append(venue); c3.append(sym)
                c4.append(side); c5.append(px); c6.append(qty); c7.append(False); c8.append(seq)
        self._last_u[sym] = d.u
        return self.commit_book(sym, mark, ts_ex, ts_local)

    def on_snapshot(self, symbol: str, body: bytes | str, ts_local: int) -> None:
        """Apply a REST depth snapshot, then the buffered diffs that follow it."""
        sym = symbol.upper()
        self._pending.discard(sym)
        if not self.book_enabled:
            return  # a newer connection owns the books now
        snap = _snap.decode(body)
        buf = sorted(self._buffer[sym], key=lambda d: d.U)  # out-of-order arrivals while waiting
        if buf and snap.lastUpdateId < buf[0].U - 1:
            # Older than the first diff we hold: the diffs between are missing.
            self.event(ts_local, sym, "snapshot_stale",
                       f"lastUpdateId={snap.lastUpdateId} < first buffered U={buf[0].U}")
            self._request_snapshot(sym)
            return
        if not (self.levels_ok(ts_local, sym, "bid", snap.bids)
                and self.levels_ok(ts_local, sym, "ask", snap.asks)):
            self._request_snapshot(sym)  # the diffs stay buffered for the next one
            return
        book = self.books[sym]
        book.clear()
        self._last_top.pop(sym, None)
        mark = self.mark()
        for side, levels in (("bid", snap.bids), ("ask", snap.asks)):
            for px, qty in levels:
                if qty:
                    book.set(side, px, qty)
                    self.level(ts_local, ts_local, sym, side, px, qty, True, snap.lastUpdateId)
        self._last_u[sym] = snap.lastUpdateId
        self.synced[sym] = True
        self._fresh.add(sym)  # the first diff may straddle lastUpdateId + 1
        if not self.commit_book(sym, mark, ts_local, ts_local):
            self._buffer[sym] = buf  # a crossed snapshot: the next one needs these diffs
            return
        self._buffer[sym] = []
        for d in buf:
            last = self._last_u[sym]
            if d.u <= last:
                continue
            ok = (d.U <= last + 1) if sym in self._fresh else (d.U == last + 1)
            if not ok:
                self.gap(ts_local, sym, f"U={d.U} expected {last + 1} (buffered after snapshot)")
                self.resync(ts_local, sym, "buffered diff does not follow the snapshot")
                self._buffer[sym] = [d] + [x for x in buf if x.u > d.u]
                self._request_snapshot(sym)
                return
            if not self._apply(sym, d, ts_local):
                self._buffer[sym] = [x for x in buf if x.u > d.u]
                return
