"""OKX v5 public channels ``books`` and ``trades`` (``/ws/v5/public``).

Book levels are ``[price, size, "0", orders]`` strings; every message carries
``seqId`` and ``prevSeqId`` (the previous message's ``seqId``; -1 on a
snapshot) and a ``checksum``: CRC32, read as a signed 32-bit integer, of the
top 25 bids and asks interleaved as ``bidPx:bidSz:askPx:askSz:...``.

>>> okx_checksum([("3366.1", "7")], [("3366.8", "9")])  # crc32(b"3366.1:7:3366.8:9") as int32
-2058547290
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from recorders.sim.feed import Client, Encoder, LiveBook, Out
from recorders.sim.wire import dec, dec_strip

__all__ = ["OkxEncoder", "okx_checksum"]


# Deliberately a second implementation of recorders/venues/okx.py checksum(): the simulator and
# the adapter each follow OKX's rule on their own, so a misreading in one shows up against the other.
def okx_checksum(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> int:
    parts: list[str] = []
    for i in range(25):
        if i < len(bids):
            parts += bids[i]
        if i < len(asks):
            parts += asks[i]
    c = zlib.crc32(":".join(parts).encode()) & 0xFFFFFFFF
    return c - (1 << 32) if c >= 1 << 31 else c


class OkxEncoder(Encoder):
    venue = "okx"

    def __init__(self, sim, items) -> None:
        super().__init__(sim, items)
        # seqId of the last book event per listing (the book's update id when it starts)
        self.last_seq: dict[int, int] = {i: sim.books[i].seq for i, _ in items}

    def _txt(self, l, p: int, q: int) -> tuple[str, str]:
        return dec(p, l.price_dec), dec_strip(q, l.qty_dec)

    def _cks(self, l, book: LiveBook) -> int:
        return okx_checksum([self._txt(l, p, q) for p, q in book.top(0, 25)],
                            [self._txt(l, p, q) for p, q in book.top(1, 25)])

    def _lv(self, l, p: int, q: int) -> str:
        a, b = self._txt(l, p, q)
        return f'["{a}","{b}","0","{1 + (p + q) % 7 if q else 0}"]'

    def _msg(self, l, action: str, bids, asks, t: int, cks: int, seq: int, prev: int) -> str:
        return (f'{{"arg":{{"channel":"books","instId":"{l.venue_symbol}"}},"action":"{action}",'
                f'"data":[{{"asks":[{",".join(self._lv(l, p, q) for p, q in asks)}],'
                f'"bids":[{",".join(self._lv(l, p, q) for p, q in bids)}],"ts":"{t // 1_000_000}",'
                f'"checksum":{cks},"prevSeqId":{prev},"seqId":{seq}}}]}}')

    def on_book(self, li, t, seq, changes, book) -> None:
        l = self.by_idx[li]
        prev = self.last_seq.get(li, -1)
        self.last_seq[li] = seq
        if not self.wanted.get(("books", l.venue_symbol)):
            return
        last = {(sd, p): q for sd, p, q in changes}  # a level may change twice in one event
        bids = sorted(((p, q) for (sd, p), q in last.items() if sd == 0), reverse=True)
        asks = sorted((p, q) for (sd, p), q in last.items() if sd == 1)
        self.out.append(Out(("books", l.venue_symbol),
                            self._msg(l, "update", bids, asks, t, self._cks(l, book), seq, prev),
                            "book", l.symbol))

    def on_trade(self, li, t, px, q, side, tid) -> None:
        l = self.by_idx[li]
        if not self.wanted.get(("trades", l.venue_symbol)):
            return
        self.out.append(Out(("trades", l.venue_symbol), (
            f'{{"arg":{{"channel":"trades","instId":"{l.venue_symbol}"}},"data":[{{"instId":"{l.venue_symbol}",'
            f'"tradeId":"{tid}","px":"{dec(px, l.price_dec)}","sz":"{dec_strip(q, l.qty_dec)}",'
            f'"side":"{"buy" if side == 0 else "sell"}","ts":"{t // 1_000_000}","count":"1"}}]}}'),
            "trade", l.symbol))

    def bad_checksum(self, o: Out) -> Out | None:
        i = o.text.rfind('"checksum":')
        if i < 0:
            return None
        j = o.text.index(",", i)
        c = int(o.text[i + 11:j]) + 1
        c = c - (1 << 32) if c >= 1 << 31 else c
        return Out(o.key, o.text[:i + 11] + str(c) + o.text[j:], o.kind, o.symbol)

    def accepts(self, path: str) -> bool:
        return path.split("?")[0].rstrip("/") == "/ws/v5/public"

    def on_text(self, c: Client, text: str) -> None:
        if text == "ping":
            c.queue("pong")
            return
        super().on_text(c, text)

    request_field = "op"
    malformed_reply = '{"event":"error","code":"60012","msg":"Invalid request"}'

    def on_request(self, c: Client, msg: dict, op: Any) -> None:
        args = msg.get("args") or []
        for a in args:
            ch, inst = a.get("channel"), a.get("instId")
            if ch not in ("books", "trades") or inst not in self.by_sym:
                c.queue(json.dumps({"event": "error", "code": "60018",
                                    "msg": f"Wrong URL or channel:{ch},instId:{inst} doesn't exist."}))
                continue
            key = (ch, inst)
            arg = json.dumps({"channel": ch, "instId": inst}, separators=(",", ":"))
            if op == "unsubscribe":
                self.unsubscribe(c, key)
                c.queue(f'{{"event":"unsubscribe","arg":{arg},"connId":"{c.conn_id}"}}')
                continue
            if op != "subscribe":
                c.queue('{"event":"error","code":"60012","msg":"Invalid request"}')
                return
            self.subscribe(c, key)
            c.queue(f'{{"event":"subscribe","arg":{arg},"connId":"{c.conn_id}"}}')
            if ch == "books":
                li = self.by_sym[inst]
                l = self.by_idx[li]
                book = self.sim.books[li]
                seq = self.last_seq.get(li, book.seq)
                c.queue(self._msg(l, "snapshot", book.top(0, 400), book.top(1, 400), self.sim.now_ns(),
                                  self._cks(l, book), seq, -1))
