"""Long backtests in pieces: one engine fed a day at a time, in bounded memory, with the fills of one run.

A 30-day L2 backtest does not fit in memory as one :class:`~lab.backtest.Events`
(hftbacktest users report 180 GB), and its outputs grow with the strategy's
activity (a 1 s requoting market maker logs ~400 k order events a day).
:class:`PieceRunner` keeps one :class:`~lab.backtest.Engine` — books, resting
orders, orders and acks in flight, positions, timers — and feeds it one piece
of events at a time (a UTC day: :func:`lab.distributed.backtest_days`), while
the engine hands its fill log, order-event log and equity samples to a
:class:`ParquetSink` whenever they fill up or a piece needs room, so only one
piece of events and one buffer of outputs are in memory at a time.

**Same result as one run.** A piece holds the rows whose exchange time falls
in ``[previous boundary, boundary)``. It is fed up to ``boundary - 1 µs`` (or
its last time, if earlier): everything due before the boundary on either
timeline — exchange rows, requests reaching the exchange, acks and fills
reaching us, timers, equity samples — happens then, in the same order as in
one run, because everything due after it waits. The rows of the piece whose
receive time is past the boundary (``ts_local >= boundary``: received after
midnight, sent before it) have been replayed at the exchange but not yet
locally; they are carried into the next piece, whose feed skips their exchange
side, so they interleave with the next day's rows exactly as one run orders
them. A request or ack in flight at midnight is simply engine state and
arrives when due. The result therefore equals :func:`~lab.backtest.run_backtest`
over the whole span (tested, with an order in flight across the boundary).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lab.backtest import core
from lab.backtest.data import Events
from lab.backtest.engine import BacktestConfig, Engine, Result

__all__ = ["ParquetSink", "PieceRunner", "infer_ticks"]


def infer_ticks(*frames: pl.LazyFrame, max_decimals: int = 10) -> dict[tuple[str, str], float]:
    """:func:`lab.backtest.infer_tick` of each (venue, symbol) over all rows of ``frames``, in one
    streaming pass over their ``price`` columns (a month of L2 never in memory at once).

    A run fed day by day must use one tick per instrument for every day — the
    one a single run over the whole span infers — or a price seen only on a
    later day would be rounded to a coarser tick.

    >>> lf = pl.LazyFrame({"venue": ["x", "x", "y"], "symbol": "s", "price": [100.0, 100.25, 7.0]})
    >>> infer_ticks(lf)
    {('x', 's'): 0.01, ('y', 's'): 1.0}
    """
    p = pl.col("price").abs()
    need = pl.lit(max_decimals)
    for d in range(max_decimals, -1, -1):  # the fewest decimals that hold the price (infer_tick's rule)
        x = p * 10.0**d
        ok = (x - x.round()).abs() <= 1e-6 * pl.max_horizontal(pl.lit(1.0), x) * 1e-3 + 1e-7
        need = pl.when(ok).then(pl.lit(d)).otherwise(need)
    parts = [f.select("venue", "symbol", "price").filter(pl.col("price").is_finite()) for f in frames]
    got = (pl.concat(parts).group_by("venue", "symbol").agg(need.max().alias("d"))
           .sort("venue", "symbol").collect(engine="streaming"))
    return {(v, s): float(10.0**-d) for v, s, d in got.iter_rows()}


class ParquetSink:
    """Writes each batch of engine outputs as numbered Parquet parts under ``root/<name>/``.

    Called with :meth:`lab.backtest.Engine.drain`'s frames; empty frames write
    nothing. Parts are read back in the order written.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.parts = 0
        self.rows: dict[str, int] = {}

    def __call__(self, frames: dict[str, pl.DataFrame]) -> None:
        for name, df in frames.items():
            if df.height == 0:
                continue
            d = self.root / name
            d.mkdir(exist_ok=True)
            df.write_parquet(d / f"part-{self.parts:06d}.parquet", compression="zstd", statistics=False)
            self.rows[name] = self.rows.get(name, 0) + df.height
        self.parts += 1

    def glob(self, name: str) -> str | None:
        """The Parquet glob of output ``name`` (None if no row of it was written)."""
        return str(self.root / name / "part-*.parquet") if self.rows.get(name) else None

    def read(self, name: str, empty: pl.DataFrame) -> pl.DataFrame:
        """Output ``name`` in full (``empty``, which carries the schema, if nothing was written)."""
        g = self.glob(name)
        return pl.read_parquet(g, schema=empty.schema).rechunk() if g else empty


def _take(ev: Events, idx: np.ndarray) -> Events:
    ts_l = ev.ts_l[idx]
    return Events(ev.instruments, ev.ts_x[idx], ts_l, ev.kind[idx], ev.inst[idx], ev.side[idx], ev.px[idx],
                  ev.qty[idx], np.argsort(ts_l, kind="stable").astype(np.int64))


def _join(head: Events, ev: Events) -> Events:
    """``head``'s rows then ``ev``'s, with the local order of one array holding both."""
    cat = {f: np.concatenate([getattr(head, f), getattr(ev, f)])
           for f in ("ts_x", "ts_l", "kind", "inst", "side", "px", "qty")}
    return Events(ev.instruments, lorder=np.argsort(cat["ts_l"], kind="stable").astype(np.int64), **cat)


class PieceRunner:
    """Runs ``strategy`` over consecutive pieces of events with one engine (see the module doc).

    ``out``: where the outputs are streamed (default: a temporary directory,
    removed by :meth:`result` unless the order log stays there). ``keep_orders``:
    load the order-event log into :attr:`Result.orders` at the end; otherwise it
    stays on disk (:attr:`Result.orders_file`, :meth:`Result.scan_orders`) and
    ``orders`` is empty, since that log is the output that grows fastest.
    """

    def __init__(self, strategy: Any, config: BacktestConfig | None = None, *, out: str | Path | None = None,
                 keep_orders: bool = False, max_log: int = 262_144, max_fills: int = 65_536) -> None:
        self.strategy = strategy
        self.config = config or BacktestConfig()
        self._tmp = out is None
        self.sink = ParquetSink(Path(tempfile.mkdtemp(prefix="lab-backtest-")) if out is None else out)
        self.keep_orders = keep_orders
        self.engine_kw = {"max_log": max_log, "max_fills": max_fills}
        self.eng: Engine | None = None
        self.tail: Events | None = None  # rows replayed at the exchange, still due locally
        self.boundary = -int(core.INF)
        self.last_end = 0

    @property
    def instruments(self) -> list | None:
        """The instrument list of the run (fixed by its first piece), for the next pieces' events."""
        return None if self.eng is None else self.eng.instruments

    def feed(self, ev: Events, boundary: int) -> int:
        """Feed the rows with exchange time in ``[previous boundary, boundary)`` (µs); returns
        how many new rows that was. Everything due before ``boundary`` is processed."""
        if len(ev) and (int(ev.ts_x[0]) < self.boundary or int(ev.ts_x[-1]) >= boundary):
            raise ValueError(f"PieceRunner.feed: rows outside [{self.boundary}, {boundary}) µs "
                             "(pieces must be consecutive spans of exchange time)")
        self.boundary = boundary
        if len(ev) == 0:
            return 0  # nothing new: the carried rows and pending items wait for the next piece
        if self.eng is None:
            self.eng = Engine(ev.instruments, self.config, start_us=ev.start, end_us=ev.end, sink=self.sink,
                              **self.engine_kw)
            self.eng.start(self.strategy)
        skip = 0 if self.tail is None else len(self.tail)
        run = ev if self.tail is None else _join(self.tail, ev)
        self.last_end = max(self.last_end, run.end)
        self._feed(run, min(boundary - 1, run.end), skip)
        return len(ev)

    def _feed(self, run: Events, t_stop: int, skip: int) -> None:
        eng = self.eng
        assert eng is not None
        eng.feed(run, t_stop, skip_exchange=skip)
        ctr = eng.arr.ctr
        if int(ctr[core.C_IEX]) != len(run):  # every row of a piece is due at the exchange by its end
            raise RuntimeError(f"PieceRunner: {len(run) - int(ctr[core.C_IEX])} rows not replayed at the exchange "
                               f"by {t_stop} µs")
        il = int(ctr[core.C_ILO])
        self.tail = _take(run, np.sort(run.lorder[il:])) if il < len(run) else None

    def result(self) -> Result:
        """Finish the run (the rows still due locally, a last equity sample at the last event's
        time, as :func:`~lab.backtest.run_backtest` does) and assemble its :class:`Result`."""
        eng = self.eng
        if eng is None:
            raise ValueError("PieceRunner.result: no events were fed")
        if self.tail is not None:
            self._feed(self.tail, self.last_end, len(self.tail))
        eng.finish(self.last_end)
        self.sink(eng.drain())
        empty = eng.drain()  # zero rows, the schemas
        fills = self.sink.read("fills", empty["fills"])
        eq = self.sink.read("equity", empty["equity"])
        nv, ni = len(eng.venues), len(eng.instruments)
        veq = eq.select([f"v{k}" for k in range(nv)]).to_numpy().reshape(eq.height, nv)
        pos = eq.select([f"p{k}" for k in range(ni)]).to_numpy().reshape(eq.height, ni)
        equity, venue_equity, positions = eng.equity_frames(eq["ts"].to_numpy(), veq, pos)
        orders_file = None
        if self.keep_orders:
            orders = self.sink.read("orders", empty["orders"])
        else:
            orders, orders_file = empty["orders"], self.sink.glob("orders")
        if self._tmp and orders_file is None:
            shutil.rmtree(self.sink.root, ignore_errors=True)
        name = getattr(self.strategy, "name", type(self.strategy).__name__)
        return Result(name, fills, orders, equity, venue_equity, positions, eng.events, eng.elapsed,
                      eng.eq_iv / 1e6, int(eng.arr.ctr[core.C_OVERFLOW]), orders_file)
