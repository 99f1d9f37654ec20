"""Freshness: simulator trade -> visible in a fresh ``lab.connect()`` in another process.

The simulator runs here (3 venues x 2 assets), ``lab record`` in a subprocess
(flush every 0.25 s, lake compaction every 15 s), and a poller subprocess
opens a fresh ``lab.connect()`` in a loop and notes, for each trade id, the
moment the first connection that saw it was opened. Latency = that moment -
the trade's exchange time mapped to the wall clock (the simulator's clock
can start behind it; the offset is sampled during the run), so the simulated
wire delay is included. Prints p50/p90/p99 (targets: p50 <= 1 s, p99 <= 2 s) and
the cost of one fresh ``lab.connect()``.

    .venv/bin/python bench/bench_recorder_freshness.py [--quick] [--seconds S]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import poll_freshness, send_to_visible  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20 s instead of 60 s")
    ap.add_argument("--seconds", type=float, help="measurement length")
    ap.add_argument("--flush-interval", type=float, default=0.25)
    a = ap.parse_args()
    secs = a.seconds or (20.0 if a.quick else 60.0)
    from recorders.config import write_config
    from recorders.sim import SimConfig, Simulator

    tmp = Path(tempfile.mkdtemp(prefix="bench-fresh-"))
    lake = tmp / "lake"
    venues = ("binance", "coinbase", "kraken")
    sim = Simulator(SimConfig(venues=venues, assets=("BTC", "ETH"), port_base=0, seed=2))
    with sim.running_in_thread():
        symbols = {v: (["BTC-USDT", "ETH-USDT"] if v == "binance" else ["BTC-USD", "ETH-USD"]) for v in venues}
        cfg = write_config(tmp / "rec.toml", sim.urls(), symbols, lake, "fresh",
                           flush_interval=a.flush_interval, maintain_every=15.0)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        rec = subprocess.Popen([sys.executable, "-m", "lab.cli", "record", "--config", str(cfg)],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            t_wait = time.time() + 60
            while not (lake / "trades" / "_delta_log").exists() and time.time() < t_wait:
                time.sleep(0.2)
            time.sleep(2.0)
            t_start = time.time()
            poll = poll_freshness(sim, lake, secs, tmp / "seen.json", env)
        finally:
            rec.terminate()
            rec.wait(60)
        trades = list(sim.truth.trades)
    offset, offsets = poll.offset, poll.offsets
    pairs = send_to_visible(trades, symbols, poll.seen, offset, t_start, secs)
    lat = np.array([s for s, _ in pairs])
    lat_rx = np.array([r for _, r in pairs if r is not None])
    costs = np.array(poll.costs)
    print(f"trades measured: {len(lat)} over {secs:.0f} s; never seen: {int(np.isinf(lat).sum())}")
    q = np.percentile(lat_rx, [50, 90, 99])
    print(f"recorder receive -> visible in a fresh lab.connect(): p50 {q[0]:.3f} s, p90 {q[1]:.3f} s, "
          f"p99 {q[2]:.3f} s  (targets p50 <= 1 s, p99 <= 2 s)")
    q = np.percentile(lat, [50, 90, 99])
    print(f"simulator send (its clock + offset) -> visible: p50 {q[0]:.3f} s, p90 {q[1]:.3f} s, "
          f"p99 {q[2]:.3f} s")
    print(f"simulator clock behind the wall clock by {offset:.3f} s (median; "
          f"spread {np.ptp(np.array(offsets)) / 1e9:.3f} s while measuring: the simulator falls "
          f"behind under load, which the second line includes)")
    print(f"one fresh lab.connect()+query: p50 {np.median(costs):.3f} s, max {costs.max():.3f} s "
          f"({len(costs)} polls)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
