"""Kraken WebSocket v2: ``book`` and ``trade`` channels.

Prices and sizes are JSON numbers carrying full precision; the checksum is
computed over their text exactly as sent, so the decoder keeps every float
literal as its text (``float_hook=str``) and converts once for the tables.

Book rule (docs.kraken.com guides/book-checksum-v2): apply every level, size
0 removes, truncate each side to the subscribed depth, then the CRC32 of the
top 10 asks (low->high) then top 10 bids (high->low), each as price text then
size text with ``.`` removed and leading zeros stripped, must equal the
message's ``checksum``. A mismatch means the book is wrong: resubscribe.

>>> checksum_text("45285.2", "0.00100000")
'452852100000'
"""

from __future__ import annotations

import json
import zlib

import msgspec

from recorders.venues.base import Adapter, rfc3339_us, split_symbol

__all__ = ["KrakenAdapter", "venue_symbol", "checksum", "checksum_text"]

_dec = msgspec.json.Decoder(float_hook=str)  # float literals stay as their text


def venue_symbol(symbol: str) -> str:
    """``BTC-USD`` -> ``BTC/USD``."""
    b, q = split_symbol(symbol)
    return f"{b}/{q}"


def _txt(v: object) -> str:
    return v if isinstance(v, str) else str(v)


def checksum_text(price: str, qty: str) -> str:
    return price.replace(".", "").lstrip("0") + qty.replace(".", "").lstrip("0")


def checksum(asks: list[tuple[str, str]], bids: list[tuple[str, str]]) -> int:
    """Kraken's CRC32 of the top 10 asks (best first) then bids (best first)."""
    s = "".join(checksum_text(p, q) for p, q in asks[:10]) + "".join(
        checksum_text(p, q) for p, q in bids[:10])
    return zlib.crc32(s.encode())


class KrakenAdapter(Adapter):
    venue = "kraken"
    silence_timeout = 20.0  # Kraken sends a heartbeat every second
    keepalive_every = 0.0
    depth = 25

    def __init__(self, symbols, out=None, **kw) -> None:
        super().__init__(symbols, out, **kw)
        if self.depth not in (10, 25, 100, 500, 1000):
            raise ValueError(f"kraken: depth must be one of 10, 25, 100, 500, 1000, got {self.depth}")
        self._by_venue = {venue_symbol(s): s for s in self.symbols}
        self._req = 0
        self._last_book: bytes | str = ""

    def subscribe_messages(self) -> list[str]:
        syms = [venue_symbol(s) for s in self.symbols]
        return [
            json.dumps({"method": "subscribe", "params": {"channel": "book", "symbol": syms,
                                                          "depth": self.depth}}),
            json.dumps({"method": "subscribe", "params": {"channel": "trade", "symbol": syms}}),
        ]

    def request_book(self, symbol: str) -> None:
        self._resubscribe(symbol)

    def _resubscribe(self, sym: str) -> None:
        v = venue_symbol(sym)
        self._req += 1
        params = {"channel": "book", "symbol": [v], "depth": self.depth}
        self.send_json({"method": "unsubscribe", "params": params, "req_id": self._req},
                       {"method": "subscribe", "params": params, "req_id": self._req})

    def on_message(self, raw: bytes | str, ts_local: int) -> None:
        msg = _dec.decode(raw)
        if not isinstance(msg, dict):
            raise ValueError("not a JSON object")
        ch = msg.get("channel")
        if ch is None:
            if "method" in msg:  # subscribe/unsubscribe/pong acks
                if msg.get("success") is False:
                    self.event(ts_local, None, "venue_error", str(msg.get("error")))
                return
            raise ValueError("no channel")
        if ch in ("heartbeat", "status"):
            return
        self.stats["messages"] += 1
        typ = msg["type"]
        data = msg["data"]
        if ch == "book":
            if raw == self._last_book:
                # Kraken v2 numbers nothing: the same book message twice in a row is a
                # repeat (applying absolute sizes again would change nothing anyway)
                self.duplicate()
                return
            self._last_book = raw
            for entry in data:
                self._book(entry, typ, ts_local)
        elif ch == "trade":
            for t in data:
                sym = self._sym(t["symbol"])
                self.last_msg_us[sym] = ts_local
                self.trade(rfc3339_us(t["timestamp"]), ts_local, sym, _txt(t["trade_id"]),
                           float(t["price"]), float(t["qty"]), t["side"])
        else:
            raise ValueError(f"unknown channel {ch!r}")

    def _book(self, e: dict, typ: str, ts_local: int) -> None:
        sym = self._sym(e["symbol"])
        self.last_msg_us[sym] = ts_local
        if not self.book_enabled:
            if e.get("timestamp"):
                self.lag(rfc3339_us(e["timestamp"]), ts_local, sym)  # still a delay sample
            return
        book = self.books[sym]
        is_snap = typ == "snapshot"
        if not self.accept_book_message(sym, is_snap):
            return  # waiting for the snapshot of a resubscription
        ts = e.get("timestamp")
        ts_ex = rfc3339_us(ts) if ts else ts_local
        changes = self.set_text_levels(ts_local, sym, (
            (side, ((_txt(lv["price"]), _txt(lv["qty"])) for lv in e.get(key, ())))
            for side, key in (("bid", "bids"), ("ask", "asks"))))
        if changes is None:
            return
        # levels pushed past the subscribed depth are gone for the venue too (it never
        # sends their removal): write the removal, so a book rebuilt from book_updates
        # keeps no phantom level that would resurface when the better levels go
        changes += [(side, px, 0.0) for side, px in book.truncate(self.depth)]
        want = e.get("checksum")
        if want is not None:
            got = checksum(book.texts("ask", 10), book.texts("bid", 10))
            if got != int(want):
                self.checksum_failure(ts_local, sym, want, got, "checksum mismatch: resubscribing to the book")
                return
        # rows only for messages that passed the checksum: the lake never holds a known-bad book
        self.commit_levels(sym, changes, ts_ex, ts_local, is_snap, None)
