"""Disk full, for real: ``LAB_DATA`` on a small tmpfs that a filler file fills up
while a recorder subprocess records the simulator.

The recorder stays up; the status file keeps updating and reports the outage;
rows that did not fit in the writer's memory bound become counted losses, written
to ``feed_events`` once space returns (their counts add up to the status's
``lost_rows``); the log says it a few times, not once per failed append, and
carries no Rust backtrace.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from lab.lake import Lake

ROOT = Path(__file__).resolve().parents[2]
OUTAGE_S = 8.0


def _mount_tmpfs(d: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (this suite runs as root on the lab machine)")
    d.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], check=True)


def _status(p: Path) -> dict | None:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def _wait(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_disk_full_recorder_stays_up_counts_every_loss_and_reports_the_outage(tmp_path):
    from recorders.sim import SimConfig, Simulator

    data = tmp_path / "data"
    _mount_tmpfs(data, "20m")
    rec = None
    try:
        sim = Simulator(SimConfig(venues=("binance", "coinbase"), assets=("BTC", "ETH"), cross=False,
                                  port_base=0, seed=21))
        with sim.running_in_thread():
            u = sim.urls()
            cfg = tmp_path / "rec.toml"
            cfg.write_text("\n".join([
                "[recorder]", 'name = "full"', f'lake = "{data / "lake"}"', f'status_dir = "{data / "run"}"',
                "flush_interval = 0.3", "maintain_every = 0", "write_buffer_mb = 0.25", "",
                "[[venue]]", 'venue = "binance"', 'symbols = ["BTC-USDT", "ETH-USDT"]',
                f'base_url = "{u["binance"]}"', f'rest_url = "{u["binance_rest"]}"', "",
                "[[venue]]", 'venue = "coinbase"', 'symbols = ["BTC-USD", "ETH-USD"]', f'base_url = "{u["coinbase"]}"',
            ]) + "\n")
            log = tmp_path / "recorder.log"
            rec = subprocess.Popen([sys.executable, "-m", "lab.cli", "record", "--config", str(cfg)], cwd=ROOT,
                                   env=dict(os.environ, PYTHONPATH=str(ROOT), RUST_BACKTRACE="1"),
                                   stdout=open(log, "wb"), stderr=subprocess.STDOUT)
            status = data / "run" / "recorder-full.json"
            _wait(lambda: (_status(status) or {}).get("rows_written", {}).get("trades"), 60, "first trades")

            # fill the disk
            filler = data / "filler"
            subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
            full_at = time.time()
            st = _wait(lambda: (s := _status(status)) and s.get("write_outage") and s, 30, "outage in the status")
            assert st["write_outage"]["failing_tables"]
            seen_updates = {st["updated"]}
            while time.time() - full_at < OUTAGE_S:
                s = _status(status)
                if s is not None:
                    seen_updates.add(s["updated"])
                    assert s["write_outage"] is not None or time.time() - full_at < 2
                assert rec.poll() is None, log.read_text()[-3000:]
                time.sleep(0.5)
            assert len(seen_updates) >= OUTAGE_S / 2, "the status file froze during the outage"
            s = _status(status)
            assert s["lost_rows"] > 0 and s["write_outage"]["pending_rows"] >= 0

            # space returns
            filler.unlink()
            back = _wait(lambda: (s := _status(status)) and s.get("write_outage") is None and s, 60, "recovery")
            lost = back["lost_rows"]
            lk = Lake(data / "lake")
            _wait(lambda: lk.read("feed_events").filter(pl.col("kind") == "write_recovered").height, 30,
                  "the recovery event")
            assert rec.poll() is None
            rec.send_signal(signal.SIGTERM)
            assert rec.wait(60) == 0, log.read_text()[-3000:]
        final = _status(status)
        ev = Lake(data / "lake").read("feed_events")
        losses = ev.filter(pl.col("kind") == "loss")["detail"].to_list()
        assert losses, "no loss was recorded"
        counted = sum(int(n) for d in losses for n in re.findall(r"'[a-z_]+': (\d+)", d))
        assert counted == final["lost_rows"] == sum(final["lost_by_table"].values()) >= lost > 0
        # the tables still hold what was written before and after the outage
        trades = Lake(data / "lake").read("trades")
        assert trades.filter(pl.col("ts_local").dt.epoch("s") > int(full_at + OUTAGE_S)).height > 0
        text = log.read_text()
        assert "stack backtrace" not in text
        ours = [ln for ln in text.splitlines() if "lake append" in ln]
        assert 1 <= len(ours) <= 4, ours  # start, once per 30 s, recovery
        assert text.count("panicked") <= 20, text.count("panicked")
    finally:
        if rec is not None and rec.poll() is None:
            rec.kill()
            rec.wait(30)
        subprocess.run(["umount", "-l", str(data)], check=False)
