"""Binance spot market streams, as documented in binance-spot-api-docs.

Paths ``/ws/<stream>[/<stream>...]`` (raw payloads), ``/ws`` (then
``SUBSCRIBE``) and ``/stream?streams=a/b`` (each payload wrapped as
``{"stream":..,"data":..}``). Streams ``<sym>@trade``, ``<sym>@aggTrade``,
``<sym>@depth@100ms`` / ``<sym>@depth`` (1000 ms; diffs with ``U``/``u``),
``<sym>@bookTicker``. REST ``GET /api/v3/depth?symbol=&limit=`` answers the
book with ``lastUpdateId``. Numbers are strings with 8 decimals.
"""

from __future__ import annotations

import json
import urllib.parse

from recorders.sim.feed import Client, Encoder, LiveBook, Out
from recorders.sim.wire import frame, scale_dec

__all__ = ["BinanceEncoder"]

STREAM_KINDS = ("trade", "aggTrade", "depth@100ms", "depth", "bookTicker")


class BinanceEncoder(Encoder):
    venue = "binance"

    def __init__(self, sim, items) -> None:
        super().__init__(sim, items)
        self.lower = {i: l.venue_symbol.lower() for i, l in items}
        self.by_sym = {l.venue_symbol: i for i, l in items}
        # depth windows: listing -> [changes dict, U, u]; per interval
        self.win: dict[tuple[int, int], list] = {}
        self.next_flush = {100: 0, 1000: 0}
        self.agg_id = {i: 10**8 + 7 * i for i, _ in items}
        self.wanted: dict[str, int] = {}

    # -- market events --------------------------------------------------
    def _want(self, stream: str) -> bool:
        return self.wanted.get(stream, 0) > 0

    def on_book(self, li, t, seq, changes, book) -> None:
        s = self.lower[li]
        for ms, name in ((100, "@depth@100ms"), (1000, "@depth")):
            if not self._want(s + name):
                continue
            w = self.win.get((li, ms))
            if w is None:
                w = self.win[(li, ms)] = [{}, seq, seq]
            d = w[0]
            for side, px, q in changes:
                d[(side, px)] = q
            w[2] = seq

    def on_trade(self, li, t, px, q, side, tid) -> None:
        s = self.lower[li]
        l = self.by_idx[li]
        sym = l.venue_symbol
        ms = t // 1_000_000
        m = "true" if side == 1 else "false"  # buyer is maker <=> aggressor sold
        p = scale_dec(px, l.price_dec, 8)
        qq = scale_dec(q, l.qty_dec, 8)
        if self._want(s + "@trade"):
            self.out.append(Out(s + "@trade", (
                f'{{"e":"trade","E":{ms},"s":"{sym}","t":{tid},"p":"{p}","q":"{qq}",'
                f'"T":{ms},"m":{m},"M":true}}'), "trade", l.symbol))
        if self._want(s + "@aggTrade"):
            self.agg_id[li] += 1
            self.out.append(Out(s + "@aggTrade", (
                f'{{"e":"aggTrade","E":{ms},"s":"{sym}","a":{self.agg_id[li]},"p":"{p}","q":"{qq}",'
                f'"f":{tid},"l":{tid},"T":{ms},"m":{m},"M":true}}'), "trade", l.symbol))

    def on_quote(self, li, t, bp, bq, ap, aq, seq) -> None:
        s = self.lower[li] + "@bookTicker"
        if not self._want(s):
            return
        l = self.by_idx[li]
        pd, qd = l.price_dec, l.qty_dec
        self.out.append(Out(s, (
            f'{{"u":{seq},"s":"{l.venue_symbol}","b":"{scale_dec(bp, pd, 8)}","B":"{scale_dec(bq, qd, 8)}",'
            f'"a":"{scale_dec(ap, pd, 8)}","A":"{scale_dec(aq, qd, 8)}"}}'), "ticker", l.symbol))

    def on_clock(self, now: int) -> None:
        for ms in (100, 1000):
            step = ms * 1_000_000
            if self.next_flush[ms] == 0:
                self.next_flush[ms] = (now // step + 1) * step
            if now < self.next_flush[ms]:
                continue
            e_ms = self.next_flush[ms] // 1_000_000
            self.next_flush[ms] = (now // step + 1) * step
            self._emit_windows(ms, e_ms)

    def flush_pending(self, now: int) -> None:
        for ms in (100, 1000):
            self._emit_windows(ms, now // 1_000_000)

    def _emit_windows(self, ms: int, e_ms: int) -> None:
        name = "@depth@100ms" if ms == 100 else "@depth"
        if True:
            for (li, wms), w in list(self.win.items()):
                if wms != ms or not w[0]:
                    continue
                l = self.by_idx[li]
                pd, qd = l.price_dec, l.qty_dec
                bids = sorted(((p, q) for (sd, p), q in w[0].items() if sd == 0), reverse=True)
                asks = sorted((p, q) for (sd, p), q in w[0].items() if sd == 1)
                b = ",".join(f'["{scale_dec(p, pd, 8)}","{scale_dec(q, qd, 8)}"]' for p, q in bids)
                a = ",".join(f'["{scale_dec(p, pd, 8)}","{scale_dec(q, qd, 8)}"]' for p, q in asks)
                self.out.append(Out(self.lower[li] + name, (
                    f'{{"e":"depthUpdate","E":{e_ms},"s":"{l.venue_symbol}","U":{w[1]},"u":{w[2]},'
                    f'"b":[{b}],"a":[{a}]}}'), "book", l.symbol))
                del self.win[(li, wms)]

    # -- connections ----------------------------------------------------
    def _valid(self, stream: str) -> bool:
        sym, _, kind = stream.partition("@")
        return kind in STREAM_KINDS and sym.upper() in self.by_sym

    def _sub(self, c: Client, streams: list[str]) -> None:
        for s in streams:
            if s not in c.subs:
                c.subs.add(s)
                self.wanted[s] = self.wanted.get(s, 0) + 1

    def _unsub(self, c: Client, streams: list[str]) -> None:
        for s in streams:
            if s in c.subs:
                c.subs.discard(s)
                self.wanted[s] -= 1

    def accepts(self, path: str) -> bool:
        u = urllib.parse.urlsplit(path)
        if u.path == "/stream":
            return True
        return u.path == "/ws" or u.path.startswith("/ws/")

    def on_open(self, c: Client, path: str) -> None:
        u = urllib.parse.urlsplit(path)
        if u.path == "/stream":
            c.combined = True
            qs = urllib.parse.parse_qs(u.query)
            streams = [s for v in qs.get("streams", []) for s in v.split("/") if s]
        else:
            streams = [s for s in u.path[len("/ws"):].split("/") if s]
        self._sub(c, [s for s in streams if self._valid(s)])

    def on_close(self, c: Client) -> None:
        self._unsub(c, list(c.subs))

    def on_text(self, c: Client, text: str) -> None:
        try:
            msg = json.loads(text)
            method = msg["method"]
            rid = msg.get("id")
        except (ValueError, KeyError, TypeError):
            c.queue('{"error":{"code":3,"msg":"Invalid JSON: expected a method object"}}')
            return
        params = msg.get("params") or []
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            bad = [s for s in params if not isinstance(s, str) or not self._valid(s)]
            if bad:
                c.queue(json.dumps({"error": {"code": 2, "msg": f"Invalid request: unknown stream(s) {bad}"},
                                    "id": rid}))
                return
            (self._sub if method == "SUBSCRIBE" else self._unsub)(c, params)
            c.queue(json.dumps({"result": None, "id": rid}))
        elif method == "LIST_SUBSCRIPTIONS":
            c.queue(json.dumps({"result": sorted(c.subs), "id": rid}))
        else:
            c.queue(json.dumps({"error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"},
                                "id": rid}))

    def render(self, c: Client, o: Out) -> bytes:
        if not c.combined:
            return o.frame()
        f = o.alt
        if f is None:
            f = o.alt = frame(f'{{"stream":"{o.key}","data":{o.text}}}'.encode())
        return f

    # -- REST -----------------------------------------------------------
    def depth(self, query: str, books: dict[int, LiveBook]) -> tuple[int, str]:
        qs = urllib.parse.parse_qs(query)
        sym = (qs.get("symbol") or [""])[0]
        if sym not in self.by_sym:
            return 400, json.dumps({"code": -1121, "msg": f"Invalid symbol: {sym!r}."})
        try:
            limit = int((qs.get("limit") or ["100"])[0])
        except ValueError:
            return 400, json.dumps({"code": -1100, "msg": "Illegal characters found in parameter 'limit'."})
        limit = max(1, min(limit, 5000))
        li = self.by_sym[sym]
        l = self.by_idx[li]
        b = books[li]
        pd, qd = l.price_dec, l.qty_dec
        bids = ",".join(f'["{scale_dec(p, pd, 8)}","{scale_dec(q, qd, 8)}"]' for p, q in b.top(0, limit))
        asks = ",".join(f'["{scale_dec(p, pd, 8)}","{scale_dec(q, qd, 8)}"]' for p, q in b.top(1, limit))
        return 200, f'{{"lastUpdateId":{b.seq},"bids":[{bids}],"asks":[{asks}]}}'
