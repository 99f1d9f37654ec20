"""Replay of a raw_messages journal, and the ``lab simulate --to-lake`` command."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import httpx
import polars as pl
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from lab.cli import main as lab_main
from lab.lake import Lake
from recorders.sim.replay import Replayer


def _journal(lake: Lake) -> list[str]:
    t0 = dt.datetime(2026, 11, 22, 12, tzinfo=dt.timezone.utc)
    payloads = [json.dumps({"e": "trade", "s": "BTCUSDT", "t": i, "p": f"{90000 + i}.00000000"})
                for i in range(300)]
    rows = {
        "ts_local": [t0 + dt.timedelta(milliseconds=10 * i) for i in range(300)],
        "venue": ["binance"] * 300, "conn_id": ["binance-ws-1"] * 300,
        "recv_seq": list(range(300)), "payload": payloads,
    }
    rest = '{"lastUpdateId":42,"bids":[["1.00000000","2.00000000"]],"asks":[["3.00000000","4.00000000"]]}'
    kraken = '{"channel":"heartbeat"}'
    lake.append("raw_messages", pl.DataFrame(rows))
    lake.append("raw_messages", pl.DataFrame({
        "ts_local": [t0, t0 + dt.timedelta(milliseconds=5)], "venue": ["binance", "kraken"],
        "conn_id": ["rest-BTCUSDT", "kraken-1"], "recv_seq": [0, 0], "payload": [rest, kraken]}))
    return payloads


def test_replay_serves_the_journal_in_order_and_the_rest_snapshot(tmp_path):
    lake = Lake(tmp_path / "lake")
    payloads = _journal(lake)

    async def main():
        rp = Replayer(tmp_path / "lake", port_base=0, speed=20)
        await rp.start()
        try:
            got = []
            async with connect(rp.urls()["binance"] + "/ws/btcusdt@trade") as ws:
                try:
                    while True:
                        got.append(await asyncio.wait_for(ws.recv(), 20))
                except ConnectionClosed as e:
                    assert e.rcvd is not None and e.rcvd.code == 1000
            async with httpx.AsyncClient() as h:
                r = await h.get(rp.urls()["binance_rest"] + "/api/v3/depth", params={"symbol": "BTCUSDT"})
            async with connect(rp.urls()["kraken"]) as ws:
                k = await asyncio.wait_for(ws.recv(), 20)
            return got, r, k
        finally:
            await rp.stop()

    got, r, k = asyncio.run(main())
    assert got == payloads
    assert r.status_code == 200 and r.json()["lastUpdateId"] == 42
    assert k == '{"channel":"heartbeat"}'


def test_lab_simulate_to_lake_writes_the_requested_span(tmp_path, capsys):
    rc = lab_main(["simulate", "--to-lake", "--days", "0.0007", "--start", "2026-11-20T00:00:00",
                   "--venues", "kraken", "--assets", "BTC", "--seed", "3", "--lake", str(tmp_path / "lake")])
    assert rc == 0
    assert "rows/s" in capsys.readouterr().out
    t = Lake(tmp_path / "lake").scan("trades").collect()
    assert t.height > 0
    assert set(t["symbol"]) == {"BTC-USD"}
    lo, hi = t["ts_exchange"].min(), t["ts_exchange"].max()
    assert lo >= dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)
    assert hi < dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc) + dt.timedelta(days=0.0007)
