"""Bulk history throughput: ``write_to_lake`` rows/s into a fresh temp lake.

Also reports, in the same run, the market model alone (no lake) and a
baseline: appending an equal number of pre-built rows to the lake, so the
ratio shows how much of the time is generation vs. Delta writing.
Target: >= 1,000,000 rows/s end to end.

    .venv/bin/python bench/bench_sim_bulk.py [--quick] [--hours H]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20 simulated minutes instead of --hours")
    ap.add_argument("--hours", type=float, default=2.0, help="simulated hours (3 venues x 3 assets + ETH-BTC)")
    a = ap.parse_args()
    minutes = 20 if a.quick else int(a.hours * 60)

    import polars as pl

    from lab.lake import Lake
    from recorders.sim.bulk import write_to_lake
    from recorders.sim.config import SimConfig
    from recorders.sim.market import Market

    start = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    # warm the numba cache so compile time is not counted
    write_to_lake(Lake(tempfile.mkdtemp()), start=start, duration=dt.timedelta(seconds=2))

    m = Market(SimConfig(), start_ns=0, chunk_ns=60 * 10**9, snap_dt_ns=10**9)
    t = time.perf_counter()
    gen_rows = 0
    for _ in range(minutes):
        for c in m.step():
            gen_rows += len(c.upd_t) + len(c.trade_t) + len(c.quote_t) + len(c.snap_t)
    t_gen = time.perf_counter() - t

    with tempfile.TemporaryDirectory() as d:
        lake = Lake(Path(d) / "lake")
        t = time.perf_counter()
        n = write_to_lake(lake, start=start, duration=dt.timedelta(minutes=minutes), progress=True)
        t_all = time.perf_counter() - t
        total = sum(n.values())

        # baseline: the same number of book_updates-shaped rows, pre-built, appended in 2M batches
        sample = lake.scan("book_updates").head(2_000_000).collect()
        lake2 = Lake(Path(d) / "lake2")
        t = time.perf_counter()
        done = 0
        while done < total:
            k = min(sample.height, total - done)
            lake2.append("book_updates", sample.head(k))
            done += k
        t_base = time.perf_counter() - t

    print(f"simulated {minutes} min: {total:,} rows ({', '.join(f'{k} {v:,}' for k, v in n.items())})")
    print(f"market model only        : {gen_rows / t_gen:12,.0f} rows/s ({t_gen:.1f} s)")
    print(f"write_to_lake end to end : {total / t_all:12,.0f} rows/s ({t_all:.1f} s)   "
          f"target >= 1,000,000: {'OK' if total / t_all >= 1e6 else 'BELOW'}")
    print(f"baseline lake.append only: {total / t_base:12,.0f} rows/s ({t_base:.1f} s)   "
          f"ratio write_to_lake/append-only: {t_base / t_all:.2f}")
    print(f"one simulated day would be ~{total * 1440 / minutes / 1e6:,.0f} M rows")
    del pl
    return 0


if __name__ == "__main__":
    sys.exit(main())
