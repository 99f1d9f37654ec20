"""The live exchange simulator: venue protocols over WebSocket on 127.0.0.1.

``Simulator(SimConfig(...))`` runs the market model on a clock (``speed``
times real time), keeps each listing's true book, has one protocol encoder
per venue turn events into venue messages, injects the configured faults and
writes every client's share of each tick in one socket write. Ground truth
goes to ``sim.truth`` (and ``--truth-dir``).

>>> import asyncio, json
>>> from websockets.asyncio.client import connect
>>> async def demo():
...     sim = Simulator(SimConfig(venues=("binance",), assets=("BTC",), port_base=0, speed=5))
...     await sim.start()
...     try:
...         async with connect(sim.urls()["binance"] + "/ws/btcusdt@trade") as ws:
...             return json.loads(await ws.recv())["e"]
...     finally:
...         await sim.stop()
>>> asyncio.run(demo())
'trade'
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Response
from websockets.protocol import State

from lab.venues import VENUES as REGISTRY
from recorders.sim.binance import BinanceEncoder
from recorders.sim.bybit import BybitEncoder
from recorders.sim.coinbase import CoinbaseEncoder
from recorders.sim.config import FAULT_KINDS, SimConfig
from recorders.sim.feed import Batch, Client, Encoder, LiveBook, Out, position
from recorders.sim.history import RATE_LIMITS, WEIGHTS, RateLimit, TradeHistory, is_history_path, serve_history
from recorders.sim.kraken import KrakenEncoder
from recorders.sim.market import Market
from recorders.sim.okx import OkxEncoder
from recorders.sim.wire import close_servers, iso_us

__all__ = ["Simulator", "Truth"]

ENCODERS: dict[str, type[Encoder]] = {
    "binance": BinanceEncoder,
    "coinbase": CoinbaseEncoder,
    "kraken": KrakenEncoder,
    "okx": OkxEncoder,
    "bybit": BybitEncoder,
}

TICK_S = 0.005
MAX_TICK_WALL_S = 0.05  # at most this much wall-clock worth of market per tick: stays responsive when behind
HIGH_WATER = 8 * 2**20
LOW_WATER = 2 * 2**20


_WARM = False


def _warm_up() -> None:
    """Run the model once on a tiny market so numba/polars load before serving."""
    global _WARM
    if not _WARM:
        m = Market(SimConfig(venues=("binance",), assets=("BTC",)), start_ns=0, chunk_ns=10**9)
        c = m.step()[0]
        BinanceEncoder(None, [(0, c.listing)]).prepare(0, c)
        _WARM = True


class Truth:
    """Ground truth of a run: in memory (bounded) and, with ``dir``, as JSONL files."""

    KINDS = ("faults", "trades", "books", "connections")

    def __init__(self, dir: str | None, maxlen: int = 2_000_000) -> None:
        self.dir = Path(dir) if dir else None
        self.faults: deque[dict] = deque(maxlen=maxlen)
        self.trades: deque[dict] = deque(maxlen=maxlen)
        self.books: deque[dict] = deque(maxlen=maxlen)
        self.connections: deque[dict] = deque(maxlen=maxlen)
        self._files: dict[str, Any] = {}
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            for k in self.KINDS:
                self._files[k] = open(self.dir / f"{k}.jsonl", "a", buffering=1 << 16)

    def add(self, kind: str, rec: dict) -> None:
        getattr(self, kind).append(rec)
        f = self._files.get(kind)
        if f is not None:
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")

    def add_many(self, kind: str, recs: list[dict]) -> None:
        getattr(self, kind).extend(recs)
        f = self._files.get(kind)
        if f is not None:
            enc = json.JSONEncoder(separators=(",", ":")).encode
            f.write("".join(enc(r) + "\n" for r in recs))

    def flush(self) -> None:
        for f in self._files.values():
            f.flush()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


class _Feed:
    """Per-listing queue of model output not yet published."""

    __slots__ = ("chunks", "pu", "pt", "pq")

    def __init__(self) -> None:
        self.chunks: deque = deque()
        self.pu = self.pt = self.pq = 0


class Simulator:
    """The live simulator. ``await start()`` / ``await stop()``, or
    ``with sim.running_in_thread(): ...``; ``urls()`` gives base URLs."""

    def __init__(self, cfg: SimConfig | None = None) -> None:
        self.cfg = cfg or SimConfig()
        self.truth = Truth(self.cfg.truth_dir)
        self.start_ns = self.cfg.start_ns if self.cfg.start_ns is not None else time.time_ns()
        # whole seconds: Binance depth windows (100 ms, 1 s) must not straddle model chunks
        self.start_ns -= self.start_ns % 10**9
        # whole simulated seconds: Binance depth windows (100 ms, 1 s) never straddle chunks
        chunk_ns = self.cfg.live_chunk_s() * 10**9
        self.market = Market(self.cfg, start_ns=self.start_ns, chunk_ns=chunk_ns)
        self.books: dict[int, LiveBook] = {}
        for i, b in enumerate(self.market.books):
            lb = LiveBook(b.seq)
            bp, bq, ap, aq = b.levels()
            lb.bids = dict(zip(bp.tolist(), bq.tolist()))
            lb.asks = dict(zip(ap.tolist(), aq.tolist()))
            self.books[i] = lb
        self.feeds = [_Feed() for _ in self.market.listings]
        self.encoders: dict[str, Encoder] = {}
        for v in self.cfg.venues:
            items = [(i, l) for i, l in enumerate(self.market.listings) if l.venue == v]
            if v in ENCODERS:
                self.encoders[v] = ENCODERS[v](self, items)
        self.ports: dict[str, int] = {}
        self._servers: list = []
        self._task: asyncio.Task | None = None
        self._wall0 = 0.0
        self._sim_t = self.start_ns
        self._rng = {v: np.random.default_rng([self.cfg.seed, 99, k]) for k, v in enumerate(self.cfg.venues)}
        self._fault_pending: dict[str, list[str]] = {v: [] for v in self.cfg.venues}
        self._slow_until: dict[str, float] = {v: 0.0 for v in self.cfg.venues}
        self._silent_until: dict[str, float] = {v: 0.0 for v in self.cfg.venues}
        self._held: dict[str, list[Out]] = {v: [] for v in self.cfg.venues}
        self.rest_errors: dict[str, int] = {v: 0 for v in self.cfg.venues}
        # public trade history over REST (recorders/sim/history.py): every published trade per
        # listing; ``history_s`` serves only the last N simulated seconds (None: everything);
        # ``rate_limits[venue]`` is the venue's weight budget (429 beyond it)
        self.history: dict[int, TradeHistory] = {i: TradeHistory() for i in range(len(self.market.listings))}
        self.history_s: float | None = None
        self.rate_limits: dict[str, RateLimit] = {v: RateLimit(*RATE_LIMITS[v]) for v in self.cfg.venues
                                                  if v in RATE_LIMITS}
        self.history_requests: dict[str, int] = {v: 0 for v in self.cfg.venues}
        self.stats = {"messages": 0, "bytes": 0}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- clock ----------------------------------------------------------
    def now_ns(self) -> int:
        """Current simulated time (what was last published)."""
        return self._sim_t

    def _clock(self) -> int:
        return self.start_ns + int((time.perf_counter() - self._wall0) * self.cfg.speed * 1e9)

    # -- lifecycle ------------------------------------------------------
    def urls(self) -> dict[str, str]:
        h = self.cfg.host
        s = "s" if self.cfg.tls_cert else ""
        out: dict[str, str] = {}
        for v, p in self.ports.items():
            base = f"ws{s}://{h}:{p}"
            out[v] = base + REGISTRY[v].sim_path
            out[v + "_rest"] = f"http{s}://{h}:{p}"  # REST on the venue's WebSocket port
        return out

    async def start(self) -> None:
        _warm_up()  # load the compiled kernels before accepting clients
        tls = None
        if self.cfg.tls_cert:
            import ssl

            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(self.cfg.tls_cert, self.cfg.tls_key)
        for v, enc in self.encoders.items():
            port = 0 if self.cfg.port_base == 0 else self.cfg.port(v)
            srv = await serve(
                self._handler(enc), self.cfg.host, port,
                process_request=self._process_request(enc),
                compression=None, ping_interval=self.cfg.ping_interval_s,
                ping_timeout=self.cfg.ping_timeout_s, max_size=2**20,
                server_header=None, ssl=tls,
            )
            self._servers.append(srv)
            self.ports[v] = srv.sockets[0].getsockname()[1]
        self._wall0 = time.perf_counter()
        if self.cfg.start_ns is None:
            # the model starts on the whole second before now; the clock starts at now, so
            # ts_exchange tracks the wall clock (at speed 1) instead of lagging by up to 1 s
            self._wall0 -= (time.time_ns() - self.start_ns) / (self.cfg.speed * 1e9)
            self._tick(self._clock())  # the backlog since that second, before any client is served
            for enc in self.encoders.values():
                enc.out.clear()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def pause(self) -> None:
        """Stop publishing (sockets stay open); what was sent is then final.

        Tests use it to compare a client's book with :attr:`books` exactly.
        """
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        # publish up to the next whole simulated second: every batching window closes there
        self._tick(-(-self._sim_t // 10**9) * 10**9)
        await self._deliver()
        self._paused_at = time.perf_counter()

    async def resume(self) -> None:
        """Publish again; the clock skips the paused time."""
        if self._task is None:
            self._wall0 += time.perf_counter() - getattr(self, "_paused_at", time.perf_counter())
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        for enc in self.encoders.values():
            for c in list(enc.clients):
                with contextlib.suppress(Exception):
                    c.ws.transport.abort()
        await close_servers(self._servers)
        self.truth.flush()

    @contextlib.contextmanager
    def running_in_thread(self) -> Iterator[Simulator]:
        """Run the simulator on its own event loop in a daemon thread."""
        ready = threading.Event()
        err: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.start())
            except BaseException as e:  # noqa: BLE001 - reported to the caller
                err.append(e)
                loop.close()
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=main, name="sim", daemon=True)
        self._thread.start()
        ready.wait(60)
        if err:
            raise err[0]
        try:
            yield self
        finally:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self.truth.close()

    # -- connections ----------------------------------------------------
    def _process_request(self, enc: Encoder):
        def process(conn: ServerConnection, request) -> Response | None:
            u = urllib.parse.urlsplit(request.path)
            if is_history_path(enc.venue, u.path):
                return self._history(conn, enc, u)
            if enc.venue == "binance" and u.path.startswith("/api/"):
                return self._rest(conn, enc, u)
            if not enc.accepts(request.path):
                return conn.respond(HTTPStatus.NOT_FOUND, f"no such path {u.path!r}\n")
            return None
        return process

    def _history(self, conn: ServerConnection, enc: Encoder, u) -> Response:
        """A public trade-history request: rate-limited per venue, answered from :attr:`history`."""
        v = enc.venue
        self.history_requests[v] = self.history_requests.get(v, 0) + 1
        lim = self.rate_limits.get(v)
        wait = lim.take(WEIGHTS.get(v, 1.0)) if lim is not None else 0.0
        if wait > 0:
            r = conn.respond(429, json.dumps({"code": -1003, "msg": "Too many requests (simulated rate limit)."}))
            r.headers["Retry-After"] = f"{max(1, int(wait + 0.999))}"
            r.headers["Content-Type"] = "application/json"
            return r
        by_text: dict[str, int] = {}
        for li, l in enc.by_idx.items():
            by_text[l.venue_symbol] = li
            by_text[l.venue_symbol.replace("/", "")] = li

        def listing_of(text: str):
            li = by_text.get(text)
            return None if li is None else (enc.by_idx[li], li)

        status, body = serve_history(v, u.path, u.query, listing_of, self.history.__getitem__,
                                     self._sim_t, self.history_s)
        r = conn.respond(status, body)
        r.headers["Content-Type"] = "application/json"
        if lim is not None and v == "binance":
            r.headers["X-MBX-USED-WEIGHT-1M"] = f"{lim.used:g}"
        return r

    def _rest(self, conn: ServerConnection, enc: Encoder, u) -> Response:
        def resp(status: int, body: str) -> Response:
            r = conn.respond(status, body)
            r.headers["Content-Type"] = "application/json;charset=UTF-8"
            return r
        if u.path == "/api/v3/exchangeInfo":  # the listing (lab record checks symbols against it)
            return resp(*enc.exchange_info())
        if u.path != "/api/v3/depth":
            return resp(404, json.dumps({"code": -1, "msg": f"unknown endpoint {u.path}"}))
        if self.rest_errors.get(enc.venue, 0) > 0:
            self.rest_errors[enc.venue] -= 1
            status = 429 if self._rng[enc.venue].random() < 0.5 else 503
            self._fault(enc.venue, "", "rest_error", f"HTTP {status} on {u.path}?{u.query}")
            if status == 429:
                r = resp(429, json.dumps({"code": -1003, "msg": "Too many requests; simulated rate limit."}))
                r.headers["Retry-After"] = "1"
                return r
            return resp(503, json.dumps({"code": -1001, "msg": "Service unavailable (simulated)."}))
        status, body = enc.depth(u.query, self.books)
        return resp(status, body)

    def _handler(self, enc: Encoder):
        async def handler(ws: ServerConnection) -> None:
            c = Client(ws, enc.venue, time.perf_counter())
            path = ws.request.path if ws.request else "/"
            enc.clients.add(c)
            self.truth.add("connections", {"ts": iso_us(self.now_ns()), "venue": enc.venue,
                                           "conn_id": c.conn_id, "event": "open", "detail": path})
            detail = "client closed"
            try:
                enc.on_open(c, path)
                life = self.cfg.lifetime_s / self.cfg.speed if enc.venue == "binance" else None
                async with asyncio.timeout(life):
                    async for msg in ws:
                        if isinstance(msg, bytes):
                            msg = msg.decode("utf-8", "replace")
                        before = set(c.subs)
                        enc.on_text(c, msg)
                        if c.subs != before:
                            at = position()
                            for k in c.subs - before:
                                c.since[k] = at
            except TimeoutError:
                detail = f"lifetime {self.cfg.lifetime_s:g} s reached"
                await ws.close(1000, "connection lifetime reached")
            except Exception as e:  # noqa: BLE001 - a connection error is the client's end
                detail = f"{type(e).__name__}: {e}"
            finally:
                if c.closed:
                    detail = c.meta.get("close_detail", detail)
                c.closed = True
                enc.clients.discard(c)
                on_close = getattr(enc, "on_close", None)
                if on_close:
                    on_close(c)
                self.truth.add("connections", {"ts": iso_us(self.now_ns()), "venue": enc.venue,
                                               "conn_id": c.conn_id, "event": "close", "detail": detail})
        return handler

    # -- the publishing loop ----------------------------------------------
    async def _run(self) -> None:
        import traceback

        while True:
            t0 = time.perf_counter()
            try:
                target = self._clock()
                cap = self._sim_t + int(MAX_TICK_WALL_S * self.cfg.speed * 1e9)
                if target > cap:  # falling behind: slow the clock instead of spiralling
                    self._wall0 += (target - cap) / (self.cfg.speed * 1e9)
                    target = cap
                self._tick(target)
                await self._deliver()
            except asyncio.CancelledError:
                raise
            except Exception:  # pragma: no cover - keep serving, keep the cause visible
                traceback.print_exc()
            dt = TICK_S - (time.perf_counter() - t0)
            await asyncio.sleep(dt if dt > 0 else 0)

    def _tick(self, now: int) -> None:
        m = self.market
        while m.t <= now:
            end = m.t + m.chunk_ns
            for li, (f, c) in enumerate(zip(self.feeds, m.step())):
                enc = self.encoders.get(c.listing.venue)
                prep = enc.prepare(li, c) if enc is not None and enc.vectorised else None
                f.chunks.append((c, end, prep, self._truth_trades(c)))
        every = self.cfg.truth_book_every
        for li, f in enumerate(self.feeds):
            enc = self.encoders.get(m.listings[li].venue)
            if enc is None:
                continue
            book = self.books[li]
            while f.chunks:
                c, end, prep, tt = f.chunks[0]
                eu = int(np.searchsorted(c.upd_t, now, side="right"))
                et = int(np.searchsorted(c.trade_t, now, side="right"))
                eq = int(np.searchsorted(c.quote_t, now, side="right"))
                if et > f.pt:
                    self.truth.add_many("trades", tt[f.pt:et])
                    self.history[li].add(c.trade_t[f.pt:et], c.trade_px[f.pt:et], c.trade_q[f.pt:et],
                                         c.trade_side[f.pt:et], c.trade_id[f.pt:et])
                if prep is not None:
                    self._publish_fast(li, enc, book, c, f.pu, eu, prep, now, every)
                else:
                    self._publish(li, enc, book, c, f.pu, eu, f.pt, et, f.pq, eq, every)
                f.pu, f.pt, f.pq = eu, et, eq
                if now < end or (prep is not None and prep.pos < len(prep.t)):
                    break
                f.chunks.popleft()
                f.pu = f.pt = f.pq = 0
        for enc in self.encoders.values():
            enc.on_clock(now)
        self._sim_t = now

    def _truth_trades(self, c) -> list[dict]:
        if c.trade_t.shape[0] == 0:
            return []
        l = c.listing
        df = pl.DataFrame({"t": c.trade_t, "px": c.trade_px, "q": c.trade_q, "side": c.trade_side,
                           "id": c.trade_id})
        return df.select(
            venue=pl.lit(l.venue), symbol=pl.lit(l.symbol), trade_id=pl.col("id").cast(pl.String),
            price=pl.col("px") / 10.0 ** l.price_dec, qty=pl.col("q") / 10.0 ** l.qty_dec,
            side=pl.when(pl.col("side") == 0).then(pl.lit("buy")).otherwise(pl.lit("sell")),
            ts_exchange=pl.from_epoch("t", "ns").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"),
        ).to_dicts()

    def _publish_fast(self, li: int, enc: Encoder, book: LiveBook, c, u0: int, u1: int, prep,
                      now: int, every: int) -> None:
        if u1 > u0:
            before = book.updates
            apply = book.apply
            for sd, px, q in zip(c.upd_side[u0:u1].tolist(), c.upd_px[u0:u1].tolist(),
                                 c.upd_q[u0:u1].tolist()):
                apply(sd, px, q)
            seqs = c.upd_seq[u0:u1]
            book.seq = int(seqs[-1])
            book.updates += int(np.count_nonzero(np.diff(seqs))) + 1
            if every and book.updates // every > before // every:
                self._truth_book(c.listing, book, int(c.upd_t[u1 - 1]))
        p1 = int(np.searchsorted(prep.t, now, side="right"))
        if p1 > prep.pos:
            enc.out.append(Batch(prep, prep.pos, p1))
            prep.pos = p1

    def _truth_book(self, l, book: LiveBook, t: int) -> None:
        scale, lot = 10.0 ** l.price_dec, 10.0 ** l.qty_dec
        self.truth.add("books", {
            "venue": l.venue, "symbol": l.symbol, "seq": book.seq, "ts_exchange": iso_us(t),
            "bids": [[p / scale, x / lot] for p, x in book.top(0, 25)],
            "asks": [[p / scale, x / lot] for p, x in book.top(1, 25)]})

    def _publish(self, li: int, enc: Encoder, book: LiveBook, c, u0: int, u1: int, t0: int, t1: int,
                 q0: int, q1: int, every: int) -> None:
        if u0 == u1 and t0 == t1 and q0 == q1:
            return
        ut = c.upd_t[u0:u1].tolist()
        us = c.upd_side[u0:u1].tolist()
        up = c.upd_px[u0:u1].tolist()
        uq = c.upd_q[u0:u1].tolist()
        useq = c.upd_seq[u0:u1].tolist()
        tt = c.trade_t[t0:t1].tolist()
        tp = c.trade_px[t0:t1].tolist()
        tq = c.trade_q[t0:t1].tolist()
        ts = c.trade_side[t0:t1].tolist()
        tid = c.trade_id[t0:t1].tolist()
        qt = c.quote_t[q0:q1].tolist()
        qv = [x[q0:q1].tolist() for x in (c.quote_bp, c.quote_bq, c.quote_ap, c.quote_aq, c.quote_seq)]
        l = c.listing
        i = j = k = 0
        nu, nt, nq = len(ut), len(tt), len(qt)
        big = 1 << 62
        on_book, on_trade, on_quote, on_clock = enc.on_book, enc.on_trade, enc.on_quote, enc.on_clock
        while i < nu or j < nt or k < nq:
            a = tt[j] if j < nt else big
            b = ut[i] if i < nu else big
            q = qt[k] if k < nq else big
            if a <= b and a <= q:
                on_clock(a)
                on_trade(li, a, tp[j], tq[j], ts[j], tid[j])
                j += 1
            elif b <= q:
                on_clock(b)
                seq = useq[i]
                changes = []
                while i < nu and useq[i] == seq:
                    book.apply(us[i], up[i], uq[i])
                    changes.append((us[i], up[i], uq[i]))
                    i += 1
                book.seq = seq
                book.updates += 1
                on_book(li, b, seq, changes, book)
                if every and book.updates % every == 0:
                    self._truth_book(l, book, b)
            else:
                on_clock(q)
                on_quote(li, q, qv[0][k], qv[1][k], qv[2][k], qv[3][k], qv[4][k])
                k += 1

    # -- faults -----------------------------------------------------------
    def _fault(self, venue: str, symbol: str, kind: str, detail: str) -> None:
        self.truth.add("faults", {"ts": iso_us(self.now_ns()), "venue": venue, "symbol": symbol,
                                  "kind": kind, "detail": detail})

    def _inject(self, enc: Encoder, out: list[Out], dt_min: float) -> list[Out]:
        fc = self.cfg.faults
        v = enc.venue
        rng = self._rng[v]
        pend = self._fault_pending[v]
        for kind in FAULT_KINDS:
            rate = getattr(fc, kind)
            if rate > 0 and rng.random() < rate * dt_min:
                pend.append(kind)
        if not pend:
            return out
        if any(isinstance(o, Batch) for o in out):  # faults work on single messages
            out = [x for o in out for x in (o.outs() if isinstance(o, Batch) else (o,))]
        wall = time.perf_counter()
        keep: list[str] = []
        silent = wall < self._silent_until[v]
        for kind in pend:
            if kind in ("gap", "duplicate", "out_of_order", "malformed", "bad_checksum"):
                if silent:  # nothing is sent while silent: a message fault waits until the venue speaks
                    keep.append(kind)
                    continue
                idx = [n for n, o in enumerate(out) if o.kind == "book" and any(enc.wants(c, o) for c in enc.clients)]
                if kind == "bad_checksum":
                    idx = [n for n in idx if enc.bad_checksum(out[n]) is not None]
                if not idx or (kind == "out_of_order" and len(idx) < 2):
                    keep.append(kind)
                    continue
                n = idx[0]
                o = out[n]
                if kind == "gap":
                    out[n] = o.ghost()
                    self._fault(v, o.symbol, kind, f"dropped a book message on {o.key}")
                elif kind == "duplicate":
                    out.insert(n + 1, o.copy())
                    self._fault(v, o.symbol, kind, f"sent a book message twice on {o.key}")
                elif kind == "out_of_order":
                    n2 = next((x for x in idx[1:] if out[x].key == o.key), None)
                    if n2 is None:
                        keep.append(kind)
                        continue
                    out[n], out[n2] = out[n2], out[n]
                    self._fault(v, o.symbol, kind, f"swapped two book messages on {o.key}")
                elif kind == "malformed":
                    full = o.text if o.text is not None else (o.parts[0] + "0" + o.parts[1])
                    bad = Out(o.key, full[: max(1, len(full) // 2)], "malformed", o.symbol, o.parts, o.pos)
                    out[n] = bad
                    self._fault(v, o.symbol, kind, f"sent truncated JSON instead of a book message on {o.key}")
                else:
                    out[n] = enc.bad_checksum(o)
                    self._fault(v, o.symbol, kind, f"checksum off by one on {o.key}")
            elif kind == "disconnect":
                if not enc.clients:
                    keep.append(kind)
                    continue
                for c in list(enc.clients):
                    c.closed = True
                    c.meta["close_detail"] = "fault: abrupt disconnect"
                    self._fault(v, "", kind, f"aborted connection {c.conn_id}")
                    with contextlib.suppress(Exception):
                        c.ws.transport.abort()
            elif kind == "slow":
                self._slow_until[v] = wall + fc.slow_s
                self._fault(v, "", kind, f"sends stalled for {fc.slow_s:g} s")
            elif kind == "silent":
                self._silent_until[v] = wall + fc.silent_s
                self._fault(v, "", kind, f"no messages for {fc.silent_s:g} s, sockets left open")
            elif kind == "rest_error":
                if v != "binance":
                    continue
                self.rest_errors[v] += 1
        pend[:] = keep
        return out

    async def _deliver(self) -> None:
        wall = time.perf_counter()
        dt_min = TICK_S * self.cfg.speed / 60.0
        waiters = []
        for v, enc in self.encoders.items():
            out = enc.out
            enc.out = []
            if self.cfg.faults.any():
                out = self._inject(enc, out, dt_min)
            if wall < self._silent_until[v]:
                # nothing reaches the clients, but the venue produced these messages: a
                # per-connection sequence (Coinbase sequence_num) moves on, so the client
                # sees the loss as a gap when the venue speaks again
                out = [o.ghost() for o in out if type(o) is Out]
            if wall < self._slow_until[v]:
                self._held[v].extend(out)
                out = []
            elif self._held[v]:
                out = self._held[v] + out
                self._held[v] = []
            for c in list(enc.clients):
                if c.closed:
                    continue
                frames = c.pending
                c.pending = []
                wants, render = enc.wants, enc.render
                var = enc.variant(c)
                nmsg = len(frames)
                subs = c.subs
                render_many = getattr(enc, "render_many", None)
                since = c.since
                if render_many is not None:  # numbered per connection (non-vectorised encoders)
                    got = render_many(c, [o for o in out if type(o) is not Batch and wants(c, o)
                                          and o.pos > since.get(o.key, 0)])
                    frames += got
                    nmsg += len(got)
                    out_c: list = []
                else:
                    out_c = out
                for o in out_c:
                    if type(o) is Batch:
                        p = o.prep
                        if p.keyset <= subs:
                            off = p.off(var)
                            frames.append(p.blob(var)[off[o.p0]:off[o.p1]])
                            nmsg += o.p1 - o.p0
                        else:
                            idx, blob, off = p.subset(frozenset(subs & p.keyset), var)
                            a = int(np.searchsorted(idx, o.p0))
                            b = int(np.searchsorted(idx, o.p1))
                            if b > a:
                                frames.append(blob[off[a]:off[b]])
                                nmsg += b - a
                        continue
                    if wants(c, o) and o.pos > since.get(o.key, 0):
                        if o.kind == "ghost":
                            skip = getattr(enc, "skip", None)
                            if skip:
                                skip(c, o)
                            continue
                        frames.append(render(c, o))
                        nmsg += 1
                if not frames:
                    continue
                tr = c.ws.transport
                if tr is None or tr.is_closing() or c.ws.state is not State.OPEN:
                    continue
                data = b"".join(frames)
                try:
                    tr.write(data)
                except (RuntimeError, OSError):  # closing under our feet
                    c.closed = True
                    continue
                self.stats["messages"] += nmsg
                self.stats["bytes"] += len(data)
                if tr.get_write_buffer_size() > HIGH_WATER:
                    waiters.append(c)
        # back-pressure: let a slow consumer drain (the clock catches up afterwards)
        for c in waiters:
            deadline = time.perf_counter() + 30
            tr = c.ws.transport
            while not tr.is_closing() and tr.get_write_buffer_size() > LOW_WATER:
                if time.perf_counter() > deadline:
                    c.closed = True
                    c.meta["close_detail"] = "slow consumer: write buffer full for 30 s"
                    tr.abort()
                    break
                await asyncio.sleep(0.001)
