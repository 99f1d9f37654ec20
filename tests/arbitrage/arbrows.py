"""Row builders and stream helpers shared by the live-detector tests."""

from __future__ import annotations

import asyncio
from typing import Any

import polars as pl

from lab.arbitrage import ArbConfig
from lab.arbitrage.live import Detector
from lab.lake import Lake

T0_US = 1_790_000_000_000_000


def update(ms: float, venue: str, symbol: str, side: str, price: float, qty: float, *,
           snap: bool = False, seq: int = 1) -> dict:
    """A ``book_updates`` row received ``ms`` after T0 (sent 3 ms earlier)."""
    ts = T0_US + int(ms * 1000)
    return {"ts_exchange": ts - 3000, "ts_local": ts, "venue": venue, "symbol": symbol,
            "side": side, "price": price, "qty": qty, "is_snapshot": snap, "seq": seq}


def quote(ms: float, venue: str, symbol: str, bid: float, bid_qty: float, ask: float,
          ask_qty: float) -> dict:
    """A ``quotes`` row received ``ms`` after T0 (sent 3 ms earlier)."""
    ts = T0_US + int(ms * 1000)
    return {"ts_exchange": ts - 3000, "ts_local": ts, "venue": venue, "symbol": symbol,
            "bid_px": bid, "bid_qty": bid_qty, "ask_px": ask, "ask_qty": ask_qty}


def frame(rows: list[dict]) -> pl.DataFrame:
    """Rows as a lake-typed frame (µs ints -> UTC datetimes)."""
    return pl.DataFrame(rows).with_columns(
        pl.col("ts_exchange", "ts_local").cast(pl.Datetime("us", "UTC")))


def feed(det: Detector, rows: list[dict]) -> list[dict]:
    """Every signal ``det`` emits for ``rows`` fed one by one, then flushed."""
    out = []
    for r in rows:
        out += det.on_book_update(r)
    return out + det.flush()


async def until(source, table: str, n: int):
    """Pass ``source`` through; end after ``n`` rows of ``table`` (the test's end of data)."""
    seen = 0
    async for t, rows in source:
        yield t, rows
        if t == table:
            seen += len(rows)
            if seen >= n:
                return


def replay_into(det: Detector, updates: pl.LazyFrame) -> list[dict]:
    """Every signal ``det`` emits for the lake's ``book_updates`` replayed in receive order."""
    from lab.arbitrage.live import replay_rows

    out = []
    for rows in replay_rows(updates):
        for r in rows:
            out += det.on_book_update(r)
    return out + det.flush()


async def run_live_on_a_bus(cfg: ArbConfig, lake: Lake, tables: list[str], frames: list[tuple[str, list[dict]]],
                            stop_after: tuple[str, int], **kw: Any) -> Any:
    """``run_live`` subscribed to ``tables`` of a fresh hub, writing signals to ``lake``, while
    ``frames`` ((table, rows), in order) are published there; it ends after ``stop_after``
    (table, rows). Returns its detector; ``kw`` goes to ``run_live`` (sinks, on_signal)."""
    from lab.arbitrage.live import run_live
    from lab.bus import Hub, Publisher, subscribe

    hub = await Hub("127.0.0.1", 0).start()
    try:
        source = subscribe(tables, url=hub.url)
        task = asyncio.create_task(run_live(cfg, until(source, *stop_after),
                                            write=lambda df: lake.append("arbitrage_signals", df), **kw))
        await hub.wait_subscribers(1)
        pub = await Publisher(hub.url + "/publish").start()
        for table, rows in frames:
            await pub.publish(table, rows)
        det = await asyncio.wait_for(task, 60)
        await pub.close()
        return det
    finally:
        await hub.stop()
