"""A paper session on a real bus hub, fed a recording: shared by the paper runner's test
(tests/backtest/test_paper.py) and the paper-vs-backtest page's test
(tests/streamlit/test_paper_vs_backtest_page.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import polars as pl

from lab.backtest import BacktestConfig
from lab.backtest.paper import PaperRunner
from lab.backtest.strategies import MarketMaker
from lab.lake import Lake

V, S = "binance", "BTC-USDT"

Frames = list[tuple[str, list[dict]]]


def bus_frames(lake: Lake, size: int = 400, skip_s: float = 0.0) -> Frames:
    """The recording as bus frames in receive order (runs of one table, <= size rows),
    starting ``skip_s`` seconds in (a runner that joins mid-stream)."""
    us = [pl.col("ts_exchange").dt.epoch("us"), pl.col("ts_local").dt.epoch("us")]
    b = lake.scan("book_updates").with_columns(us).collect().with_columns(pl.lit("book_updates").alias("_t"))
    t = lake.scan("trades").with_columns(us).collect().with_columns(pl.lit("trades").alias("_t"))
    rows = pl.concat([b, t], how="diagonal").sort("ts_local", maintain_order=True)
    rows = rows.filter(pl.col("ts_local") >= rows["ts_local"].min() + int(skip_s * 1e6))
    frames: Frames = []
    cur, buf = None, []
    for r in rows.iter_rows(named=True):
        table = r.pop("_t")
        r = {k: v for k, v in r.items() if v is not None or k == "seq"}
        if table != cur or len(buf) >= size:
            if buf:
                frames.append((cur, buf))
            cur, buf = table, []
        buf.append(r)
    frames.append((cur, buf))
    return frames


@dataclass
class PaperSession:
    """A finished paper session and what the bus did on the way."""

    runner: PaperRunner
    rows_published: int
    publisher_dropped: int
    hub_dropped: int


async def run_paper_session(lake: Lake, frames: Frames, cfg: BacktestConfig, flush_s: float = 0.2) -> PaperSession:
    """A market maker on binance BTC-USDT paper-trading ``frames`` published on a fresh hub,
    its fills written to ``lake``; returns once it has read every row (finished). ``flush_s``:
    the runner's batch timer (as live); a large one leaves only its 3,000-row batches, the same
    in every run whatever the machine's load."""
    from lab.bus import Hub, Publisher

    hub = Hub("127.0.0.1", 0)
    await hub.start()
    try:
        mm = MarketMaker(venue=V, symbol=S, qty=0.01, half_spread=0, skew_ticks=1.0, max_position=0.05,
                         interval_s=0.1)
        runner = PaperRunner(mm, [(V, S)], cfg, lake=lake)
        total = sum(len(r) for _, r in frames)
        task = asyncio.create_task(runner.run(hub.url, duration_s=120, flush_s=flush_s, max_rows=3_000,
                                              stop_after_rows=total))
        await hub.wait_subscribers(1, timeout=240)  # a cold numba cache compiles the engine first
        pub = Publisher(hub.url + "/publish", max_pending=100_000)
        await pub.start()
        for table, rows in frames:
            await pub.publish(table, rows)
            # pace like a live feed: the hub is best effort and drops for a subscriber > 2,000 frames behind
            while hub.frames_in - hub.frames_out - hub.dropped > 200 and not task.done():
                await asyncio.sleep(0.005)
        await asyncio.wait_for(task, 120)
        await pub.close()
        session = PaperSession(runner, total, pub.dropped, hub.dropped)
        runner.finish()
        return session
    finally:
        await hub.stop()
