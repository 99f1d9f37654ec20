"""Bybit v5 spot: ``orderbook.50.<symbol>`` and ``publicTrade.<symbol>``.

Book rule: ``snapshot`` resets the book (so does ``u == 1``: the service
restarted); ``delta`` applies absolute sizes (0 deletes); ``u`` counts up by
one per message, so a jump is a lost message: resubscribe for a snapshot.
``seq`` is a cross sequence (ordered, not continuous) and is not checked.

>>> a = BybitAdapter(["BTC-USDT"])
>>> a.feed('{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1671179923028,'
...        '"data":{"s":"BTCUSDT","b":[["17440.00","40.833"]],"a":[["17440.50","78.815"]],'
...        '"u":13079592,"seq":22520573250}}', 1)
>>> a.books["BTC-USDT"].top()
(17440.0, 40.833, 17440.5, 78.815)
"""

from __future__ import annotations

import json

import msgspec

from recorders.venues.base import Adapter, ms_us, split_symbol

__all__ = ["BybitAdapter", "venue_symbol"]



def venue_symbol(symbol: str) -> str:
    b, q = split_symbol(symbol)
    return b + q


class BookData(msgspec.Struct):
    s: str
    b: list[tuple[str, str]]
    a: list[tuple[str, str]]
    u: int
    seq: int | None = None


class TradeRow(msgspec.Struct):
    T: int
    s: str
    S: str
    v: str
    p: str
    i: str


class Push(msgspec.Struct):
    topic: str
    data: msgspec.Raw
    type: str = ""
    ts: int = 0
    cts: int | None = None


class Reply(msgspec.Struct):
    op: str
    success: bool | None = None
    ret_msg: str = ""


_push = msgspec.json.Decoder(Push)
_reply = msgspec.json.Decoder(Reply)
_book = msgspec.json.Decoder(BookData)
_trades = msgspec.json.Decoder(list[TradeRow])


class BybitAdapter(Adapter):
    venue = "bybit"
    keepalive_every = 20.0  # Bybit recommends a ping every 20 s
    silence_timeout = 30.0
    depth = 50

    def __init__(self, symbols, out=None, **kw) -> None:
        super().__init__(symbols, out, **kw)
        self._by_venue = {venue_symbol(s): s for s in self.symbols}
        self._u: dict[str, int] = {}

    def subscribe_messages(self) -> list[str]:
        args = [f"orderbook.{self.depth}.{venue_symbol(s)}" for s in self.symbols]
        args += [f"publicTrade.{venue_symbol(s)}" for s in self.symbols]
        return [json.dumps({"op": "subscribe", "args": args})]

    def keepalive_message(self) -> str | None:
        return json.dumps({"op": "ping"})

    def request_book(self, symbol: str) -> None:
        self._resubscribe(symbol)

    def _resubscribe(self, sym: str) -> None:
        a = [f"orderbook.{self.depth}.{venue_symbol(sym)}"]
        self.send_json({"op": "unsubscribe", "args": a}, {"op": "subscribe", "args": a})

    def on_message(self, raw: bytes | str, ts_local: int) -> None:
        try:
            msg = _push.decode(raw)
        except msgspec.ValidationError:
            rep = _reply.decode(raw)
            if rep.success is False:
                self.event(ts_local, None, "venue_error", f"{rep.op}: {rep.ret_msg}")
            return
        self.stats["messages"] += 1
        topic = msg.topic
        if topic.startswith("publicTrade."):
            for t in _trades.decode(msg.data):
                sym = self._sym(t.s)
                self.last_msg_us[sym] = ts_local
                self.trade(ms_us(t.T), ts_local, sym, t.i, float(t.p), float(t.v),
                           "buy" if t.S == "Buy" else "sell")
            return
        if not topic.startswith("orderbook."):
            raise ValueError(f"unknown topic {topic!r}")
        d = _book.decode(msg.data)
        sym = self._sym(d.s)
        self.last_msg_us[sym] = ts_local
        if not self.book_enabled:
            if msg.cts or msg.ts:
                self.lag(ms_us(msg.cts or msg.ts), ts_local, sym)  # still a delay sample
            return
        book = self.books[sym]
        is_snap = msg.type == "snapshot" or d.u == 1
        if not self.accept_book_message(sym, is_snap):
            return
        prev = None if is_snap else self._u.get(sym)
        if prev is not None and d.u != prev + 1:
            if d.u == prev:
                self.duplicate()
                return
            if d.u < prev:
                self.event(ts_local, sym, "out_of_order", f"u={d.u} after {prev}")
                return
            self.lost_message(ts_local, sym, f"u={d.u} expected {prev + 1}", "update id gap: resubscribing")
            return
        ts_ex = ms_us(msg.cts or msg.ts) if (msg.cts or msg.ts) else ts_local
        parsed = [(side, float(p), float(q)) for side, levels in (("bid", d.b), ("ask", d.a))
                  for p, q in levels]
        for side, px, qty in parsed:
            if not self.levels_ok(ts_local, sym, side, ((px, qty),)):
                return
        mark = self.mark()
        for side, px, qty in parsed:
            book.set(side, px, qty)
            self.level(ts_ex, ts_local, sym, side, px, qty, is_snap, d.u)
        self._u[sym] = d.u
        self.commit_book(sym, mark, ts_ex, ts_local)
