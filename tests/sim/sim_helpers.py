"""Helpers for the live simulator tests: run a Simulator on free loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

from recorders.sim.config import SimConfig
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
