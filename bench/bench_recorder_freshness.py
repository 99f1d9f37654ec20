"""Freshness: simulator trade -> visible in a fresh ``lab.connect()`` in another process.

The simulator runs here (3 venues x 2 assets), ``lab record`` in a subprocess
(flush every 0.25 s, lake compaction every 15 s), and a poller subprocess
opens a fresh ``lab.connect()`` in a loop and notes, for each trade id, the
moment the first connection that saw it was opened. Latency = that moment -
the trade's exchange time (the simulator's send time; its simulated wire
delay is included). Prints p50/p90/p99 (targets: p50 <= 1 s, p99 <= 2 s) and
the cost of one fresh ``lab.connect()``.

    .venv/bin/python bench/bench_recorder_freshness.py [--quick] [--seconds S]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

POLLER = r'''
import json, sys, time
import lab
lake, seconds = sys.argv[1], float(sys.argv[2])
seen, costs = {}, []
end = time.time() + seconds
while time.time() < end:
    t0 = time.time()
    try:
        con = lab.connect(lake)
        rows = con.execute("SELECT venue, symbol, trade_id FROM trades "
                           "WHERE ts_local > now() - INTERVAL 20 SECOND").fetchall()
        con.close()
    except Exception as e:
        print("poll error:", e, file=sys.stderr); time.sleep(0.2); continue
    costs.append(time.time() - t0)
    for r in rows:
        seen.setdefault("|".join(r), t0)
print(json.dumps({"seen": seen, "costs": costs}))
'''


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20 s instead of 60 s")
    ap.add_argument("--seconds", type=float, help="measurement length")
    ap.add_argument("--flush-interval", type=float, default=0.25)
    a = ap.parse_args()
    secs = a.seconds or (20.0 if a.quick else 60.0)
    from recorders.sim import SimConfig, Simulator
    from tests.recorders.simrun import SYMBOLS, write_config  # noqa: PLC0415

    tmp = Path(tempfile.mkdtemp(prefix="bench-fresh-"))
    lake = tmp / "lake"
    venues = ("binance", "coinbase", "kraken")
    sim = Simulator(SimConfig(venues=venues, assets=("BTC", "ETH"), port_base=0, seed=2))
    with sim.running_in_thread():
        cfg = write_config(tmp / "rec.toml", sim.urls(), venues, lake, "fresh",
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
            poll = subprocess.run([sys.executable, "-c", POLLER, str(lake), str(secs)], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=secs + 120)
            out = json.loads(poll.stdout)
        finally:
            rec.terminate()
            rec.wait(60)
        trades = list(sim.truth.trades)
    lat = []
    for t in trades:
        if t["symbol"] not in SYMBOLS[t["venue"]]:
            continue
        te = dt.datetime.fromisoformat(t["ts_exchange"].replace("Z", "+00:00")).timestamp()
        if te < t_start + 1.0 or te > t_start + secs - 3.0:
            continue  # trades the poller had time to see
        s = out["seen"].get(f"{t['venue']}|{t['symbol']}|{t['trade_id']}")
        lat.append(np.inf if s is None else s - te)
    lat = np.array(lat)
    costs = np.array(out["costs"])
    print(f"trades measured: {len(lat)} over {secs:.0f} s; never seen: {int(np.isinf(lat).sum())}")
    q = np.percentile(lat, [50, 90, 99])
    print(f"send -> visible in a fresh lab.connect(): p50 {q[0]:.3f} s, p90 {q[1]:.3f} s, p99 {q[2]:.3f} s"
          f"  (targets p50 <= 1 s, p99 <= 2 s)")
    print(f"one fresh lab.connect()+query: p50 {np.median(costs):.3f} s, max {costs.max():.3f} s "
          f"({len(costs)} polls)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
