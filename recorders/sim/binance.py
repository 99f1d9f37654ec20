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
import time
import urllib.parse
from typing import Any

import numpy as np
import polars as pl

from recorders.sim.feed import Client, Encoder, LiveBook, Out, Prepared
from recorders.sim.wire import frame, scale_dec

__all__ = ["BinanceEncoder"]

STREAM_KINDS = ("trade", "aggTrade", "depth@100ms", "depth", "bookTicker")


def _depth_windows(c, step: int, lvl: list[str], sym: str) -> tuple[np.ndarray, list[str]]:
    """depthUpdate texts of each ``step``-ns window of a chunk: the last size of
    each level changed in the window, bids high to low, asks low to high."""
    w = c.upd_t // step
    n = w.shape[0]
    # sort by window, side, price (bids descending), keeping event order inside a level
    key_px = np.where(c.upd_side == 0, -c.upd_px, c.upd_px)
    order = np.lexsort((np.arange(n), key_px, c.upd_side, w))
    ws, ss, ps = w[order], c.upd_side[order], key_px[order]
    last = np.ones(n, bool)
    last[:-1] = (ws[1:] != ws[:-1]) | (ss[1:] != ss[:-1]) | (ps[1:] != ps[:-1])
    keep = order[last]  # one row per (window, side, price): its last change
    kw, ks = w[keep], c.upd_side[keep]
    # window bounds: first/last update id of each window (ids grow with time)
    wins, first = np.unique(w, return_index=True)
    lastidx = np.concatenate([first[1:], [n]]) - 1
    U = c.upd_seq[first].tolist()
    u = c.upd_seq[lastidx].tolist()
    # split the kept rows by window and side
    kwin = np.searchsorted(wins, kw)
    grp = kwin * 2 + ks
    bounds = np.searchsorted(grp, np.arange(2 * len(wins) + 1))
    kl = [lvl[k] for k in keep.tolist()]
    b = bounds.tolist()
    texts = []
    for i, win in enumerate(wins.tolist()):
        bids = ",".join(kl[b[2 * i]:b[2 * i + 1]])
        asks = ",".join(kl[b[2 * i + 1]:b[2 * i + 2]])
        texts.append(f'{{"e":"depthUpdate","E":{(win + 1) * step // 1_000_000},"s":"{sym}","U":{U[i]},'
                     f'"u":{u[i]},"b":[{bids}],"a":[{asks}]}}')
    return (wins + 1) * step, texts


def _d8(col: str) -> pl.Expr:
    """Integer units of 1e-8 as Binance's 8-decimal text (vectorised)."""
    e = pl.col(col).cast(pl.String).str.zfill(9)
    return pl.concat_str([e.str.head(-8), pl.lit("."), e.str.tail(8)])


class BinanceEncoder(Encoder):
    venue = "binance"

    def __init__(self, sim, items) -> None:
        super().__init__(sim, items)
        self.lower = {i: l.venue_symbol.lower() for i, l in items}
        self.agg_id = {i: 10**8 + 7 * i for i, _ in items}

    # -- market events: pre-encoded per chunk, vectorised -----------------
    vectorised = True

    def prepare(self, li: int, c) -> Prepared:
        """All Binance messages of one model chunk, in time order.

        Depth windows are aligned to 100 ms / 1 s of simulated time; model
        chunks are whole seconds, so a window never straddles two chunks.
        """
        l = self.by_idx[li]
        s = self.lower[li]
        sym = l.venue_symbol
        pd_, qd = 10 ** (8 - l.price_dec), 10 ** (8 - l.qty_dec)
        parts: list[pl.LazyFrame] = []
        nt = c.trade_t.shape[0]
        if nt:
            a0 = self.agg_id[li]
            self.agg_id[li] += nt
            tr = pl.DataFrame({"t": c.trade_t, "px": c.trade_px * pd_, "q": c.trade_q * qd,
                               "side": c.trade_side, "id": c.trade_id,
                               "a": np.arange(a0 + 1, a0 + 1 + nt, dtype=np.int64)}).lazy()
            E = (pl.col("t") // 1_000_000).cast(pl.String)
            m = pl.when(pl.col("side") == 1).then(pl.lit("true")).otherwise(pl.lit("false"))
            p, q = _d8("px"), _d8("q")
            tr = tr.with_columns(E=E, m=m, p=p, qq=q, idt=pl.col("id").cast(pl.String),
                                 at=pl.col("a").cast(pl.String))
            trade = tr.select("t", pl.lit(s + "@trade").alias("key"), pl.lit(0).alias("o"), pl.concat_str([
                pl.lit('{"e":"trade","E":'), "E", pl.lit(f',"s":"{sym}","t":'), "idt", pl.lit(',"p":"'), "p",
                pl.lit('","q":"'), "qq", pl.lit('","T":'), "E", pl.lit(',"m":'), "m", pl.lit(',"M":true}')]
            ).alias("text"), pl.lit("trade").alias("kind"))
            agg = tr.select("t", pl.lit(s + "@aggTrade").alias("key"), pl.lit(1).alias("o"), pl.concat_str([
                pl.lit('{"e":"aggTrade","E":'), "E", pl.lit(f',"s":"{sym}","a":'), "at", pl.lit(',"p":"'), "p",
                pl.lit('","q":"'), "qq", pl.lit('","f":'), "idt", pl.lit(',"l":'), "idt", pl.lit(',"T":'), "E",
                pl.lit(',"m":'), "m", pl.lit(',"M":true}')]).alias("text"), pl.lit("trade").alias("kind"))
            parts += [trade, agg]
        if c.quote_t.shape[0]:
            qt = pl.DataFrame({"t": c.quote_t, "bp": c.quote_bp * pd_, "bq": c.quote_bq * qd,
                               "ap": c.quote_ap * pd_, "aq": c.quote_aq * qd, "u": c.quote_seq}).lazy()
            parts.append(qt.select("t", pl.lit(s + "@bookTicker").alias("key"), pl.lit(2).alias("o"), pl.concat_str([
                pl.lit('{"u":'), pl.col("u").cast(pl.String), pl.lit(f',"s":"{sym}","b":"'), _d8("bp"),
                pl.lit('","B":"'), _d8("bq"), pl.lit('","a":"'), _d8("ap"), pl.lit('","A":"'), _d8("aq"),
                pl.lit('"}')]).alias("text"), pl.lit("ticker").alias("kind")))
        if c.upd_t.shape[0]:
            lvl = pl.DataFrame({"px": c.upd_px * pd_, "q": c.upd_q * qd}).select(
                pl.concat_str([pl.lit('["'), _d8("px"), pl.lit('","'), _d8("q"), pl.lit('"]')])
            ).to_series().to_list()
            for ms, name, o in ((100, "@depth@100ms", 3), (1000, "@depth", 4)):
                t, texts = _depth_windows(c, ms * 1_000_000, lvl, sym)
                parts.append(pl.DataFrame({"t": t, "key": [s + name] * len(texts), "o": [o] * len(texts),
                                           "text": texts, "kind": ["book"] * len(texts)},
                                          schema_overrides={"o": pl.Int32}).lazy())
        if not parts:
            return Prepared(np.zeros(0, np.int64), [], [], [], l.symbol)
        df = (pl.concat(parts).sort("t", "o", maintain_order=True)
              .with_columns(wrapped=pl.concat_str([pl.lit('{"stream":"'), "key", pl.lit('","data":'),
                                                   "text", pl.lit("}")]))
              .collect())
        return Prepared(df["t"].to_numpy(), df["key"].to_list(), df["text"].to_list(),
                        df["kind"].to_list(), l.symbol, df["wrapped"].to_list())

    # -- connections ----------------------------------------------------
    def _valid(self, stream: str) -> bool:
        sym, _, kind = stream.partition("@")
        return kind in STREAM_KINDS and sym.upper() in self.by_sym

    def _sub(self, c: Client, streams: list[str]) -> None:
        for s in streams:
            self.subscribe(c, s)

    def _unsub(self, c: Client, streams: list[str]) -> None:
        for s in streams:
            self.unsubscribe(c, s)

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

    request_field = "method"
    malformed_reply = '{"error":{"code":3,"msg":"Invalid JSON: expected a method object"}}'

    def on_request(self, c: Client, msg: dict, method: Any) -> None:
        rid = msg.get("id")
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

    def variant(self, c: Client) -> int:
        return 1 if c.combined else 0

    def render(self, c: Client, o: Out) -> bytes:
        if not c.combined:
            return o.frame()
        f = o.alt
        if f is None:
            f = o.alt = frame(f'{{"stream":"{o.key}","data":{o.text}}}'.encode())
        return f

    # -- REST -----------------------------------------------------------
    def exchange_info(self) -> tuple[int, str]:
        """``GET /api/v3/exchangeInfo``: the listing, in the real endpoint's shape (the fields a
        client reads to check symbols: ``symbol``, ``status``, ``baseAsset``, ``quoteAsset``)."""
        syms = [{"symbol": l.venue_symbol, "status": "TRADING", "baseAsset": l.base, "quoteAsset": l.quote,
                 "baseAssetPrecision": 8, "quoteAssetPrecision": 8}
                for l in (self.by_idx[i] for i in sorted(self.by_sym.values()))]
        return 200, json.dumps({"timezone": "UTC", "serverTime": int(time.time() * 1000),
                                "rateLimits": [], "exchangeFilters": [], "symbols": syms})

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
