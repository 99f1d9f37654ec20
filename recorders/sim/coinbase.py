"""Coinbase Advanced Trade market data, as documented on docs.cdp.coinbase.com.

One WebSocket at ``/``; ``{"type":"subscribe","product_ids":[..],"channel":..}``
with channels ``level2`` (answered on channel ``l2_data``: a ``snapshot``
event, then ``update`` events, sides ``bid``/``offer``, absolute
``new_quantity``), ``market_trades`` and ``heartbeats``. Every message carries
``sequence_num``, counted per connection (so a dropped message is a gap).
Numbers are decimal strings.
"""

from __future__ import annotations

import json

from recorders.sim.feed import Client, Encoder, Out
from recorders.sim.wire import dec_strip, frame, iso_ns

__all__ = ["CoinbaseEncoder"]

CHANNELS = ("level2", "market_trades", "heartbeats", "ticker")


def _env(channel: str, ts: str) -> tuple[str, str]:
    return (f'{{"channel":"{channel}","client_id":"","timestamp":"{ts}","sequence_num":', ',"events":')


class CoinbaseEncoder(Encoder):
    venue = "coinbase"

    def __init__(self, sim, items) -> None:
        super().__init__(sim, items)
        self.next_hb = 0
        self.hb_counter = 0

    def _parts(self, channel: str, t: int, events: str) -> tuple[str, str]:
        head, mid = _env(channel, iso_ns(t))
        return head, mid + events + "}"

    def on_book(self, li, t, seq, changes, book) -> None:
        l = self.by_idx[li]
        if not self.wanted.get(("level2", l.venue_symbol)):
            return
        ts = iso_ns(t)
        pd, qd = l.price_dec, l.qty_dec
        ups = ",".join(
            f'{{"side":"{"bid" if sd == 0 else "offer"}","event_time":"{ts}",'
            f'"price_level":"{dec_strip(px, pd)}","new_quantity":"{dec_strip(q, qd)}"}}'
            for sd, px, q in changes)
        ev = f'[{{"type":"update","product_id":"{l.venue_symbol}","updates":[{ups}]}}]'
        self.out.append(Out(("level2", l.venue_symbol), None, "book", l.symbol,
                            self._parts("l2_data", t, ev)))

    def on_trade(self, li, t, px, q, side, tid) -> None:
        l = self.by_idx[li]
        if not self.wanted.get(("market_trades", l.venue_symbol)):
            return
        ts = iso_ns(t)
        tr = (f'{{"trade_id":"{tid}","product_id":"{l.venue_symbol}","price":"{dec_strip(px, l.price_dec)}",'
              f'"size":"{dec_strip(q, l.qty_dec)}","side":"{"BUY" if side == 0 else "SELL"}","time":"{ts}"}}')
        ev = f'[{{"type":"update","trades":[{tr}]}}]'
        self.out.append(Out(("market_trades", l.venue_symbol), None, "trade", l.symbol,
                            self._parts("market_trades", t, ev)))

    def on_clock(self, now: int) -> None:
        if self.next_hb == 0:
            self.next_hb = (now // 10**9 + 1) * 10**9
        while now >= self.next_hb:
            self.hb_counter += 1
            ev = f'[{{"current_time":"{iso_ns(self.next_hb)}","heartbeat_counter":{self.hb_counter}}}]'
            self.out.append(Out(("heartbeats",), None, "heartbeat", "",
                                self._parts("heartbeats", self.next_hb, ev)))
            self.next_hb += 10**9

    # -- connections ----------------------------------------------------
    def accepts(self, path: str) -> bool:
        return path.split("?")[0] in ("/", "")

    def _send(self, c: Client, channel: str, events: str, t: int) -> None:
        c.seq += 1
        head, tail = self._parts(channel, t, events)
        c.pending.append(frame((head + str(c.seq - 1) + tail).encode()))

    def on_text(self, c: Client, text: str) -> None:
        now = self.sim.now_ns()
        try:
            msg = json.loads(text)
            typ = msg["type"]
            channel = msg.get("channel")
            products = msg.get("product_ids") or []
        except (ValueError, KeyError, TypeError, AttributeError):
            self._send(c, "error", '[{"message":"malformed subscribe message"}]', now)
            return
        if typ not in ("subscribe", "unsubscribe") or channel not in CHANNELS:
            self._send(c, "error", json.dumps([{"message": f"unknown type/channel {typ!r}/{channel!r}"}]), now)
            return
        bad = [p for p in products if p not in self.by_sym]
        if bad:
            self._send(c, "error", json.dumps([{"message": f"unknown product_ids {bad}"}]), now)
            return
        keys = [(channel,)] if channel == "heartbeats" else [(channel, p) for p in products]
        for k in keys:
            if typ == "unsubscribe":
                self.unsubscribe(c, k)
            else:
                self.subscribe(c, k)
        subs: dict[str, list[str]] = {}
        for k in sorted(c.subs):
            subs.setdefault(k[0], []).extend(k[1:])
        self._send(c, "subscriptions", json.dumps([{"subscriptions": subs}], separators=(",", ":")), now)
        if typ == "subscribe" and channel == "level2":
            for p in products:
                self._snapshot(c, self.by_sym[p], now)

    def _snapshot(self, c: Client, li: int, now: int) -> None:
        l = self.by_idx[li]
        book = self.sim.books[li]
        ts = iso_ns(now)
        pd, qd = l.price_dec, l.qty_dec
        ups = [f'{{"side":"bid","event_time":"{ts}","price_level":"{dec_strip(p, pd)}",'
               f'"new_quantity":"{dec_strip(q, qd)}"}}' for p, q in book.top(0, 10**6)]
        ups += [f'{{"side":"offer","event_time":"{ts}","price_level":"{dec_strip(p, pd)}",'
                f'"new_quantity":"{dec_strip(q, qd)}"}}' for p, q in book.top(1, 10**6)]
        ev = f'[{{"type":"snapshot","product_id":"{l.venue_symbol}","updates":[{",".join(ups)}]}}]'
        self._send(c, "l2_data", ev, now)

    def wants(self, c: Client, o: Out) -> bool:
        return o.key in c.subs

    def render_many(self, c: Client, outs: list[Out]) -> list[bytes]:
        """Frame this client's messages of a tick. ``sequence_num`` is the venue's
        count of the messages it produced for the connection, in the order it
        produced them (:attr:`Out.pos`): a dropped message (``ghost``: gap, silence)
        still uses its number, a repeated one carries the same number again, and a
        reordered pair keeps its numbers, so the client can see all three, as the
        venue documents ``sequence_num`` for."""
        order = sorted({o.pos for o in outs})
        base = c.seq
        num = {p: base + k for k, p in enumerate(order)}
        c.seq = base + len(order)
        frames = []
        for o in outs:
            if o.kind == "ghost":
                continue
            if o.text is not None:  # malformed injection: raw text, still uses a number
                frames.append(frame(o.text.encode()))
                continue
            head, tail = o.parts
            frames.append(frame((head + str(num[o.pos]) + tail).encode()))
        return frames
