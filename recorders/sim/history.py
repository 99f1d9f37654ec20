"""The simulator's public trade history over REST, per venue, with the venues'
shapes, page limits and rate limits (docs/CONTRACTS.md, "Backfill").

Every trade the simulator publishes is kept per listing (:class:`TradeHistory`);
the REST handlers below answer from it exactly like the real endpoints:

- Binance ``GET /api/v3/historicalTrades?symbol=&fromId=&limit=`` (limit <= 1000,
  oldest first from ``fromId``; without it, the most recent ``limit``), weight 25.
- OKX ``GET /api/v5/market/history-trades?instId=&type=1&after=&before=&limit=``
  (limit <= 100, newest first; ``after=id``: trades with smaller ids, ``before=id``:
  larger ids), 20 requests per 2 s.
- Kraken ``GET /0/public/Trades?pair=&since=&count=`` (count <= 1000, oldest first,
  trades after ``since`` in ns; ``last`` = the cursor for the next call).
- Coinbase ``GET /api/v3/brokerage/market/products/{id}/ticker?limit=&start=&end=``
  (limit <= 1000, newest first, ``start``/``end`` UNIX seconds).
- Bybit ``GET /v5/market/recent-trade?category=spot&symbol=&limit=`` (limit <= 60,
  only the most recent trades: no cursor).

``history_s`` (``Simulator.history_s``) truncates what is served to the last N
simulated seconds: a recorder down longer than that is left with a hole.
Exceeding a venue's rate limit answers HTTP 429 (with ``Retry-After``).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections import deque

import numpy as np

from recorders.sim.wire import dec, dec_strip, iso_ns

__all__ = ["TradeHistory", "RateLimit", "RATE_LIMITS", "WEIGHTS", "PAGE_LIMITS", "serve_history",
           "is_history_path"]

#: venue -> (weight allowed per window, window seconds); from the venues' docs (CONTRACTS.md)
RATE_LIMITS: dict[str, tuple[float, float]] = {
    "binance": (6000.0, 60.0),   # REQUEST_WEIGHT 6000 / minute per IP
    "okx": (20.0, 2.0),          # history-trades: 20 requests / 2 s per IP
    "kraken": (15.0, 15.0),      # public counter: ~1 call/s sustained, burst 15
    "coinbase": (10.0, 1.0),     # public endpoints: 10 requests / s per IP
    "bybit": (600.0, 5.0),       # 600 requests / 5 s per IP
}
#: weight of one trade-history request
WEIGHTS: dict[str, float] = {"binance": 25.0, "okx": 1.0, "kraken": 1.0, "coinbase": 1.0, "bybit": 1.0}
#: most rows one request returns
PAGE_LIMITS: dict[str, int] = {"binance": 1000, "okx": 100, "kraken": 1000, "coinbase": 1000, "bybit": 60}


class RateLimit:
    """A sliding-window weight budget (one per venue, as per IP on the real venue).

    >>> r = RateLimit(50, 60.0)
    >>> [r.take(25, now=0.0), r.take(25, now=1.0), r.take(25, now=2.0), r.take(25, now=61.0)]
    [0.0, 0.0, 58.0, 0.0]
    """

    def __init__(self, limit: float, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._spent: deque[tuple[float, float]] = deque()
        self.used = 0.0
        self.max_used = 0.0
        self.refused = 0

    def take(self, weight: float, now: float | None = None) -> float:
        """Spend ``weight`` now; 0.0 if allowed, else the seconds until it would be."""
        now = time.monotonic() if now is None else now
        while self._spent and self._spent[0][0] <= now - self.window_s:
            self.used -= self._spent.popleft()[1]
        if self.used + weight > self.limit:
            self.refused += 1
            return max(self._spent[0][0] + self.window_s - now, 0.001) if self._spent else self.window_s
        self._spent.append((now, weight))
        self.used += weight
        self.max_used = max(self.max_used, self.used)
        return 0.0


class TradeHistory:
    """Every published trade of one listing, as numpy columns (append in chunks).

    Thread-safe: the simulator's loop appends while a test thread may read.
    """

    def __init__(self) -> None:
        self._parts: list[tuple[np.ndarray, ...]] = []
        self._cols: tuple[np.ndarray, ...] | None = None
        self._lock = threading.Lock()

    def add(self, t: np.ndarray, px: np.ndarray, q: np.ndarray, side: np.ndarray, tid: np.ndarray) -> None:
        if t.shape[0]:
            part = (t.copy(), px.copy(), q.copy(), side.copy(), tid.copy())
            with self._lock:
                self._parts.append(part)

    def cols(self, since_ns: int | None = None) -> tuple[np.ndarray, ...]:
        """(t, px, q, side, id) in publication order; only trades at or after ``since_ns``."""
        with self._lock:
            if self._parts:
                parts = ([self._cols] if self._cols is not None else []) + self._parts
                self._cols = tuple(np.concatenate([p[k] for p in parts]) for k in range(5))
                self._parts = []
            cols = self._cols
        return self._since(cols, since_ns)

    @staticmethod
    def _since(cols: tuple[np.ndarray, ...] | None, since_ns: int | None) -> tuple[np.ndarray, ...]:
        if cols is None:
            e = np.zeros(0, np.int64)
            return (e, e, e, e, e)
        c = cols
        if since_ns is not None:
            i = int(np.searchsorted(c[0], since_ns, side="left"))
            c = tuple(x[i:] for x in c)
        return c


_PATHS = ("/api/v3/historicalTrades", "/api/v5/market/history-trades", "/0/public/Trades",
          "/v5/market/recent-trade")


def is_history_path(venue: str, path: str) -> bool:
    if venue == "coinbase":
        return path.startswith("/api/v3/brokerage/market/products/") and path.endswith("/ticker")
    return path in _PATHS


def _int(qs: dict, key: str, default: int | None) -> int | None:
    v = (qs.get(key) or [None])[0]
    if v is None or v == "":
        return default
    return int(float(v))


def serve_history(venue: str, path: str, query: str, listing_of, history_of, now_ns: int,
                  history_s: float | None) -> tuple[int, str]:
    """Answer one trade-history request: (HTTP status, JSON body).

    ``listing_of(symbol_text)`` -> (listing, index) or None; ``history_of(index)`` ->
    :class:`TradeHistory`.
    """
    qs = urllib.parse.parse_qs(query)
    since = None if not history_s else now_ns - int(history_s * 1e9)
    try:
        if venue == "binance":
            return _binance(qs, listing_of, history_of, since)
        if venue == "okx":
            return _okx(qs, listing_of, history_of, since)
        if venue == "kraken":
            return _kraken(qs, listing_of, history_of, since)
        if venue == "coinbase":
            pid = path[len("/api/v3/brokerage/market/products/"):-len("/ticker")]
            return _coinbase(pid, qs, listing_of, history_of, since)
        if venue == "bybit":
            return _bybit(qs, listing_of, history_of, since, now_ns)
    except ValueError as e:
        return 400, json.dumps({"error": f"bad parameter: {e}"})
    return 404, json.dumps({"error": f"no trade history on {venue}"})


def _binance(qs, listing_of, history_of, since) -> tuple[int, str]:
    sym = (qs.get("symbol") or [""])[0]
    found = listing_of(sym)
    if found is None:
        return 400, json.dumps({"code": -1121, "msg": "Invalid symbol."})
    l, li = found
    limit = _int(qs, "limit", 500)
    if not 1 <= limit <= 1000:
        return 400, json.dumps({"code": -1100, "msg": "Illegal characters found in parameter 'limit'; legal range is '1000'."})
    t, px, q, side, tid = history_of(li).cols(since)
    from_id = _int(qs, "fromId", None)
    if from_id is None:
        sl = slice(max(0, t.shape[0] - limit), t.shape[0])
    else:
        i = int(np.searchsorted(tid, from_id, side="left"))
        sl = slice(i, i + limit)
    pd, qd = l.price_dec, l.qty_dec
    rows = [f'{{"id":{i},"price":"{dec(p * 10 ** (8 - pd), 8)}","qty":"{dec(x * 10 ** (8 - qd), 8)}",'
            f'"quoteQty":"{dec_strip(p * x, pd + qd)}","time":{tt // 1_000_000},'
            f'"isBuyerMaker":{"true" if s == 1 else "false"},"isBestMatch":true}}'
            for tt, p, x, s, i in zip(t[sl].tolist(), px[sl].tolist(), q[sl].tolist(), side[sl].tolist(),
                                      tid[sl].tolist())]
    return 200, "[" + ",".join(rows) + "]"


def _okx(qs, listing_of, history_of, since) -> tuple[int, str]:
    inst = (qs.get("instId") or [""])[0]
    found = listing_of(inst)
    if found is None:
        return 200, json.dumps({"code": "51001", "msg": "Instrument ID does not exist", "data": []})
    l, li = found
    typ = (qs.get("type") or ["1"])[0]
    if typ != "1":
        return 200, json.dumps({"code": "51000", "msg": "Parameter type error (the simulator pages by trade id: type=1)", "data": []})
    limit = _int(qs, "limit", 100)
    limit = max(1, min(limit, 100))
    t, px, q, side, tid = history_of(li).cols(since)
    after, before = _int(qs, "after", None), _int(qs, "before", None)
    hi = t.shape[0] if after is None else int(np.searchsorted(tid, after, side="left"))  # ids < after
    lo = 0 if before is None else int(np.searchsorted(tid, before, side="right"))       # ids > before
    if after is None and before is not None:
        idx = range(lo, min(hi, lo + limit))  # the oldest page above ``before``
    else:
        idx = range(max(lo, hi - limit), hi)
    rows = [f'{{"instId":"{l.venue_symbol}","side":"{"buy" if side[i] == 0 else "sell"}",'
            f'"sz":"{dec_strip(int(q[i]), l.qty_dec)}","px":"{dec(int(px[i]), l.price_dec)}",'
            f'"tradeId":"{int(tid[i])}","ts":"{int(t[i]) // 1_000_000}"}}' for i in reversed(idx)]
    return 200, '{"code":"0","msg":"","data":[' + ",".join(rows) + "]}"


def _kraken(qs, listing_of, history_of, since) -> tuple[int, str]:
    pair = (qs.get("pair") or [""])[0]
    found = listing_of(pair)
    if found is None:
        return 200, json.dumps({"error": ["EQuery:Unknown asset pair"]})
    l, li = found
    count = max(1, min(_int(qs, "count", 1000), 1000))
    t, px, q, side, tid = history_of(li).cols(since)
    s = _int(qs, "since", None)
    if s is None:
        sl = slice(max(0, t.shape[0] - count), t.shape[0])
    else:
        if s < 10**14:  # seconds, as older clients send
            s *= 10**9
        i = int(np.searchsorted(t, s, side="right"))
        sl = slice(i, i + count)
    rows = [f'["{dec(p, l.price_dec)}","{dec(x, l.qty_dec)}",{tt / 1e9:.6f},"{"b" if sd == 0 else "s"}","m","",{i}]'
            for tt, p, x, sd, i in zip(t[sl].tolist(), px[sl].tolist(), q[sl].tolist(), side[sl].tolist(),
                                       tid[sl].tolist())]
    ts = t[sl]
    last = int(ts[-1]) if ts.shape[0] else (s if s is not None else 0)
    return 200, (f'{{"error":[],"result":{{{json.dumps(pair)}:[' + ",".join(rows)
                 + f'],"last":"{last}"}}}}')


def _coinbase(pid, qs, listing_of, history_of, since) -> tuple[int, str]:
    found = listing_of(pid)
    if found is None:
        return 404, json.dumps({"error": "NOT_FOUND", "message": "product not found"})
    l, li = found
    limit = _int(qs, "limit", None)
    if limit is None:
        return 400, json.dumps({"error": "INVALID_ARGUMENT", "message": "limit is required"})
    limit = max(1, min(limit, 1000))
    t, px, q, side, tid = history_of(li).cols(since)
    start, end = _int(qs, "start", None), _int(qs, "end", None)
    lo = 0 if start is None else int(np.searchsorted(t, start * 10**9, side="left"))
    hi = t.shape[0] if end is None else int(np.searchsorted(t, end * 10**9, side="left"))  # time < end
    idx = range(max(lo, hi - limit), hi)
    rows = [f'{{"trade_id":"{int(tid[i])}","product_id":"{l.venue_symbol}","price":"{dec_strip(int(px[i]), l.price_dec)}",'
            f'"size":"{dec_strip(int(q[i]), l.qty_dec)}","time":"{iso_ns(int(t[i]))}",'
            f'"side":"{"BUY" if side[i] == 0 else "SELL"}","bid":"","ask":"","exchange":"coinbase"}}'
            for i in reversed(idx)]
    return 200, '{"trades":[' + ",".join(rows) + '],"best_bid":"","best_ask":""}'


def _bybit(qs, listing_of, history_of, since, now_ns) -> tuple[int, str]:
    sym = (qs.get("symbol") or [""])[0]
    cat = (qs.get("category") or [""])[0]
    if cat != "spot":
        return 200, json.dumps({"retCode": 10001, "retMsg": "the simulator serves category=spot", "result": {}})
    found = listing_of(sym)
    if found is None:
        return 200, json.dumps({"retCode": 10001, "retMsg": "params error: symbol invalid", "result": {}})
    l, li = found
    limit = max(1, min(_int(qs, "limit", 60), 60))
    t, px, q, side, tid = history_of(li).cols(since)
    idx = range(max(0, t.shape[0] - limit), t.shape[0])
    rows = [f'{{"execId":"{int(tid[i])}","symbol":"{l.venue_symbol}","price":"{dec(int(px[i]), l.price_dec)}",'
            f'"size":"{dec(int(q[i]), l.qty_dec)}","side":"{"Buy" if side[i] == 0 else "Sell"}",'
            f'"time":"{int(t[i]) // 1_000_000}","isBlockTrade":false}}' for i in reversed(idx)]
    return 200, ('{"retCode":0,"retMsg":"OK","result":{"category":"spot","list":[' + ",".join(rows)
                 + f']}},"retExtInfo":{{}},"time":{now_ns // 1_000_000}}}')
