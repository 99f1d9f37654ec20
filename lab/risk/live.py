"""The live risk monitor: marks from the bus, a snapshot every second, limit alerts.

:class:`RiskMonitor` keeps the latest quote per venue/symbol (fed row by row
from the live bus), and on each :meth:`RiskMonitor.tick` computes
:func:`lab.risk.snapshot` from the current positions, marks and return
history, raises limit breaches once through the alert sinks (and once when
they clear), and returns the ``risk_snapshots`` rows. :func:`run_monitor`
wires it to the bus, the lake and a one-second clock (``lab risk``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Callable

import polars as pl

from lab.alerts import Latch, Sink
from lab.risk.core import RiskConfig, snapshot
from lab.schema import TS
from lab.times import epoch_us

__all__ = ["RiskMonitor", "run_monitor"]

log = logging.getLogger("lab.risk")


_us = epoch_us


class RiskMonitor:
    """Live state of the risk monitor (one task feeds it; not thread-safe).

    >>> from lab.risk.core import Position, positions_frame, Limits
    >>> cfg = RiskConfig(capital=1000.0, limits=Limits(asset_notional={"BTC": 150.0}), alerts=[])
    >>> mon = RiskMonitor(cfg, lambda: positions_frame([Position("a", "BTC", 1.0, 100.0)]), sinks=[])
    >>> now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    >>> mon.on_quote({"ts_local": now, "venue": "a", "symbol": "BTC-USD", "bid_px": 159.0, "ask_px": 161.0})
    >>> rows = mon.tick(now)
    >>> [a.kind for a in mon.fired], mon.value("portfolio", "total", "unrealized_pnl")
    (['breach'], 60.0)
    """

    def __init__(self, cfg: RiskConfig, positions: Callable[[], pl.DataFrame], *,
                 sinks: list[Sink], returns: pl.DataFrame | None = None,
                 day_start_pnl: float | None = None) -> None:
        self.cfg = cfg
        self.load_positions = positions
        self.positions = positions()
        self.returns = returns if returns is not None else pl.DataFrame({"ts": []}, schema={"ts": TS})
        self.quotes: dict[tuple[str, str], tuple[int, float, float]] = {}
        self.bad_rows = 0  # quote rows run_monitor skipped because on_quote failed
        self.bad_ticks = 0  # snapshots that failed (logged)
        self.latch = Latch(sinks, source="risk")
        self.fired: list = []
        self.day_start_pnl = day_start_pnl
        self.day: dt.date | None = None
        self.equity: list[float] = []
        self.last_rows: pl.DataFrame | None = None
        self.marked: pl.DataFrame | None = None

    def on_quote(self, r: dict) -> None:
        """Remember the latest quote of ``r``'s venue/symbol (receive time)."""
        self.quotes[(r["venue"], r["symbol"])] = (_us(r["ts_local"]), r["bid_px"], r["ask_px"])

    def refresh_positions(self) -> None:
        self.positions = self.load_positions()

    def marks_frame(self, now: dt.datetime) -> pl.DataFrame:
        now_us = _us(now)
        if not self.quotes:
            return pl.DataFrame(schema={"venue": pl.String, "symbol": pl.String, "ts": TS,
                                        "bid_px": pl.Float64, "ask_px": pl.Float64,
                                        "mid": pl.Float64, "age_s": pl.Float64,
                                        "stale": pl.Boolean})
        keys = list(self.quotes)
        vals = [self.quotes[k] for k in keys]
        df = pl.DataFrame({"venue": [k[0] for k in keys], "symbol": [k[1] for k in keys],
                           "ts": [v[0] for v in vals], "bid_px": [v[1] for v in vals],
                           "ask_px": [v[2] for v in vals]},
                          schema={"venue": pl.String, "symbol": pl.String, "ts": pl.Int64,
                                  "bid_px": pl.Float64, "ask_px": pl.Float64})
        return df.with_columns(
            pl.col("ts").cast(TS), ((pl.col("bid_px") + pl.col("ask_px")) / 2).alias("mid"),
            ((now_us - pl.col("ts")) / 1e6).alias("age_s")).with_columns(
            (pl.col("age_s") > self.cfg.stale_after_s).alias("stale"))

    def tick(self, now: dt.datetime) -> pl.DataFrame:
        """Compute one snapshot at ``now``; fire/clear limit alerts; return the rows."""
        marks_ = self.marks_frame(now)
        day = now.date()
        if self.day != day:
            if self.day is not None:  # a new UTC day: its PnL starts from here
                self.day_start_pnl = None
            self.day = day
        rows, checks, marked = snapshot(self.positions, marks_, self.returns, self.cfg, now=now,
                                        day_start_pnl=self.day_start_pnl,
                                        equity_curve=self.equity[-86_400:])
        total = float(marked["total_pnl"].sum() or 0.0)
        if self.day_start_pnl is None:
            self.day_start_pnl = total
        self.equity.append(self.cfg.capital + total)
        for key, breached, msg, value, limit in checks:
            a = self.latch.update(f"limit:{key}", breached, kind="breach", message=msg,
                                  payload={"value": value, "limit": limit}, ts=now)
            if a is not None:
                self.fired.append(a)
        self.last_rows, self.marked = rows, marked
        return rows

    def value(self, scope: str, key: str, metric: str) -> float | None:
        """A figure of the last snapshot (``None`` if absent)."""
        if self.last_rows is None:
            return None
        v = self.last_rows.filter(scope=scope, key=key, metric=metric)["value"]
        return v.item() if v.len() else None


async def run_monitor(
    mon: RiskMonitor,
    source: AsyncIterator[tuple[str, list[dict]]] | None,
    *,
    write: Callable[[pl.DataFrame], None] | None = None,
    every_s: float = 1.0,
    duration: float | None = None,
    positions_every_s: float = 5.0,
    returns_loader: Callable[[], pl.DataFrame] | None = None,
    returns_every_s: float = 60.0,
    on_tick: Callable[[pl.DataFrame, float], None] | None = None,
    stop: asyncio.Event | None = None,
) -> RiskMonitor:
    """Feed ``mon`` from ``source`` and tick it every ``every_s`` seconds (wall clock).

    Never dies of data: a quote row the monitor cannot use is skipped, counted
    in ``mon.bad_rows`` and logged at most every 10 s. Returns after
    ``duration`` seconds or as soon as ``stop`` is set, once the snapshots
    being written are in; if ``source`` itself fails (e.g. a bad bus URL) the
    monitor stops and raises that error rather than run on stale marks.
    """
    stop = stop if stop is not None else asyncio.Event()
    last_bad = [0.0]

    async def consume() -> None:
        if source is None:
            return
        async for table, rows in source:
            if table == "quotes":
                for r in rows:
                    try:
                        mon.on_quote(r)
                    except Exception as e:  # noqa: BLE001 - a bad row must not blind the monitor
                        mon.bad_rows += 1
                        if time.monotonic() - last_bad[0] >= 10.0:
                            last_bad[0] = time.monotonic()
                            log.warning("skipped a quote row the monitor could not use (%s: %s); "
                                        "%d so far", type(e).__name__, str(e)[:200], mon.bad_rows)
            if stop.is_set():
                return

    async def clock() -> None:
        started = time.monotonic()
        next_t = started
        last_pos = last_ret = started
        pending: set[asyncio.Task] = set()
        while (duration is None or time.monotonic() - started < duration) and not stop.is_set():
            next_t += every_s
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, next_t - time.monotonic()))
                break  # stopped: no half tick
            except TimeoutError:
                pass
            m = time.monotonic()
            if m - last_pos >= positions_every_s:
                last_pos = m
                try:
                    mon.refresh_positions()
                except Exception as e:  # noqa: BLE001 - keep the last good positions
                    log.warning("positions refresh failed: %s", e)
            if returns_loader is not None and m - last_ret >= returns_every_s:
                last_ret = m
                try:
                    mon.returns = await asyncio.to_thread(returns_loader)
                except Exception as e:  # noqa: BLE001
                    log.warning("returns refresh failed: %s", e)
            t0 = time.perf_counter()
            try:
                rows = mon.tick(dt.datetime.now(dt.timezone.utc))
            except Exception as e:  # noqa: BLE001 - the next tick may do better; say so
                mon.bad_ticks += 1
                log.error("risk snapshot failed (%s: %s); %d failed so far", type(e).__name__,
                          str(e)[:200], mon.bad_ticks)
                continue
            if on_tick is not None:
                on_tick(rows, time.perf_counter() - t0)
            if write is not None:
                t = asyncio.create_task(asyncio.to_thread(write, rows))
                pending.add(t)
                t.add_done_callback(pending.discard)
        stop.set()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    def consumer_done(t: asyncio.Task) -> None:
        if not t.cancelled() and t.exception() is not None:
            stop.set()  # never run blind: the error is raised below

    consumer = asyncio.create_task(consume())
    consumer.add_done_callback(consumer_done)
    try:
        await clock()
    finally:
        failed = consumer.exception() if consumer.done() and not consumer.cancelled() else None
        if failed is not None:
            raise failed
        consumer.cancel()
        try:
            await consumer
        except (asyncio.CancelledError, Exception):  # noqa: BLE001
            pass
    return mon
