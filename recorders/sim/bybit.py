"""Bybit v5 spot public channels ``orderbook.50.<sym>`` and ``publicTrade.<sym>``.

``type`` ``snapshot`` then ``delta``; ``u`` is the update id of the stream
(continuous, one per message), ``seq`` the cross sequence (the engine's
event id: ordered, not continuous), ``cts`` the matching-engine time. The
50-level view sends every level that enters, changes or leaves the top 50
(leaving levels with size ``"0"``). Numbers are decimal strings.
"""

from __future__ import annotations

import json
from typing import Any

from recorders.sim.feed import Client, Encoder, LiveBook, Out
from recorders.sim.wire import dec

__all__ = ["BybitEncoder"]

DEPTH = 50


class BybitEncoder(Encoder):
    venue = "bybit"

    def __init__(self, sim, items) -> None:
        super().__init__(sim, items)
        self.views: dict[int, tuple[dict, dict]] = {}
        self.u: dict[int, int] = {}

    def _lv(self, l, p: int, q: int) -> str:
        return f'["{dec(p, l.price_dec)}","{dec(q, l.qty_dec)}"]'

    def _msg(self, l, typ: str, bids, asks, t: int, u: int, seq: int) -> str:
        ms = t // 1_000_000
        return (f'{{"topic":"orderbook.{DEPTH}.{l.venue_symbol}","type":"{typ}","ts":{ms},'
                f'"data":{{"s":"{l.venue_symbol}","b":[{",".join(self._lv(l, p, q) for p, q in bids)}],'
                f'"a":[{",".join(self._lv(l, p, q) for p, q in asks)}],"u":{u},"seq":{seq}}},"cts":{ms}}}')

    def on_book(self, li, t, seq, changes, book: LiveBook) -> None:
        l = self.by_idx[li]
        topic = f"orderbook.{DEPTH}.{l.venue_symbol}"
        if not self.wanted.get(topic):
            self.views.pop(li, None)
            return
        old_b, old_a = self.views[li]
        new_b, new_a = dict(book.top(0, DEPTH)), dict(book.top(1, DEPTH))
        out = []
        for old, new in ((old_b, new_b), (old_a, new_a)):
            ch = [(p, q) for p, q in new.items() if old.get(p) != q]
            ch += [(p, 0) for p in old if p not in new]
            out.append(ch)
        self.views[li] = (new_b, new_a)
        if not out[0] and not out[1]:
            return
        self.u[li] = self.u.setdefault(li, 1_000_000 + 1_000 * li) + 1
        self.out.append(Out(topic, self._msg(l, "delta", sorted(out[0], reverse=True), sorted(out[1]), t,
                                             self.u[li], seq), "book", l.symbol))

    def on_trade(self, li, t, px, q, side, tid) -> None:
        l = self.by_idx[li]
        topic = f"publicTrade.{l.venue_symbol}"
        if not self.wanted.get(topic):
            return
        ms = t // 1_000_000
        self.out.append(Out(topic, (
            f'{{"topic":"{topic}","type":"snapshot","ts":{ms},"data":[{{"T":{ms},"s":"{l.venue_symbol}",'
            f'"S":"{"Buy" if side == 0 else "Sell"}","v":"{dec(q, l.qty_dec)}","p":"{dec(px, l.price_dec)}",'
            f'"L":"ZeroPlusTick","i":"{tid}","BT":false}}]}}'), "trade", l.symbol))

    def accepts(self, path: str) -> bool:
        return path.split("?")[0].rstrip("/") == "/v5/public/spot"

    request_field = "op"
    malformed_reply = '{"success":false,"ret_msg":"Invalid request","op":""}'

    def on_request(self, c: Client, msg: dict, op: Any) -> None:
        req_id = msg.get("req_id", "")
        if op == "ping":
            c.queue(json.dumps({"success": True, "ret_msg": "pong", "conn_id": c.conn_id,
                                "req_id": req_id, "op": "ping"}))
            return
        if op not in ("subscribe", "unsubscribe"):
            c.queue(json.dumps({"success": False, "ret_msg": f"unknown op {op}", "conn_id": c.conn_id,
                                "req_id": req_id, "op": op}))
            return
        topics = msg.get("args") or []
        bad = []
        for tp in topics:
            kind, _, sym = str(tp).rpartition(".")
            if kind not in (f"orderbook.{DEPTH}", "publicTrade") or sym not in self.by_sym:
                bad.append(tp)
        if bad:
            c.queue(json.dumps({"success": False, "ret_msg": f"Invalid topic(s) {bad}", "conn_id": c.conn_id,
                                "req_id": req_id, "op": op}))
            return
        c.queue(json.dumps({"success": True, "ret_msg": "", "conn_id": c.conn_id, "req_id": req_id, "op": op}))
        for tp in topics:
            if op == "unsubscribe":
                self.unsubscribe(c, tp)
                continue
            if not self.subscribe(c, tp):
                continue
            if tp.startswith("orderbook."):
                li = self.by_sym[tp.rpartition(".")[2]]
                l = self.by_idx[li]
                book = self.sim.books[li]
                if li not in self.views:
                    self.views[li] = (dict(book.top(0, DEPTH)), dict(book.top(1, DEPTH)))
                b, a = self.views[li]
                # the snapshot carries the stream's current u; the next delta is u + 1
                u = self.u.setdefault(li, 1_000_000 + 1_000 * li)
                c.queue(self._msg(l, "snapshot", sorted(b.items(), reverse=True), sorted(a.items()),
                                  self.sim.now_ns(), u, book.seq))
