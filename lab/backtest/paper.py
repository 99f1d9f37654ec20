"""Paper trading: the backtest engine fed by the live data bus.

:class:`PaperRunner` keeps one :class:`~lab.backtest.engine.Engine` (same
matching, queue, latency and fee models as the backtest) and feeds it the
``book_updates`` and ``trades`` rows the recorders publish on the bus
(``lab.bus.subscribe``), in batches. After each batch it appends the new
order events, fills and positions to ``paper_orders``, ``paper_fills`` and
``paper_positions`` (one ``session`` id per run), so dashboards, the risk
monitor and :func:`lab.backtest.compare.compare_session` can read them.

Time is data time: the engine's clock is the rows' ``ts_local`` (when the
recorder received them), so a paper session and a backtest over the rows
recorded in that session see the same clock. The one thing a live runner
cannot do is wait for late rows: rows from a slower venue that reach us
after we processed a batch are applied in arrival order, while a backtest
sorts all rows by exchange time. That, and the batch boundaries, are the
expected differences between the two (see ``compare``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, cast

import polars as pl

from lab.backtest import core
from lab.backtest.data import Instrument, build_events, infer_tick
from lab.backtest.engine import BacktestConfig, Engine
from lab.backtest.strategy import FastStrategy, Strategy
from lab.schema import TS

__all__ = ["PaperRunner", "rows_frame", "positions_from_fills", "seed_rows", "warm_up"]

log = logging.getLogger("lab.paper")

_BOOK_COLS: dict[str, pl.DataType | type[pl.DataType]] = {"ts_exchange": TS, "ts_local": TS, "venue": pl.String, "symbol": pl.String, "side": pl.String,
              "price": pl.Float64, "qty": pl.Float64, "is_snapshot": pl.Boolean, "seq": pl.Int64}
_TRADE_COLS: dict[str, pl.DataType | type[pl.DataType]] = {"ts_exchange": TS, "ts_local": TS, "venue": pl.String, "symbol": pl.String,
               "trade_id": pl.String, "price": pl.Float64, "qty": pl.Float64, "side": pl.String}


def rows_frame(rows: list[dict], table: str) -> pl.DataFrame:
    """Bus rows (timestamps as int µs) as a canonical DataFrame of ``table``."""
    cols = _BOOK_COLS if table == "book_updates" else _TRADE_COLS
    data = {c: [r.get(c) for r in rows] for c in cols}
    df = pl.DataFrame(data, schema={c: (pl.Int64 if d == TS else d) for c, d in cols.items()}, strict=False)
    return df.with_columns(pl.from_epoch(c, "us").dt.replace_time_zone("UTC") for c in ("ts_exchange", "ts_local"))


def positions_from_fills(fills: pl.DataFrame) -> pl.DataFrame:
    """Average-cost position per venue and base asset after each fill.

    Needs ``ts_exchange|ts, venue, symbol, side, price, qty, fee``; returns
    ``ts, venue, asset, qty, avg_price, realized_pnl, fees`` (quote units).
    A small loop over fills (not market rows): positions are path dependent.
    """
    out: list[tuple] = []
    state: dict[tuple[str, str], list[float]] = {}
    tcol = "ts" if "ts" in fills.columns else "ts_exchange"
    for ts, venue, symbol, side, px, q, fee in fills.select(tcol, "venue", "symbol", "side", "price", "qty",
                                                            "fee").iter_rows():
        asset = symbol.split("-")[0]
        s = state.setdefault((venue, asset), [0.0, 0.0, 0.0, 0.0])  # qty, avg, realized, fees
        d = q if side == "buy" else -q
        pos, avg = s[0], s[1]
        if pos == 0 or (pos > 0) == (d > 0):
            s[1] = (avg * abs(pos) + px * abs(d)) / (abs(pos) + abs(d))
            s[0] = pos + d
        else:
            closed = min(abs(d), abs(pos))
            s[2] += closed * (px - avg) * (1 if pos > 0 else -1)
            s[0] = pos + d
            if abs(d) > abs(pos):
                s[1] = px
            elif abs(s[0]) < 1e-12:
                s[0], s[1] = 0.0, 0.0
        s[3] += fee
        out.append((ts, venue, asset, s[0], s[1], s[2] - s[3], s[3]))
    return pl.DataFrame(out, schema={"ts": TS, "venue": pl.String, "asset": pl.String, "qty": pl.Float64,
                                     "avg_price": pl.Float64, "realized_pnl": pl.Float64, "fees": pl.Float64},
                        orient="row")


def seed_rows(lake, keys: Sequence[tuple[str, str]], before: dt.datetime, max_age_s: float = 10.0) -> pl.DataFrame:
    """The latest ``book_snapshots`` sample per instrument at or before ``before``, as snapshot book rows."""
    out = []
    for v, s in keys:
        snap = (lake.scan("book_snapshots", venue=v, symbol=s, start=before - dt.timedelta(seconds=max_age_s),
                          end=before + dt.timedelta(microseconds=1))
                .filter(pl.col("ts_exchange") == pl.col("ts_exchange").max()).collect())
        if snap.height:
            out.append(snap)
    if not out:
        return pl.DataFrame(schema=_BOOK_COLS)
    snaps = pl.concat(out)
    return snaps.sort("venue", "symbol", "side", "level").select(
        "ts_exchange", "ts_local", "venue", "symbol", "side", "price", "qty",
        pl.lit(True).alias("is_snapshot"), pl.lit(None, pl.Int64).alias("seq"))


def warm_up() -> None:
    """Load the compiled engine from numba's disk cache (seconds, once per process)."""
    import datetime as _dt

    t = _dt.datetime(2026, 1, 1, tzinfo=_dt.timezone.utc)
    book = pl.DataFrame({"ts_exchange": [t, t], "ts_local": [t, t], "venue": ["w", "w"], "symbol": ["A-USD"] * 2,
                         "side": ["bid", "ask"], "price": [1.0, 2.0], "qty": [1.0, 1.0],
                         "is_snapshot": [True, True], "seq": [0, 0]},
                        schema_overrides={"ts_exchange": TS, "ts_local": TS})

    class _Once(Strategy):
        callbacks = frozenset({"book", "fill", "order"})

        def on_book(self, ctx, venue, symbol):
            if not ctx.open_orders(venue, symbol):
                ctx.buy(venue, symbol, 1.0, 1.0, tif="post_only")
                ctx.cancel_all()

    from lab.backtest.engine import run_backtest

    run_backtest(_Once(), build_events(book, None))


class PaperRunner:
    """Run ``strategy`` on live rows with the backtest's models; write to the lake.

    ``instruments``: ``[(venue, symbol), ...]`` the strategy trades or reads;
    rows of other instruments are ignored. Ticks are inferred from the first
    rows of each instrument unless given in ``ticks``. A runner joins the
    stream mid-way, so with ``seed`` (and a lake) each book starts from the
    latest ``book_snapshots`` sample (top-N levels, at most 10 s old) taken
    before the first row received; the diffs between that sample and the
    subscription are not seen (documented difference to a backtest from the
    start of the recording; :func:`compare_session` replays the same seed).
    """

    def __init__(self, strategy: Strategy | FastStrategy, instruments: Sequence[tuple[str, str]],
                 config: BacktestConfig | None = None, *, lake=None, session: str | None = None,
                 ticks: dict[tuple[str, str], float] | None = None, max_duration_s: float = 86_400.0,
                 params: dict[str, Any] | None = None, seed: bool = True) -> None:
        self.strategy = strategy
        self.keys: list[tuple[str, str]] = [(v, s) for v, s in instruments]
        self.config = config or BacktestConfig()
        self.lake = lake
        self.session = session or dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:6]
        self.ticks = dict(ticks or {})
        self.max_duration_s = max_duration_s
        self.params = params if params is not None else dict(getattr(strategy, "params", {}) or {})
        self.engine: Engine | None = None
        self._book: list[dict] = []
        self._trades: list[dict] = []
        self._written = {"orders": 0, "fills": 0}
        self.batches = 0
        self.rows_in = 0
        self.name = getattr(strategy, "name", type(strategy).__name__)
        self.seed = seed
        self._seed: pl.DataFrame | None = None
        self.seed_ts: dict[str, int] = {}
        self.t_first_local = 0
        self.bad_batches = 0  # frames/batches skipped because the engine could not take them
        self._last_bad = 0.0

    # -- input ------------------------------------------------------------------
    def add(self, table: str, rows: list[dict]) -> None:
        """Buffer rows from the bus (other tables and instruments are ignored)."""
        keys = set(self.keys)
        sel = [r for r in rows if (r.get("venue"), r.get("symbol")) in keys]
        if table == "book_updates":
            self._book.extend(sel)
        elif table == "trades":
            self._trades.extend(sel)
        self.rows_in += len(sel)

    def _start_engine(self, book: pl.DataFrame, trades: pl.DataFrame) -> bool:
        both = pl.concat([book.select("venue", "symbol", "price", "ts_exchange", "ts_local"),
                          trades.select("venue", "symbol", "price", "ts_exchange", "ts_local")])
        insts = []
        for v, s in self.keys:
            tk = self.ticks.get((v, s))
            if tk is None:
                p = both.filter((pl.col("venue") == v) & (pl.col("symbol") == s))["price"]
                if p.len() == 0:
                    return False  # wait until every instrument has shown up
                if self.lake is not None:  # more prices, fewer chances to infer too coarse a tick
                    t = cast(dt.datetime, both["ts_exchange"].min())  # a Datetime column's min
                    recent = self.lake.scan("book_updates", venue=v, symbol=s, start=t - dt.timedelta(minutes=5),
                                            end=t).select("price").collect()["price"]
                    p = pl.concat([p, recent])
                tk = infer_tick(p.to_numpy())
            insts.append(Instrument(v, s, tk))
        first = both.select(pl.col("ts_exchange").min(), pl.col("ts_local").min()).row(0)
        self.t_first_local = int(first[1].timestamp() * 1e6)
        self._seed = seed_rows(self.lake, self.keys, first[0]) if (self.lake is not None and self.seed) else None
        if self._seed is not None:
            self.seed_ts = {f"{v}:{s}": int(t.timestamp() * 1e6) for v, s, t in
                            self._seed.group_by("venue", "symbol").agg(pl.col("ts_exchange").first()).iter_rows()}
        t0 = int(both.select(pl.col("ts_exchange").dt.epoch("us").min()).item())
        if self._seed is not None and self._seed.height:
            t0 = min(t0, int(self._seed.select(pl.col("ts_exchange").dt.epoch("us").min()).item()))
        self.engine = Engine(insts, self.config, start_us=t0, end_us=t0 + int(self.max_duration_s * 1e6))
        self.engine.start(self.strategy)
        self._write_session_row(t0)
        return True

    def _running(self) -> Engine:
        """The engine, once the first rows of every instrument have started it."""
        if self.engine is None:
            raise RuntimeError("paper session not started: no rows yet for all of its instruments "
                               f"{[f'{v}:{s}' for v, s in self.keys]}")
        return self.engine

    def step(self) -> int:
        """Feed the buffered rows to the engine and write new results; returns rows fed."""
        return self._process(*self._take())

    def _take(self) -> tuple[list[dict], list[dict]]:
        book, trades = self._book, self._trades
        self._book, self._trades = [], []
        return book, trades

    def _process(self, book_rows: list[dict], trade_rows: list[dict]) -> int:
        if not book_rows and not trade_rows:
            return 0
        book = rows_frame(book_rows, "book_updates")
        trades = rows_frame(trade_rows, "trades")
        if self.engine is None and not self._start_engine(book, trades):
            self._book[:0], self._trades[:0] = book_rows, trade_rows  # keep them until all instruments showed
            return 0
        if self._seed is not None:  # the first batch starts from the lake's latest book snapshot
            book = pl.concat([self._seed, book])
            self._seed = None
        engine = self._running()
        ev = build_events(book if book.height else None, trades if trades.height else None,
                          instruments=engine.instruments)
        t_stop = int(ev.ts_l.max())
        engine.feed(ev, t_stop)
        self.batches += 1
        self._flush()
        return len(ev)

    # -- output -----------------------------------------------------------------
    def _tag(self, df: pl.DataFrame) -> pl.DataFrame:
        return df.with_columns(pl.lit(self.session).alias("session"), pl.lit(self.name).alias("strategy"))

    def _write_session_row(self, t: int, status: str = "session_start") -> None:
        """A marker row in ``paper_orders``: start (with params/config as JSON) or end."""
        if self.lake is None:
            return
        detail = json.dumps({"params": self.params, "instruments": [list(k) for k in self.keys],
                             "config": json.loads(_config_json(self.config)), "t_us": t,
                             "first_local_us": self.t_first_local, "seed": self.seed_ts,
                             "ticks": {f"{i.venue}:{i.symbol}": i.tick for i in self._running().instruments}})
        row = pl.DataFrame({"ts": [dt.datetime.fromtimestamp(t / 1e6, dt.timezone.utc)], "order_id": [""],
                            "venue": [""], "symbol": [""], "side": [""], "type": [""], "tif": [""],
                            "price": [None], "qty": [None], "status": [status], "detail": [detail]},
                           schema_overrides={"price": pl.Float64, "qty": pl.Float64, "ts": TS})
        self.lake.append("paper_orders", self._tag(row))

    def orders(self, start: int = 0) -> pl.DataFrame:
        o = self._running().orders_frame(start)
        return self._tag(o.select("ts", pl.col("order_id").cast(pl.String), "venue", "symbol", "side", "type",
                                  "tif", "price", "qty", pl.col("event").alias("status"),
                                  pl.lit("").alias("detail")))

    def fills(self, start: int = 0) -> pl.DataFrame:
        f = self._running().fills_frame(start)
        return self._tag(f.select(pl.col("ts_exchange").alias("ts"), pl.col("order_id").cast(pl.String),
                                  "venue", "symbol", "side", "price", "qty", "fee", "liquidity"))

    def _flush(self) -> None:
        if self.lake is None or self.engine is None:
            return
        a = self.engine.arr
        n_log, n_fill = int(a.ctr[core.C_NLOG]), int(a.ctr[core.C_NFILL])
        if n_log > self._written["orders"]:
            self.lake.append("paper_orders", self.orders(self._written["orders"]))
            self._written["orders"] = n_log
        if n_fill > self._written["fills"]:
            new = self.engine.fills_frame(self._written["fills"])
            allf = self.engine.fills_frame(0)
            pos = positions_from_fills(allf).tail(new.height)
            self.lake.append("paper_fills", self.fills(self._written["fills"]))
            self.lake.append("paper_positions", self._tag(pos))
            self._written["fills"] = n_fill

    def finish(self):
        """Process what is buffered; return the engine's :class:`Result`."""
        self.step()
        if self.engine is None:
            raise RuntimeError("paper session saw no rows for its instruments "
                               f"{[f'{v}:{s}' for v, s in self.keys]}")
        t = int(self.engine.arr.ctr[core.C_NOW])
        self.engine.finish(t)
        self._write_session_row(t, "session_end")
        return self.engine.result()

    # -- live loop ------------------------------------------------------------------
    async def run(self, url: str, *, duration_s: float | None = None, flush_s: float = 1.0,
                  max_rows: int = 20_000, tables: Iterable[str] = ("book_updates", "trades"),
                  progress: bool = False, stop_after_rows: int | None = None,
                  stop: asyncio.Event | None = None, token: str | None = None,
                  tls_root_certs: str | None = None) -> None:
        """Subscribe at ``url`` and trade until ``duration_s`` wall seconds pass (or forever,
        or until ``stop_after_rows`` rows of its instruments have arrived, or ``stop`` is set).

        ``url`` is the bus (``ws://``) or a data service (``grpc[+tls]://``, with its
        ``token`` and ``tls_root_certs``): see :func:`lab.bus.subscribe`.

        Never dies of data: a frame or batch the engine cannot take is skipped,
        counted in :attr:`bad_batches` and logged. Call :meth:`finish`
        afterwards to process the last rows and close the session.
        """
        from lab.bus import subscribe

        t_end = None if duration_s is None else time.monotonic() + duration_s
        last = time.monotonic()
        q: asyncio.Queue = asyncio.Queue()
        stop = stop if stop is not None else asyncio.Event()

        async def pump() -> None:  # a separate task: a timeout must not cancel the subscription
            async for item in subscribe(list(tables), url=url, token=token, tls_root_certs=tls_root_certs):
                await q.put(item)

        await asyncio.to_thread(warm_up)
        task = asyncio.create_task(pump())
        stopper = asyncio.create_task(stop.wait())
        try:
            while (t_end is None or time.monotonic() < t_end) and not stop.is_set():
                timeout = flush_s if t_end is None else max(0.01, min(flush_s, t_end - time.monotonic()))
                get = asyncio.ensure_future(q.get())
                await asyncio.wait({get, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if get.done():
                    table, rows = get.result()
                    try:
                        self.add(table, rows)
                    except Exception as e:  # noqa: BLE001 - one bad frame must not end the session
                        self._bad(f"a {table} frame", e)
                else:
                    get.cancel()
                    if task.done() and (exc := task.exception()) is not None:
                        raise exc from None
                if (time.monotonic() - last >= flush_s or len(self._book) + len(self._trades) >= max_rows):
                    # in a worker thread (the compiled loop releases the GIL): the socket stays served
                    try:
                        await asyncio.to_thread(self._process, *self._take())
                    except Exception as e:  # noqa: BLE001
                        self._bad("a batch", e)
                    last = time.monotonic()
                    if progress and self.engine is not None:
                        a = self.engine.arr
                        print(f"[paper {self.session}] rows {self.rows_in:,} fills {int(a.ctr[core.C_NFILL])} "
                              f"orders {int(a.ctr[core.C_NEXT_ID]) - 1}", flush=True)
                if stop_after_rows is not None and self.rows_in >= stop_after_rows:
                    break
        finally:
            for t in (task, stopper):
                t.cancel()
                try:
                    await t
                except (asyncio.CancelledError, Exception):  # noqa: BLE001
                    pass

    def _bad(self, what: str, e: Exception) -> None:
        """Count and log (at most every 10 s) input the engine could not take."""
        self.bad_batches += 1
        now = time.monotonic()
        if now - self._last_bad >= 10.0:
            self._last_bad = now
            log.warning("paper %s: skipped %s the engine could not take (%s: %s); %d so far",
                        self.session, what, type(e).__name__, str(e)[:200], self.bad_batches)


def _config_json(cfg: BacktestConfig) -> str:
    import msgspec

    return msgspec.json.encode(cfg).decode()
