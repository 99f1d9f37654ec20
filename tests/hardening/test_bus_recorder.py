"""The recorder hosting the hub (``lab record --bus-serve``): the token flow works with
nothing passed (both sides read ``$LAB_DATA/run/bus_token``), every row a real recorder
publishes on every venue passes the hub's schema check, and a forged publisher is refused."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request

import pytest
import websockets
from bus_fixtures import free_port, start_service

from lab.bus import bus_token, subscribe
from recorders.config import write_config

SYMBOLS = {"binance": ["BTC-USDT"], "coinbase": ["BTC-USD"], "kraken": ["BTC-USD"], "okx": ["BTC-USDT"],
           "bybit": ["BTC-USDT"]}
TABLES = ("trades", "quotes", "book_updates")


@pytest.fixture(scope="module")
def five_venue_sim(tmp_path_factory):
    from recorders.sim import SimConfig, Simulator

    sim = Simulator(SimConfig(venues=tuple(SYMBOLS), assets=("BTC",), port_base=0, seed=11,
                              truth_dir=str(tmp_path_factory.mktemp("sim5") / "truth"), truth_book_every=0))
    with sim.running_in_thread():
        yield sim


def test_recorder_hub_takes_its_own_rows_on_every_venue_and_refuses_forgers(tmp_path, lab_data, five_venue_sim):
    port = free_port()
    bus = f"ws://127.0.0.1:{port}"
    cfg = write_config(tmp_path / "rec.toml", five_venue_sim.urls(), SYMBOLS, tmp_path / "lake", "bus5",
                       flush_interval=0.5, maintain_every=0)
    log = tmp_path / "rec.log"
    rec = start_service(["record", "--config", str(cfg), "--bus", bus, "--bus-serve"], log)
    seen: dict[tuple[str, str], int] = {}

    async def follow():
        async for table, rows in subscribe(list(TABLES), url=bus):
            for r in rows:
                seen[(table, r["venue"])] = seen.get((table, r["venue"]), 0) + 1
            if len(seen) == len(TABLES) * len(SYMBOLS):
                return

    async def forge() -> int:
        try:
            async with websockets.connect(bus + "/publish", additional_headers={"Authorization": "Bearer forged"}):
                return 101
        except websockets.InvalidStatus as e:
            return e.response.status_code

    try:
        asyncio.run(asyncio.wait_for(follow(), 180))
        forged = asyncio.run(forge())
        req = urllib.request.Request(f"http://127.0.0.1:{port}/stats",
                                     headers={"Authorization": f"Bearer {bus_token()}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            stats = json.loads(r.read())
    finally:
        rec.send_signal(signal.SIGINT)
        rc = rec.wait(90)
    assert rc == 0, log.read_text()[-3000:]
    assert forged == 401
    assert {v for _, v in seen} == set(SYMBOLS)
    assert stats["invalid_frames"] == 0, stats["invalid"]
    assert stats["refused"] == 1 and stats["frames_in"] > 0
