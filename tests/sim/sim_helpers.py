"""Helpers for the live simulator tests: run a Simulator on free loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from decimal import Decimal

from recorders.sim.config import Listing, SimConfig
from recorders.sim.feed import LiveBook
from recorders.sim.server import Simulator

START_NS = 1_795_000_000_000_000_000  # a fixed simulated start: streams comparable across runs


@contextlib.asynccontextmanager
async def running(**kw) -> AsyncIterator[Simulator]:
    kw.setdefault("port_base", 0)
    kw.setdefault("start_ns", START_NS)
    sim = Simulator(SimConfig(**kw))
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def recv_json(ws, timeout: float = 20.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def drain(ws, quiet: float = 0.5) -> list[str]:
    """Everything the server still has in flight, until ``quiet`` s of silence."""
    out: list[str] = []
    while True:
        try:
            out.append(await asyncio.wait_for(ws.recv(), quiet))
        except TimeoutError:
            return out


async def pause_and_drain(sim: Simulator, ws) -> list[str]:
    """Stop ``sim`` publishing and return what it had already sent to ``ws``: once the client has
    applied these, its book is final and comparable with :func:`true_levels`."""
    await sim.pause()
    return await drain(ws)


def _listing(sim: Simulator, venue_symbol: str) -> tuple[int, Listing]:
    [(i, l)] = [(i, l) for i, l in enumerate(sim.market.listings) if l.venue_symbol == venue_symbol]
    return i, l


def true_book(sim: Simulator, venue_symbol: str) -> LiveBook:
    """The simulator's own book of ``venue_symbol`` (integer ticks and lots, its ``seq``)."""
    return sim.books[_listing(sim, venue_symbol)[0]]


def true_levels(sim: Simulator, venue_symbol: str, side: int, depth: int | None = None) -> dict[Decimal, Decimal]:
    """The simulator's own book of ``venue_symbol`` (``side`` 0: bids, 1: asks; the best ``depth``
    levels, or all) as exact decimal price -> size."""
    i, l = _listing(sim, venue_symbol)
    scale, lot = Decimal(10) ** -l.price_dec, Decimal(10) ** -l.qty_dec
    book = sim.books[i]
    levels = book.top(side, depth) if depth else (book.bids if side == 0 else book.asks).items()
    return {p * scale: q * lot for p, q in levels}
