"""lab.start_recorder handle, `lab status`, and the live bus fed by a recorder
(all against the simulator on loopback)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

from simrun import ROOT, wait_for

import lab
from lab.schema import TABLES
from recorders.sim.harness import free_port


async def _first_frames(url: str, tables: list[str], n: int) -> list[tuple[str, list[dict]]]:
    from lab.bus import subscribe

    got = []
    async for table, rows in subscribe(tables, url=url):
        got.append((table, rows))
        if len(got) >= n:
            return got
    return got


def test_start_recorder_handle_status_and_bus(lab_data, tmp_path, quiet_sim):
    bus_port = free_port()
    bus = f"ws://127.0.0.1:{bus_port}"
    u = quiet_sim.urls()
    rec = lab.start_recorder(venue="binance", symbols=["BTC-USDT"], base_url=u["binance"],
                             rest_url=u["binance_rest"], lake=tmp_path / "lake", name="hs",
                             bus=bus, flush_interval=0.3, extra_args=["--bus-serve"])
    try:
        s = rec.wait_ready(90)
        assert s["pid"] == rec.pid and "binance" in s["venues"]
        wait_for(lambda: rec.status()["venues"]["binance"]["symbols"]["BTC-USDT"]["book_synced"],
                 60, what="book synced")
        assert "binance" in rec._repr_html_()
        w = rec.widget(every=0.2)
        assert "binance" in w.value

        # the bus: quotes and trades with the canonical columns, timestamps in µs
        frames = asyncio.run(asyncio.wait_for(_first_frames(bus, ["quotes", "trades"], 3), 60))
        for table, rows in frames:
            assert table in ("quotes", "trades")
            assert set(rows[0]) == set(TABLES[table].columns) - TABLES[table].optional  # live rows: no source
            assert isinstance(rows[0]["ts_local"], int) and rows[0]["ts_local"] > 1.7e15

        out = subprocess.run([sys.executable, "-m", "lab.cli", "status", "--json", "--lake",
                              str(tmp_path / "lake")], cwd=ROOT, capture_output=True, text=True,
                             env={**os.environ, "LAB_DATA": str(lab_data)}, timeout=120)
        assert out.returncode == 0, out.stderr
        st = json.loads(out.stdout)
        mine = [r for r in st["recorders"] if r["name"] == "hs"]
        assert mine and mine[0]["alive"]
        counts = {r["table"]: r["rows"] for r in st["lake"]}
        assert counts["trades"] > 0 and counts["raw_messages"] > 0
    finally:
        rc = rec.stop()
    assert rc == 0, rec.log_tail()
    assert not rec.status()["running"]
