"""Kraken WebSocket v2 (``/v2``): ``book`` and ``trade`` channels.

Book levels are sent as JSON numbers carrying full precision (price with the
pair's price precision, qty with 8 decimals, trailing zeros kept), a
``checksum`` on every snapshot and update computed the documented way (top 10
asks low to high then top 10 bids high to low, each price and qty text with
the ``.`` removed and leading zeros stripped, CRC32 unsigned). Updates are
relative to the subscribed depth: levels entering the top N are sent, levels
pushed out are not (the client truncates), deleted levels are sent with qty 0.

>>> kraken_checksum([("45285.2", "0.00100000")], [])  # crc32(b"452852100000")
2099347975
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from recorders.sim.feed import Client, Encoder, LiveBook, Out
from recorders.sim.wire import dec, iso_us

__all__ = ["KrakenEncoder", "kraken_checksum"]

DEPTHS = (10, 25, 100, 500, 1000)


def _strip(s: str) -> str:
    return s.replace(".", "").lstrip("0")


def kraken_checksum(asks: list[tuple[str, str]], bids: list[tuple[str, str]]) -> int:
    """CRC32 of the top 10 asks then top 10 bids (texts as sent)."""
    parts = [_strip(p) + _strip(q) for p, q in asks[:10]]
    parts += [_strip(p) + _strip(q) for p, q in bids[:10]]
    return zlib.crc32("".join(parts).encode()) & 0xFFFFFFFF


class _View:
    """What a client subscribed at ``depth`` holds: the top ``depth`` levels."""

    __slots__ = ("depth", "bids", "asks")

    def __init__(self, depth: int, book: LiveBook) -> None:
        self.depth = depth
        self.bids = dict(book.top(0, depth))
        self.asks = dict(book.top(1, depth))

    def advance(self, book: LiveBook) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        out = []
        for side, old in ((0, self.bids), (1, self.asks)):
            new = dict(book.top(side, self.depth))
            full = book.bids if side == 0 else book.asks
            ch = [(p, q) for p, q in new.items() if old.get(p) != q]
            ch += [(p, 0) for p in old if p not in new and p not in full]
            out.append(ch)
            if side == 0:
                self.bids = new
            else:
                self.asks = new
        return out[0], out[1]


class KrakenEncoder(Encoder):
    venue = "kraken"

    def __init__(self, sim, items) -> None:
        super().__init__(sim, items)
        self.views: dict[tuple[int, int], _View] = {}
        self.next_hb = 0

    def _lvl(self, l, p: int, q: int) -> str:
        return f'{{"price":{dec(p, l.price_dec)},"qty":{dec(q, l.qty_dec)}}}'

    def _checksum(self, l, v: _View) -> int:
        asks = sorted(v.asks.items())[:10]
        bids = sorted(v.bids.items(), reverse=True)[:10]
        return kraken_checksum([(dec(p, l.price_dec), dec(q, l.qty_dec)) for p, q in asks],
                               [(dec(p, l.price_dec), dec(q, l.qty_dec)) for p, q in bids])

    def _book_msg(self, l, typ: str, bids, asks, cks: int, t: int) -> str:
        b = ",".join(self._lvl(l, p, q) for p, q in bids)
        a = ",".join(self._lvl(l, p, q) for p, q in asks)
        return (f'{{"channel":"book","type":"{typ}","data":[{{"symbol":"{l.venue_symbol}",'
                f'"bids":[{b}],"asks":[{a}],"checksum":{cks},"timestamp":"{iso_us(t)}"}}]}}')

    def on_book(self, li, t, seq, changes, book) -> None:
        l = self.by_idx[li]
        for depth in DEPTHS:
            v = self.views.get((li, depth))
            if v is None:
                continue
            if not self.wanted.get(("book", l.venue_symbol, depth)):
                del self.views[(li, depth)]
                continue
            bids, asks = v.advance(book)
            if not bids and not asks:
                continue
            bids.sort(reverse=True)
            asks.sort()
            self.out.append(Out(("book", l.venue_symbol, depth),
                                self._book_msg(l, "update", bids, asks, self._checksum(l, v), t),
                                "book", l.symbol))

    def on_trade(self, li, t, px, q, side, tid) -> None:
        l = self.by_idx[li]
        if not self.wanted.get(("trade", l.venue_symbol)):
            return
        self.out.append(Out(("trade", l.venue_symbol), (
            f'{{"channel":"trade","type":"update","data":[{{"symbol":"{l.venue_symbol}",'
            f'"side":"{"buy" if side == 0 else "sell"}","price":{dec(px, l.price_dec)},'
            f'"qty":{dec(q, l.qty_dec)},"ord_type":"market","trade_id":{tid},'
            f'"timestamp":"{iso_us(t)}"}}]}}'), "trade", l.symbol))

    def on_clock(self, now: int) -> None:
        if self.next_hb == 0:
            self.next_hb = (now // 10**9 + 1) * 10**9
        while now >= self.next_hb:
            self.out.append(Out(("heartbeat",), '{"channel":"heartbeat"}', "heartbeat", ""))
            self.next_hb += 10**9

    def bad_checksum(self, o: Out) -> Out | None:
        i = o.text.rfind('"checksum":')
        if i < 0:
            return None
        j = o.text.index(",", i)
        c = int(o.text[i + 11:j])
        n = Out(o.key, o.text[:i + 11] + str((c + 1) & 0xFFFFFFFF) + o.text[j:], o.kind, o.symbol)
        return n

    # -- connections ----------------------------------------------------
    def accepts(self, path: str) -> bool:
        return path.split("?")[0].rstrip("/") == "/v2"

    def on_open(self, c: Client, path: str) -> None:
        c.queue(json.dumps({"channel": "status", "type": "update", "data": [{
            "api_version": "v2", "connection_id": abs(hash(c.conn_id)) % 10**19,
            "system": "online", "version": "2.0.10"}]}, separators=(",", ":")))

    def wants(self, c: Client, o: Out) -> bool:
        return o.key in c.subs or (o.kind == "heartbeat" and bool(c.subs))

    def _reply(self, c: Client, method: str, ok: bool, result=None, error: str | None = None,
               req_id=None) -> None:
        ts = iso_us(self.sim.now_ns())
        m: dict = {"method": method, "success": ok}
        if ok:
            m["result"] = result
        else:
            m["error"] = error
        m["time_in"] = ts
        m["time_out"] = ts
        if req_id is not None:
            m["req_id"] = req_id
        c.queue(json.dumps(m, separators=(",", ":")))

    request_field = "method"
    malformed_reply = '{"error":"malformed request","success":false}'

    def on_request(self, c: Client, msg: dict, method: Any) -> None:
        req_id = msg.get("req_id")
        if method == "ping":
            self._reply(c, "pong", True, req_id=req_id)
            return
        if method not in ("subscribe", "unsubscribe"):
            self._reply(c, method, False, error=f"unknown method {method!r}", req_id=req_id)
            return
        p = msg.get("params") or {}
        channel = p.get("channel")
        syms = p.get("symbol") or []
        if channel not in ("book", "trade"):
            self._reply(c, method, False, error=f"Channel {channel!r} not supported", req_id=req_id)
            return
        depth = int(p.get("depth", 10))
        if channel == "book" and depth not in DEPTHS:
            self._reply(c, method, False, error=f"Invalid depth {depth}; one of {list(DEPTHS)}",
                        req_id=req_id)
            return
        for s in syms:
            if s not in self.by_sym:
                self._reply(c, method, False, error=f"Currency pair not supported {s}", req_id=req_id)
                continue
            li = self.by_sym[s]
            key = ("book", s, depth) if channel == "book" else ("trade", s)
            res = {"channel": channel, "symbol": s}
            if channel == "book":
                res["depth"] = depth
                res["snapshot"] = True
            if method == "unsubscribe":
                self.unsubscribe(c, key)
                self._reply(c, method, True, res, req_id=req_id)
                continue
            self.subscribe(c, key)
            self._reply(c, method, True, res, req_id=req_id)
            if channel == "book":
                v = self.views.get((li, depth))
                if v is None:
                    v = self.views[(li, depth)] = _View(depth, self.sim.books[li])
                l = self.by_idx[li]
                c.queue(self._book_msg(l, "snapshot", sorted(v.bids.items(), reverse=True),
                                       sorted(v.asks.items()), self._checksum(l, v),
                                       self.sim.now_ns()))
