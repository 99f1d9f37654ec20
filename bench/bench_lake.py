"""Lake speed: the foundation issue's three figures.

    .venv/bin/python bench/bench_lake.py [--quick]

1. one 1,000,000-row trades batch appended (rows/s), next to a plain pyarrow
   Parquet (zstd) write and DuckDB's native insert of the same Arrow table,
   interleaved, medians (ratio to pyarrow: the target line);
2. 1,000-row commits while another process reads through lab.connect():
   p50/p99 latency, the maintenance calls counted in the commits that make them;
3. an hour of one-per-second commits (written as fast as possible, with the
   production maintenance cadence: one pass per simulated minute) and, every 7
   commits — so at every point of the maintenance cycle, not only right after a
   compaction — a fresh lab.connect() + query over the last 5 minutes: p50/p99.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import lab  # noqa: E402
from lab.lake import Lake  # noqa: E402

T0 = dt.datetime(2026, 11, 22, tzinfo=dt.timezone.utc)


def trades(n: int, t0: dt.datetime, span_s: float, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    off = np.sort(rng.uniform(0, span_s * 1e6, n)).astype("int64")
    return pl.DataFrame({
        "ts_exchange": pl.Series(off).cast(pl.Duration("us")) + t0,
        "venue": rng.choice(["binance", "coinbase", "kraken"], n),
        "symbol": rng.choice(["BTC-USDT", "ETH-USDT", "SOL-USDT"], n),
        "trade_id": pl.int_range(n, eager=True).cast(pl.String),
        "price": 60_000 + rng.normal(0, 50, n).cumsum() / 100,
        "qty": rng.exponential(0.1, n),
        "side": rng.choice(["buy", "sell"], n),
    }).with_columns(ts_local=pl.col("ts_exchange") + pl.duration(milliseconds=5))


def bulk(root: Path, repeat: int) -> None:
    import pyarrow.parquet as pq

    df = trades(1_000_000, T0, 86_400)
    arrow = df.to_arrow()
    ours, plain, duck = [], [], []
    for i in range(repeat):  # interleaved: load swings hit every contender alike
        lake = Lake(root / f"bulk{i}")
        t = time.perf_counter()
        lake.append("trades", df)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        pq.write_table(arrow, root / f"plain{i}.parquet", compression="zstd")
        plain.append(time.perf_counter() - t)
        con = duckdb.connect(str(root / f"duck{i}.db"))
        con.execute("create table trades as select * from arrow limit 0")
        t = time.perf_counter()
        con.execute("insert into trades select * from arrow")
        duck.append(time.perf_counter() - t)
        con.close()
    o, p, d = (float(np.median(x)) for x in (ours, plain, duck))
    print(f"1. bulk append of a 1,000,000-row batch (medians of {repeat}, interleaved; load {os.getloadavg()[0]:.1f}):")
    print(f"   lake {1e6 / o:,.0f} rows/s; plain pyarrow Parquet (zstd) write {1e6 / p:,.0f} rows/s; "
          f"DuckDB native insert {1e6 / d:,.0f} rows/s")
    print(f"   TARGET lake ingest >= 1,000,000 rows/s: {1e6 / o:,.0f} rows/s; "
          f"TARGET >= 0.9x pyarrow write: {p / o:.2f}x")


def small(root: Path, n: int) -> None:
    lake = Lake(root / "small")
    reader = subprocess.Popen([sys.executable, "-c", (
        "import time, lab, sys\n"
        "end = time.time() + 600\n"
        "while time.time() < end:\n"
        f"    c = lab.connect({str(root / 'small')!r}); c.sql('select count(*) from trades').fetchall(); c.close()\n"
        "    time.sleep(0.2)\n")])
    lat = []
    try:
        for b in tqdm(range(n), desc="2. small commits", leave=False):
            df = trades(1000, T0 + dt.timedelta(seconds=b), 1.0, seed=b)
            t = time.perf_counter()
            lake.append("trades", df)
            if b % 100 == 99:  # the maintenance pass is part of the cycle a writer pays for
                lake.maintain("trades")
            lat.append(time.perf_counter() - t)
    finally:
        reader.kill()
    p50, p99 = np.percentile(lat, [50, 99]) * 1000
    print(f"2. 1,000-row commits with a reader process, compaction calls included: p50 {p50:.1f} ms, "
          f"p99 {p99:.1f} ms, max {max(lat) * 1000:.0f} ms (target p99 <= 100 ms) over {n} commits")


def hour(root: Path, n: int, every: int) -> None:
    """Commits one per simulated second with a maintenance pass per simulated minute; every ``every``
    commits, at whatever point of the maintenance cycle that is, a fresh lab.connect() queries the last
    5 minutes. The percentiles are over all those points, not only right after a compaction."""
    lake = Lake(root / "hour")
    q = ("select symbol, count(*), avg(price), sum(qty) from trades "
         "where ts_exchange >= $start group by symbol")
    times, phases = [], []
    for s in tqdm(range(n), desc="3. one-per-second commits", leave=False):
        lake.append("trades", trades(1000, T0 + dt.timedelta(seconds=s), 1.0, seed=s))
        if s % 60 == 59:  # production cadence: `lab maintain --every 60`
            lake.maintain("trades")
        if s % every == every - 1:
            end = T0 + dt.timedelta(seconds=s + 1)
            t = time.perf_counter()
            con = lab.connect(str(root / "hour"))
            rows = con.execute(q, {"start": end - dt.timedelta(minutes=5)}).fetchall()
            times.append(time.perf_counter() - t)
            con.close()
            phases.append(s % 60)
            assert sum(r[1] for r in rows) == 1000 * min(s + 1, 300), (s, rows)
    p50, p99 = np.percentile(times, [50, 99]) * 1000
    end = T0 + dt.timedelta(seconds=n)
    t = time.perf_counter()
    lf = lab.scan("trades", lake=str(root / "hour"), start=end - dt.timedelta(minutes=5))
    assert lf.group_by("symbol").len().collect()["len"].sum() == 300_000
    t_pl = time.perf_counter() - t
    print(f"3. {n} one-per-second commits, maintenance every 60: fresh lab.connect() + 5-minute query at "
          f"{len(times)} points spread over the maintenance cycle (phases {min(phases)}-{max(phases)} s): "
          f"p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {max(times) * 1000:.0f} ms (target <= 100 ms); "
          f"lab.scan same window {t_pl * 1000:.0f} ms; files now {len(lake.delta('trades').file_uris())}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer commits (600 instead of 3,600)")
    ap.add_argument("--repeat", type=int, default=5, help="interleaved bulk runs (medians)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        bulk(root, a.repeat)
        small(root, 300 if a.quick else 1000)
        hour(root, 600 if a.quick else 3600, every=7)


if __name__ == "__main__":
    main()
