"""Coinbase Advanced Trade: ``level2`` (``l2_data``), ``market_trades``, ``heartbeats``.

Book rule: the envelope's ``sequence_num`` must grow by one on the
connection; a gap means a message was lost, so every book on the connection
is suspect: resubscribe ``level2`` for a fresh snapshot. Asks are ``"offer"``.

Trade side: Advanced Trade's trade object documents ``side`` as the **taker**
side of the trade (enum BUY/SELL), unlike the legacy Exchange feed's
``match`` messages, whose ``side`` is the maker's. We follow the Advanced
Trade documentation; see :data:`SIDE_IS_MAKER` (and docs/CONTRACTS.md,
"Protocol decisions") if a capture of the real feed ever says otherwise.

>>> a = CoinbaseAdapter(["BTC-USD"])
>>> a.feed('{"channel":"l2_data","timestamp":"2023-02-09T20:32:50.714964855Z","sequence_num":0,'
...        '"events":[{"type":"snapshot","product_id":"BTC-USD","updates":['
...        '{"side":"bid","event_time":"2023-02-09T20:32:50.714964855Z","price_level":"21921.73","new_quantity":"0.06317902"},'
...        '{"side":"offer","event_time":"2023-02-09T20:32:50.714964855Z","price_level":"21921.9","new_quantity":"0.5"}]}]}', 1)
>>> a.books["BTC-USD"].top()
(21921.73, 0.06317902, 21921.9, 0.5)
"""

from __future__ import annotations

import json

import msgspec

from recorders.venues.base import Adapter, rfc3339_us, split_symbol

__all__ = ["CoinbaseAdapter", "venue_symbol", "SIDE_IS_MAKER"]

SIDE_IS_MAKER = False  # Advanced Trade: market_trades "side" is the taker (aggressor) side


def venue_symbol(symbol: str) -> str:
    b, q = split_symbol(symbol)
    return f"{b}-{q}"


class Level(msgspec.Struct):
    side: str
    price_level: str
    new_quantity: str
    event_time: str = ""


class TradeRow(msgspec.Struct):
    trade_id: str
    product_id: str
    price: str
    size: str
    side: str
    time: str


class Event(msgspec.Struct):
    type: str = ""
    message: str = ""  # on the "error" channel
    product_id: str = ""
    updates: list[Level] = []
    trades: list[TradeRow] = []


class Envelope(msgspec.Struct):
    channel: str
    sequence_num: int
    timestamp: str = ""
    client_id: str = ""
    events: list[Event] = []


class VenueError(msgspec.Struct):
    type: str
    message: str = ""


_env = msgspec.json.Decoder(Envelope)
_err = msgspec.json.Decoder(VenueError)
_SIDES = {"bid": "bid", "offer": "ask", "ask": "ask"}
_TAKER = {"BUY": "sell", "SELL": "buy"} if SIDE_IS_MAKER else {"BUY": "buy", "SELL": "sell"}


class CoinbaseAdapter(Adapter):
    venue = "coinbase"
    silence_timeout = 20.0  # heartbeats arrive every second
    symbol_field = "product"

    def __init__(self, symbols, out=None, **kw) -> None:
        super().__init__(symbols, out, **kw)
        self._by_venue = {venue_symbol(s): s for s in self.symbols}
        self._seq: int | None = None

    def subscribe_messages(self) -> list[str]:
        ids = [venue_symbol(s) for s in self.symbols]
        return [json.dumps({"type": "subscribe", "product_ids": ids, "channel": ch})
                for ch in ("heartbeats", "level2", "market_trades")]

    def request_book(self, symbol: str) -> None:
        self._resubscribe([venue_symbol(symbol)])

    def _resubscribe(self, ids: list[str] | None = None) -> None:
        ids = ids or [venue_symbol(s) for s in self.symbols]
        self.send_json({"type": "unsubscribe", "product_ids": ids, "channel": "level2"},
                       {"type": "subscribe", "product_ids": ids, "channel": "level2"})

    def on_message(self, raw: bytes | str, ts_local: int) -> None:
        try:
            msg = _env.decode(raw)
        except msgspec.ValidationError:
            err = _err.decode(raw)  # {"type": "error", "message": ...}; anything else is rejected
            if err.type != "error":
                raise
            self.event(ts_local, None, "venue_error", err.message)
            return
        self.stats["messages"] += 1
        prev = self._seq
        self._seq = msg.sequence_num
        if prev is not None and msg.sequence_num != prev + 1:
            if msg.sequence_num <= prev:
                self._seq = prev
                if msg.sequence_num == prev:  # the same message again: counted, not applied
                    self.duplicate()
                    return
                # older than one applied: its book update was already a gap (resynced), so
                # it is ignored; its trades still count (ids de-duplicate them)
                self.event(ts_local, None, "out_of_order", f"sequence_num={msg.sequence_num} after {prev}")
                if msg.channel == "market_trades":
                    self._trades(msg, ts_local)
                return
            self.gap(ts_local, None, f"sequence_num={msg.sequence_num} expected {prev + 1}")
            for s in self.symbols:
                if self.synced[s]:
                    self.resync(ts_local, s, "sequence gap on the connection: resubscribing level2")
            self._resubscribe()
        ch = msg.channel
        if ch == "l2_data":
            if self.book_enabled:
                for ev in msg.events:
                    self._book(ev, ts_local, msg.sequence_num)
            elif msg.timestamp and msg.events:  # still a sample of the receive delay
                self.lag(rfc3339_us(msg.timestamp), ts_local, self._sym(msg.events[0].product_id))
        elif ch == "market_trades":
            self._trades(msg, ts_local)
        elif ch in ("heartbeats", "subscriptions"):
            return
        elif ch == "error":
            self.event(ts_local, None, "venue_error",
                       "; ".join(e.message for e in msg.events) or "error")
        else:
            raise ValueError(f"unexpected channel {ch!r}")

    def _trades(self, msg: Envelope, ts_local: int) -> None:
        for ev in msg.events:
            for t in ev.trades:
                sym = self._sym(t.product_id)
                self.last_msg_us[sym] = ts_local
                self.trade(rfc3339_us(t.time), ts_local, sym, t.trade_id, float(t.price),
                           float(t.size), _TAKER[t.side.upper()])

    def _book(self, ev: Event, ts_local: int, seq: int) -> None:
        sym = self._sym(ev.product_id)
        self.last_msg_us[sym] = ts_local
        book = self.books[sym]
        is_snap = ev.type == "snapshot"
        if not self.accept_book_message(sym, is_snap):
            return
        ts_ex = ts_local
        levels = [(_SIDES[u.side], float(u.price_level), float(u.new_quantity), u.event_time)
                  for u in ev.updates]
        for side, px, qty, _ in levels:
            if not self.levels_ok(ts_local, sym, side, ((px, qty),)):
                return  # resyncing (a snapshot too: synced above, so it is asked again)
        mark = self.mark()
        for side, px, qty, et in levels:
            ts_ex = rfc3339_us(et) if et else ts_local
            book.set(side, px, qty)
            self.level(ts_ex, ts_local, sym, side, px, qty, is_snap, seq)
        self.commit_book(sym, mark, ts_ex, ts_local)
