"""OKX v5 public: ``books`` (400 levels, snapshot then updates) and ``trades``.

Book rule: every update's ``prevSeqId`` equals the previous message's
``seqId`` (else resubscribe); after applying, the CRC32 of the top 25 bids
and asks interleaved as ``bidPx:bidSz:askPx:askSz:...`` (strings as received),
read as a signed 32-bit integer, equals ``checksum``.

>>> checksum([("3366.1", "7")], [("3366.8", "9")])
-2058547290
"""

from __future__ import annotations

import json
import zlib

import msgspec

from recorders.venues.base import Adapter, ms_us, split_symbol

__all__ = ["OkxAdapter", "venue_symbol", "checksum"]



def venue_symbol(symbol: str) -> str:
    b, q = split_symbol(symbol)
    return f"{b}-{q}"


class Arg(msgspec.Struct):
    channel: str
    instId: str = ""


class BookData(msgspec.Struct):
    asks: list[list[str]]
    bids: list[list[str]]
    ts: str
    checksum: int | None = None
    seqId: int | None = None
    prevSeqId: int | None = None


class TradeData(msgspec.Struct):
    instId: str
    tradeId: str
    px: str
    sz: str
    side: str
    ts: str


class Push(msgspec.Struct):
    arg: Arg
    data: list[msgspec.Raw]
    action: str | None = None


class Reply(msgspec.Struct):
    event: str
    code: str | None = None
    msg: str | None = None


_push = msgspec.json.Decoder(Push)
_reply = msgspec.json.Decoder(Reply)
_book = msgspec.json.Decoder(BookData)
_trade = msgspec.json.Decoder(TradeData)


def checksum(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> int:
    """OKX book checksum over the top 25 levels (best first), signed int32."""
    parts: list[str] = []
    for i in range(25):
        if i < len(bids):
            parts += bids[i]
        if i < len(asks):
            parts += asks[i]
    v = zlib.crc32(":".join(parts).encode())
    return v - (1 << 32) if v >= (1 << 31) else v


class OkxAdapter(Adapter):
    venue = "okx"
    keepalive_every = 20.0  # OKX closes a connection idle for 30 s; "ping" -> "pong"
    silence_timeout = 30.0
    symbol_field = "instId"

    def __init__(self, symbols, out=None, **kw) -> None:
        super().__init__(symbols, out, **kw)
        self._by_venue = {venue_symbol(s): s for s in self.symbols}
        self._seq: dict[str, int] = {}

    def subscribe_messages(self) -> list[str]:
        args = [{"channel": "books", "instId": venue_symbol(s)} for s in self.symbols]
        args += [{"channel": "trades", "instId": venue_symbol(s)} for s in self.symbols]
        return [json.dumps({"op": "subscribe", "args": args})]

    def keepalive_message(self) -> str | None:
        return "ping"

    def request_book(self, symbol: str) -> None:
        self._resubscribe(symbol)

    def _resubscribe(self, sym: str) -> None:
        a = [{"channel": "books", "instId": venue_symbol(sym)}]
        self.send_json({"op": "unsubscribe", "args": a}, {"op": "subscribe", "args": a})

    def on_message(self, raw: bytes | str, ts_local: int) -> None:
        if raw == "pong" or raw == b"pong":
            return
        try:
            msg = _push.decode(raw)
        except msgspec.ValidationError:
            rep = _reply.decode(raw)
            if rep.event == "error":
                self.event(ts_local, None, "venue_error", f"{rep.code}: {rep.msg}")
            return
        self.stats["messages"] += 1
        sym = self._sym(msg.arg.instId)
        self.last_msg_us[sym] = ts_local
        if msg.arg.channel == "trades":
            for r in msg.data:
                t = _trade.decode(r)
                self.trade(ms_us(t.ts), ts_local, sym, t.tradeId, float(t.px), float(t.sz),
                           t.side)
            return
        if msg.arg.channel != "books":
            raise ValueError(f"unknown channel {msg.arg.channel!r}")
        if not self.book_enabled:
            return
        for r in msg.data:
            self._book(sym, msg.action or "update", _book.decode(r), ts_local)

    def _book(self, sym: str, action: str, d: BookData, ts_local: int) -> None:
        book = self.books[sym]
        is_snap = action == "snapshot"
        if not self.accept_book_message(sym, is_snap):
            return
        if not is_snap:
            prev = self._seq.get(sym)
            if d.seqId is not None and d.seqId == prev and d.prevSeqId != prev:
                self.duplicate()  # the message just applied, again
                return
            if d.prevSeqId is not None and prev is not None and d.prevSeqId != prev:
                self.lost_message(ts_local, sym, f"prevSeqId={d.prevSeqId} expected {prev}",
                                  "seqId chain broken: resubscribing")
                return
        ts_ex = ms_us(d.ts)
        seq = d.seqId
        changes = self.set_text_levels(ts_local, sym, (
            (side, ((lv[0], lv[1]) for lv in levels)) for side, levels in (("bid", d.bids), ("ask", d.asks))))
        if changes is None:
            return
        if seq is not None:
            self._seq[sym] = seq
        if d.checksum is not None:
            got = checksum(book.texts("bid", 25), book.texts("ask", 25))
            if got != d.checksum:
                self.checksum_failure(ts_local, sym, d.checksum, got, "checksum mismatch: resubscribing")
                return
        self.commit_levels(sym, changes, ts_ex, ts_local, is_snap, seq)  # only rows of messages that passed the checksum
