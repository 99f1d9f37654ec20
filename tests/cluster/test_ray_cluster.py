"""lab.distributed on a real Ray cluster on this machine (``ray.cluster_utils.Cluster``).

The in-suite test shares one small cluster (a head without CPUs + 2 one-CPU
workers, ~25 s to start here); the 1 head + 3 workers runs with a worker
killed mid-job are marked ``slow``.
"""

from __future__ import annotations

import datetime as dt
import functools
import sys
import threading
import time

import numpy as np
import polars as pl
import pytest
import ray.cloudpickle
from polars.testing import assert_frame_equal

from lab.distributed import RayExecutor, map_days, parse_grid, sweep
from tests.cluster.conftest import DAY0, start_cluster, stop_cluster

END = DAY0 + dt.timedelta(days=3)

# Ray workers cannot import this test module: ship its functions by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def cheap_model(p: dict, n: int) -> dict:
    """A numpy stand-in for one backtest: a deterministic function of the parameters."""
    x = np.linspace(0.0, 1.0, n)
    y = np.sin(p["a"] * x) * np.exp(-p["b"] * x)
    return {"mean": float(y.mean()), "last": float(y[-1])}


def slow_metric(lf: pl.LazyFrame, pause: float = 0.0) -> pl.DataFrame:
    time.sleep(pause)  # stretch the job so commits or a node kill land while it runs
    return lf.select(pl.len().alias("n"), pl.col("qty").sum().alias("volume"),
                     ((pl.col("price") * pl.col("qty")).sum() / pl.col("qty").sum()).alias("vwap")).collect()


GRID = parse_grid("a=1:40:1,b=0:2.4:0.1")  # 40 x 25 = 1,000 parameter sets


def _mm_sweep(lake, cluster):
    """One real backtest chunk per day: 4 mm parameter sets over the 3 days, via the CLI's task."""
    from lab.apps._sweep import run_one
    from lab.backtest import BacktestConfig
    from lab.distributed import day_splits, pin_versions

    tables = ("book_updates", "trades")
    versions = pin_versions(tables, lake)
    fn = functools.partial(run_one, strategy="mm", base={}, config=BacktestConfig(),
                           locs=tuple((t, (str(lake.path(t)), None)) for t in tables),
                           versions=tuple(sorted(versions.items())), use_quotes=False, capital=10_000.0)
    splits = [(lo, hi) for _, lo, hi in day_splits(DAY0, END)]
    job = sweep(fn, parse_grid("half_spread=0:1:1,skew_ticks=0|1"), splits=splits, chunk_size=2, cluster=cluster)
    return job.frame.select("half_spread", "skew_ticks", "split", "pnl", "n_fills", "events").sort(
        "half_spread", "skew_ticks", "split")


@pytest.fixture(scope="module")
def small_cluster():
    c, nodes = start_cluster(2)
    yield c
    stop_cluster(c)


def test_ray_jobs_equal_local_runs_and_ignore_commits_made_while_running(small_cluster, lake3):
    assert isinstance(RayExecutor(), RayExecutor)
    # 1,000-parameter sweep
    local = sweep(cheap_model, GRID, splits=[(2_000,)], chunk_size=50, cluster="local")
    remote = sweep(cheap_model, GRID, splits=[(2_000,)], chunk_size=50, cluster="ray")
    assert remote.executor == "ray" and remote.progress.done == 20 and remote.failures == []
    assert_frame_equal(remote.frame, local.frame)
    assert local.frame.height == 1_000

    # one real backtest chunk per day
    assert_frame_equal(_mm_sweep(lake3, "ray"), _mm_sweep(lake3, "local"))

    # per-(venue, symbol, day) metric while another process commits to the table
    v0 = lake3.version("trades")
    local_v0 = map_days(slow_metric, "trades", DAY0, END, lake=lake3, cluster="local")
    extra = lake3.read("trades").head(50)
    box: dict = {}
    t = threading.Thread(target=lambda: box.update(job=map_days(
        functools.partial(slow_metric, pause=0.3), "trades", DAY0, END, lake=lake3, cluster="ray")))
    t.start()
    commits = 0
    while t.is_alive() and commits < 5:
        lake3.append("trades", extra.with_columns(pl.col("trade_id") + f"-late{commits}"))
        commits += 1
        time.sleep(0.2)
    t.join()
    job = box["job"]
    assert commits >= 1 and lake3.version("trades") == v0 + commits
    assert job.versions == {"trades": v0} and job.executor == "ray"
    assert_frame_equal(job.frame, local_v0.frame)
    latest = map_days(slow_metric, "trades", DAY0, END, lake=lake3, cluster="local")
    assert latest.frame["n"].sum() == local_v0.frame["n"].sum() + 50 * commits


def test_summary_days_and_the_arbitrage_scan_on_ray_equal_local_runs(small_cluster, lake3):
    from lab import micro
    from lab.arbitrage.historical import scan

    remote = micro.summary_days(DAY0, END, lake=lake3, cluster="ray")
    assert_frame_equal(remote, micro.summary_days(DAY0, END, lake=lake3, cluster="local"))
    assert remote.height == 2 * 3 * 3
    kw = dict(fees=0.0, size=0.01, keep="episodes")
    assert_frame_equal(scan(DAY0, END, lake=lake3, cluster="ray", **kw),
                       scan(DAY0, END, lake=lake3, cluster="local", **kw))


def _kill_when(c, node, pr, at: int, box: dict):
    """Once ``at`` tasks are done: SIGKILL the node's worker processes and remove the node at once."""
    if pr.done >= at and "killed" not in box:
        import os
        import signal

        import psutil

        box["killed"] = True
        raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
        workers = [p for p in raylet.children(recursive=True) if p.name().startswith("ray::")]
        c.remove_node(node, allow_graceful=False)
        for p in workers:  # a task running there dies with its worker (no result sent back)
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        box["workers_killed"] = len(workers)


@pytest.mark.slow
def test_killing_a_worker_mid_sweep_still_completes_with_equal_results(lake3):
    local = sweep(cheap_model, GRID, splits=[(200_000,)], chunk_size=25, cluster="local")
    c, nodes = start_cluster(3)
    try:
        box: dict = {}
        job = sweep(cheap_model, GRID, splits=[(200_000,)], chunk_size=25, cluster="ray",
                    progress=lambda pr: _kill_when(c, nodes[0], pr, 6, box))
        assert box.get("killed")
        assert job.failures == [] and job.progress.done == 40
        assert_frame_equal(job.frame, local.frame)
        print("retried after the kill:", job.progress.retried)
    finally:
        stop_cluster(c)


@pytest.mark.slow
def test_killing_a_worker_mid_map_days_still_completes_with_equal_results(lake3):
    local = map_days(slow_metric, "trades", DAY0, END, lake=lake3, cluster="local")
    c, nodes = start_cluster(3)
    try:
        box: dict = {}
        job = map_days(functools.partial(slow_metric, pause=1.0), "trades", DAY0, END, lake=lake3, cluster="ray",
                       progress=lambda pr: _kill_when(c, nodes[1], pr, 3, box))
        assert box.get("killed")
        assert job.failures == [] and job.progress.done == 18
        assert job.progress.retried >= 1  # the killed node was running a 1 s task
        assert_frame_equal(job.frame, local.frame)
    finally:
        stop_cluster(c)
