"""Scale-out figures (issue 19): sweeps and per-day jobs local vs Ray, object-store appends.

    .venv/bin/python bench/bench_cluster.py [--quick] [--workers 1,2]

1. a 1,000-parameter sweep (a numpy model per parameter set, 50 per task): wall time in
   this process, then on a ``ray.cluster_utils.Cluster`` of 1, 2, ... one-CPU workers
   on this machine, and Ray's scheduling overhead per task (200 no-op tasks);
2. a per-(venue, symbol, day) trades summary (``lab.distributed.map_days``) over a few
   simulated days: local vs each cluster;
3. 1,000-row appends to a Delta table on a local S3 server (SeaweedFS, loopback) vs
   the local-disk lake: p50/p99, and a fresh ``lab.connect()`` + query over the last
   5 minutes on each;
4. a market-maker backtest over 30 simulated days of binance BTC-USDT L2 (``--bt-days``,
   ``--bt-minutes`` of data per day), each mode in a fresh process: day by day
   (``lab.distributed.backtest_days``: one day of events in memory, outputs streamed to
   Parquet) vs one span (``run_backtest`` over all events): events/s, peak RSS, and
   whether the fills and the number of order events are the same.
   ``--only bt --bt-days 5 --bt-minutes 2`` is a one-minute run;
5. the multi-day callers of ``map_days`` (``lab.micro.summary_days``, the arbitrage
   ``scan``) against one pass over the same rows: a one-day call must cost what the
   pass costs (it is that pass), a multi-day call pays the per-task overhead.

The machine has 2 cores shared with others: the Ray figures measure overhead more than
speed-up; the per-task overhead is what projects to a real cluster.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import lab  # noqa: E402
from lab.distributed import map_days, parse_grid, sweep  # noqa: E402
from lab.lake import Lake  # noqa: E402

DAY0 = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)


def model(p: dict, n: int) -> dict:
    x = np.linspace(0.0, 1.0, n)
    y = np.sin(p["a"] * x) * np.exp(-p["b"] * x)
    return {"mean": float(y.mean())}


def noop(i: int) -> int:
    return i


def day_summary(lf: pl.LazyFrame) -> pl.DataFrame:
    """Trades, volume, VWAP and realized volatility of 1-second closes: one slice's summary."""
    df = lf.sort("ts_exchange").collect()
    rv = (df.group_by_dynamic("ts_exchange", every="1s").agg(pl.col("price").last().alias("close"))
          .select((pl.col("close").log().diff() ** 2).sum().sqrt()).item())
    return df.select(pl.len().alias("trades"), pl.col("qty").sum().alias("volume"),
                     ((pl.col("price") * pl.col("qty")).sum() / pl.col("qty").sum()).alias("vwap"),
                     pl.lit(rv).alias("rv"))


def start_cluster(workers: int):
    import ray
    from ray.cluster_utils import Cluster

    mem = 80 * 1024 * 1024
    for attempt in range(3):
        c = None
        try:
            c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                              "object_store_memory": mem})
            for _ in range(workers):
                c.add_node(num_cpus=1, object_store_memory=mem)
            c.wait_for_nodes()
            ray.init(address=c.address, logging_level="WARNING", log_to_driver=False)
            return c
        except Exception:
            if c is not None:
                c.shutdown()
            if attempt == 2:
                raise


def timed(f, *a, **kw):
    t = time.perf_counter()
    r = f(*a, **kw)
    return r, time.perf_counter() - t


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs) * 1000, q))


def bench_object_store(n: int) -> None:
    from lab.objectstore import LocalS3

    def one(lake: Lake) -> tuple[list[float], float]:
        lat = []
        for b in range(n):
            i = pl.int_range(1000, eager=True)
            ts = pl.lit(DAY0) + pl.duration(seconds=b) + pl.duration(microseconds=i)
            df = pl.DataFrame({"i": i}).select(
                ts_exchange=ts, ts_local=ts, venue=pl.lit("binance"), symbol=pl.lit("BTC-USDT"),
                trade_id=pl.format("{}-{}", pl.lit(b), pl.col("i")), price=pl.lit(100.0), qty=pl.lit(1.0),
                side=pl.lit("buy"))
            t = time.perf_counter()
            lake.append("trades", df)
            lat.append(time.perf_counter() - t)
        end = DAY0 + dt.timedelta(seconds=n)
        t = time.perf_counter()
        con = lab.connect(lake)
        con.sql("SELECT count(*), avg(price) FROM trades WHERE ts_exchange >= ?",
                params=[end - dt.timedelta(minutes=5)]).fetchall()
        return lat, time.perf_counter() - t

    with tempfile.TemporaryDirectory() as d:
        lat_disk, q_disk = one(Lake(Path(d) / "lake"))
    with LocalS3(bucket="bench") as s3:
        os.environ.update(s3.env())
        lat_s3, q_s3 = one(Lake("s3://bench/lake"))
    print(f"\n3. {n} appends of 1,000 rows (ms)          p50      p99   fresh connect+5-min query")
    print(f"   local disk                         {pct(lat_disk, 50):8.1f} {pct(lat_disk, 99):8.1f}   {q_disk * 1000:8.1f}")
    print(f"   S3 (SeaweedFS on loopback)         {pct(lat_s3, 50):8.1f} {pct(lat_s3, 99):8.1f}   {q_s3 * 1000:8.1f}")
    print(f"   ratio S3 / disk                    {pct(lat_s3, 50) / pct(lat_disk, 50):8.2f}x")


def bt_child(mode: str, root: str, days: int) -> None:
    """One backtest in a fresh process (so its peak RSS is its own): JSON on stdout."""
    import json
    import resource

    from lab.backtest import load_events, run_backtest
    from lab.backtest.strategies import MarketMaker
    from lab.distributed import backtest_days

    lake = Lake(root)
    end = DAY0 + dt.timedelta(days=days)
    mm = MarketMaker(interval_s="1")
    t = time.perf_counter()
    if mode == "days":
        res = backtest_days(mm, DAY0, end, lake=lake, out=Path(root).parent / "out")
    else:
        res = run_backtest(mm, load_events(venues=["binance"], symbols=["BTC-USDT"], start=DAY0, end=end, lake=lake))
    wall = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_orders = res.scan_orders().select(pl.len()).collect().item()  # days: the log streamed to disk
    print(json.dumps({"events": res.events, "wall": wall, "engine_s": res.elapsed_s, "fills": res.fills.height,
                      "fills_sum": float(res.fills["qty"].sum()), "orders": n_orders,
                      "fills_hash": int(res.fills.hash_rows().sum()), "rss_mb": rss}))


def bench_long_backtest(days: int, per_day: dt.timedelta) -> None:
    import json
    import subprocess

    from recorders.sim.bulk import write_to_lake

    root = Path(tempfile.mkdtemp(prefix="bench-bt-")) / "lake"
    lake = Lake(root)
    for d in range(days):
        write_to_lake(lake, start=DAY0 + dt.timedelta(days=d, hours=12), duration=per_day,
                      venues=("binance",), assets=("BTC",), seed=d)
    out = {}
    try:
        for mode in ("days", "span"):
            r = subprocess.run([sys.executable, __file__, "--bt-child", mode, str(root), str(days)],
                               capture_output=True, text=True, check=True)
            out[mode] = json.loads(r.stdout.strip().splitlines()[-1])
    finally:
        import shutil

        shutil.rmtree(root.parent, ignore_errors=True)
    same = all(out["days"][k] == out["span"][k] for k in ("fills", "fills_sum", "fills_hash", "orders"))
    print(f"\n4. mm backtest over {days} simulated days x {per_day} of binance BTC-USDT L2 "
          f"({out['span']['events']:,} events)")
    print("   mode               events/s (engine)   wall s   peak RSS MB   fills   order events")
    for mode, label in (("days", "day by day"), ("span", "one span")):
        o = out[mode]
        print(f"   {label:18s} {o['events'] / o['engine_s']:18,.0f} {o['wall']:8.1f} {o['rss_mb']:13.0f} {o['fills']:7d} "
              f"{o['orders']:14,d}")
    print(f"   same fills and order count: {same}")


def bench_day_calls(days: int, per_day: dt.timedelta) -> None:
    """Multi-day callers of map_days vs one pass: micro.summary_days and the arbitrage scan."""
    from lab import micro
    from lab.arbitrage.historical import cross_venue, scan
    from recorders.sim.bulk import write_to_lake

    root = Path(tempfile.mkdtemp(prefix="bench-days-")) / "lake"
    lake = Lake(root)
    for d in range(days):
        write_to_lake(lake, start=DAY0 + dt.timedelta(days=d, hours=12), duration=per_day,
                      venues=("binance", "coinbase"), assets=("BTC", "ETH"), seed=d)
    day = pl.col("ts_exchange").dt.date().alias("day")
    kw = dict(fees=0.0, size=0.01, keep="episodes")

    def best(f, n: int = 3) -> float:
        return min(timed(f)[1] for _ in range(n))

    d1, d2, end = DAY0, DAY0 + dt.timedelta(days=1), DAY0 + dt.timedelta(days=days)
    micro.summary_days(d1, d2, lake=lake), scan(d1, d2, lake=lake, **kw)  # warm (kernel, imports)
    rows = [
        ("micro summary, 1 day", best(lambda: micro.summary_days(d1, d2, lake=lake)),
         best(lambda: micro.summary(lake.scan("trades", start=d1, end=d2).with_columns(day),
                                    lake.scan("quotes", start=d1, end=d2).with_columns(day),
                                    by=("venue", "symbol", "day")).collect())),
        (f"micro summary, {days} days", best(lambda: micro.summary_days(d1, end, lake=lake, cluster="local"), 1),
         best(lambda: micro.summary(lake.scan("trades").with_columns(day), lake.scan("quotes").with_columns(day),
                                    by=("venue", "symbol", "day")).collect(), 1)),
        ("arbitrage scan, 1 day", best(lambda: scan(d1, d2, lake=lake, **kw)),
         best(lambda: cross_venue(lake.scan("quotes").filter(pl.col("ts_local") >= d1, pl.col("ts_local") < d2),
                                  **kw).collect())),
        (f"arbitrage scan, {days} days", best(lambda: scan(d1, end, lake=lake, cluster="local", **kw), 1),
         best(lambda: cross_venue(lake.scan("quotes"), **kw).collect(), 1)),
    ]
    print(f"\n5. multi-day callers ({days} days x {per_day} of 2 venues x 3 symbols), local executor")
    print("   call                               entry point s   one pass s   ratio")
    for name, a, b in rows:
        print(f"   {name:34s} {a:13.3f} {b:12.3f} {a / b:7.2f}")
    import shutil

    shutil.rmtree(root.parent, ignore_errors=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--bt-child":
        bt_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer days and appends (a few minutes)")
    ap.add_argument("--workers", default="1,2", help="cluster sizes to measure, e.g. 1,2,4")
    ap.add_argument("--days", type=int, default=None)
    ap.add_argument("--bt-days", type=int, default=None, help="days of the long backtest (default 3 quick, 30)")
    ap.add_argument("--bt-minutes", type=float, default=None, help="simulated minutes per day of it (2 quick, 10)")
    ap.add_argument("--only", choices=["ray", "s3", "bt", "days"], default=None, help="run one part")
    a = ap.parse_args()
    days = a.days or (3 if a.quick else 7)
    per_day = dt.timedelta(seconds=60 if a.quick else 600)
    appends = 100 if a.quick else 300
    grid = parse_grid("a=1:40:1,b=0:2.4:0.1")
    n_points = 20_000

    if a.only == "bt":
        bench_long_backtest(a.bt_days or (3 if a.quick else 30),
                            dt.timedelta(minutes=a.bt_minutes or (2 if a.quick else 10)))
        return
    if a.only == "s3":
        bench_object_store(appends)
        return
    if a.only == "days":
        bench_day_calls(days, per_day)
        return
    from recorders.sim.bulk import write_to_lake

    tmp = tempfile.mkdtemp(prefix="bench-cluster-")
    lake = Lake(Path(tmp) / "lake")
    t = time.perf_counter()
    for d in range(days):
        write_to_lake(lake, start=DAY0 + dt.timedelta(days=d, hours=12), duration=per_day,
                      venues=("binance", "coinbase"), assets=("BTC", "ETH"), seed=d)
    rows = lake.read("trades").height
    print(f"lake: {days} days x {per_day} of 2 venues x (BTC, ETH, ETH-BTC), {rows:,} trades "
          f"({time.perf_counter() - t:.0f} s to simulate)")
    end = DAY0 + dt.timedelta(days=days)

    sweep(model, grid[:100], splits=[(100,)], chunk_size=10, cluster="local")  # warm, as on Ray
    local_sweep, t_sweep = timed(sweep, model, grid, splits=[(n_points,)], chunk_size=50, cluster="local")
    local_days, t_days = timed(map_days, day_summary, "trades", DAY0, end, lake=lake, cluster="local")
    print(f"\n1. sweep of {len(grid):,} parameter sets, {len(grid) // 50} tasks; "
          f"2. map_days over {local_days.progress.total} (venue, symbol, day) tasks")
    print(f"   {'where':22s} {'sweep s':>8s} {'x local':>8s} {'map_days s':>11s} {'x local':>8s} "
          f"{'overhead/task ms':>17s}")
    print(f"   {'this process':22s} {t_sweep:8.2f} {1.0:8.2f} {t_days:11.2f} {1.0:8.2f} {'-':>17s}")
    import ray

    for w in [int(x) for x in a.workers.split(",") if x]:
        c, t_up = timed(start_cluster, w)
        try:
            sweep(model, grid[:100], splits=[(100,)], chunk_size=10, cluster="ray")  # warm the workers
            from lab.distributed import RayExecutor

            _, t_noop = timed(RayExecutor().run, noop, [(i,) for i in range(200)])
            res, t_r = timed(sweep, model, grid, splits=[(n_points,)], chunk_size=50, cluster="ray")
            job, t_rd = timed(map_days, day_summary, "trades", DAY0, end, lake=lake, cluster="ray")
            assert res.frame.equals(local_sweep.frame), "ray sweep differs from local"
            assert job.frame.equals(local_days.frame), "ray map_days differs from local"
            print(f"   {f'ray, {w} worker(s)':22s} {t_r:8.2f} {t_sweep / t_r:8.2f} {t_rd:11.2f} {t_days / t_rd:8.2f} "
                  f"{t_noop / 200 * 1000:17.2f}   (cluster start {t_up:.0f} s)")
        finally:
            ray.shutdown()
            c.shutdown()
    bench_object_store(appends)
    bench_long_backtest(a.bt_days or (3 if a.quick else 30),
                        dt.timedelta(minutes=a.bt_minutes or (2 if a.quick else 10)))
    bench_day_calls(days, per_day)


if __name__ == "__main__":
    main()
