"""Full risk snapshot: 50 positions across 5 venues, 30 days of 1-minute history.

Times :meth:`lab.risk.live.RiskMonitor.tick` (marks from the live quote
state, PnL, exposure by asset/venue, historical + EWMA parametric VaR/ES at
95/99 %, drawdown, limits and the ``risk_snapshots`` rows) — the work done
every second by ``lab risk`` — target <= 200 ms. Also prints the parts.

Run: ``.venv/bin/python bench/bench_risk_snapshot.py [--quick]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def stats(xs: list[float]) -> str:
    a = np.asarray(xs) * 1e3
    return f"p50 {np.percentile(a, 50):7.1f} ms  p99 {np.percentile(a, 99):7.1f} ms  max {a.max():7.1f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20 snapshots instead of 100")
    a = ap.parse_args()
    reps = 20 if a.quick else 100

    import polars as pl

    from lab.risk import Limits, Position, RiskConfig, mark_positions, positions_frame, var_es
    from lab.risk.live import RiskMonitor

    rng = np.random.default_rng(0)
    venues = ["binance", "coinbase", "kraken", "okx", "bybit"]
    assets = ["BTC", "ETH", "SOL", "XRP", "ADA", "DOGE", "AVAX", "LINK", "DOT", "LTC"]
    px0 = dict(zip(assets, [90000, 3000, 140, 0.6, 0.4, 0.15, 30, 15, 6, 80]))
    pos = []
    for v in venues:
        for i, asset in enumerate(assets):
            kind = "inverse" if (v == "bybit" and i < 2) else ("linear" if v == "okx" else "spot")
            qty = float(rng.normal(0, 20_000 / px0[asset]))
            if kind == "inverse":
                qty = float(rng.normal(0, 20_000))
            pos.append(Position(v, asset, qty, px0[asset] * float(rng.uniform(0.95, 1.05)),
                                kind=kind, fees=float(rng.uniform(0, 5))))
    positions = positions_frame(pos)
    n = 30 * 24 * 60
    returns = pl.DataFrame({"ts": np.arange(n), **{x: rng.normal(0, 8e-4, n) for x in assets}})
    cfg = RiskConfig(capital=1_000_000.0, alerts=[],
                     limits=Limits(asset_notional={"*": 60_000.0}, venue_notional={"*": 150_000.0},
                                   daily_loss=10_000.0, stale_feed_s=5.0, leverage=3.0))
    mon = RiskMonitor(cfg, lambda: positions, sinks=[], returns=returns)
    now = dt.datetime.now(dt.timezone.utc)
    for v in venues:
        for asset in assets:
            quote = "USD" if v in ("coinbase", "kraken") else "USDT"
            p = px0[asset]
            mon.on_quote({"ts_local": now, "venue": v, "symbol": f"{asset}-{quote}",
                          "bid_px": p * 0.9999, "ask_px": p * 1.0001})
    print(f"{positions.height} positions, {len(venues)} venues, {len(assets)} assets, "
          f"{n:,} 1-minute returns ({n * len(assets):,} values)")
    mon.tick(now)  # warm up
    t_tick, t_mark, t_var, c_tick = [], [], [], []
    marks = mon.marks_frame(now)
    exp = {x: 20_000.0 for x in assets}
    for i in range(reps):
        t = now + dt.timedelta(seconds=i)
        t0, c0 = time.perf_counter(), time.process_time()
        rows = mon.tick(t)
        t_tick.append(time.perf_counter() - t0)
        c_tick.append(time.process_time() - c0)
        t0 = time.perf_counter()
        mark_positions(positions, marks)
        t_mark.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        var_es(exp, returns)
        t_var.append(time.perf_counter() - t0)
    print(f"  mark + PnL of 50 positions          {stats(t_mark)}")
    print(f"  VaR/ES hist + EWMA (10 assets, 30 d) {stats(t_var)}")
    print(f"  full snapshot (RiskMonitor.tick)    {stats(t_tick)}   rows per snapshot {rows.height}")
    print(f"  full snapshot CPU time (all threads)  {stats(c_tick)}")
    p99 = float(np.percentile(t_tick, 99)) * 1e3
    print(f"full snapshot p99 {p99:.1f} ms wall (target <= 200 ms): {'OK' if p99 <= 200 else 'FAIL'}")
    import os
    print(f"load average while running: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
