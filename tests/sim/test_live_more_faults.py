"""Coinbase sequence gaps and silent periods as a client sees them; the threaded API."""

from __future__ import annotations

import asyncio
import json

from sim_helpers import START_NS, running
from websockets.asyncio.client import connect
from websockets.sync.client import connect as sync_connect

from recorders.sim.config import FaultConfig, SimConfig
from recorders.sim.server import Simulator


def test_coinbase_dropped_message_shows_as_sequence_gap_and_silence_skips_heartbeats():
    faults = FaultConfig(gap=20, silent=10, silent_s=0.4)

    async def main():
        async with running(venues=("coinbase",), assets=("BTC",), speed=10, seed=10, faults=faults) as sim:
            async with connect(sim.urls()["coinbase"]) as ws:
                await ws.send(json.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level2"}))
                await ws.send(json.dumps({"type": "subscribe", "channel": "heartbeats"}))
                last = None
                seq_gaps = hb_jumps = 0
                last_hb = None
                while not (seq_gaps and hb_jumps):
                    m = json.loads(await asyncio.wait_for(ws.recv(), 30))
                    if last is not None and m["sequence_num"] != last + 1:
                        seq_gaps += 1
                    last = m["sequence_num"]
                    if m["channel"] == "heartbeats":
                        c = m["events"][0]["heartbeat_counter"]
                        if last_hb is not None and c > last_hb + 1:
                            hb_jumps += 1
                        last_hb = c
            return {(f["venue"], f["kind"]) for f in sim.truth.faults}

    kinds = asyncio.run(main())
    assert ("coinbase", "gap") in kinds and ("coinbase", "silent") in kinds


def test_running_in_thread_serves_a_blocking_client():
    sim = Simulator(SimConfig(venues=("kraken",), assets=("SOL",), port_base=0, start_ns=START_NS, speed=5))
    with sim.running_in_thread() as s:
        with sync_connect(s.urls()["kraken"]) as ws:
            assert json.loads(ws.recv(timeout=20))["channel"] == "status"
            ws.send(json.dumps({"method": "subscribe", "params": {"channel": "trade", "symbol": ["SOL/USD"]}}))
            kinds = set()
            while "trade" not in kinds:
                kinds.add(json.loads(ws.recv(timeout=20)).get("channel"))
    assert sim.truth.trades and sim.truth.trades[0]["symbol"] == "SOL-USD"


def test_coinbase_sequence_num_keeps_the_venues_order_under_reorder_duplicate_and_silence():
    """The venue numbers messages as it produces them: a swapped pair arrives with its
    numbers swapped, a duplicate repeats its number (same bytes), a silent stretch
    leaves a jump. Before, numbers were given at sending, hiding all three."""
    faults = FaultConfig(out_of_order=120, duplicate=120, silent=30, silent_s=0.3)

    async def main():
        async with running(venues=("coinbase",), assets=("BTC",), speed=10, seed=4, faults=faults) as sim:
            async with connect(sim.urls()["coinbase"]) as ws:
                await ws.send(json.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level2"}))
                await ws.send(json.dumps({"type": "subscribe", "channel": "heartbeats"}))
                prev = prev_raw = None
                seen = {"back": 0, "repeat": 0, "jump": 0, "jump_after_silence": 0}
                silenced = False
                deadline = asyncio.get_running_loop().time() + 60
                while not all(seen.values()):
                    assert asyncio.get_running_loop().time() < deadline, seen
                    if any(f["kind"] == "silent" for f in sim.truth.faults):
                        silenced = True
                    raw = await asyncio.wait_for(ws.recv(), 30)
                    n = json.loads(raw)["sequence_num"]
                    if prev is not None:
                        if n == prev:
                            assert raw == prev_raw  # a duplicate is the same message
                            seen["repeat"] += 1
                        elif n < prev:
                            seen["back"] += 1
                        elif n > prev + 1:
                            seen["jump"] += 1
                            if silenced and n > prev + 5:  # dozens of messages went unsent
                                seen["jump_after_silence"] += 1
                    prev, prev_raw = max(n, prev if prev is not None else n), raw
            return {f["kind"] for f in sim.truth.faults}

    kinds = asyncio.run(main())
    assert {"out_of_order", "duplicate", "silent"} <= kinds
