"""``lab cluster up|status|down`` with real ``ray start`` processes (slow: ~1 min to start here)."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys

import polars as pl
import pytest
import ray.cloudpickle
from polars.testing import assert_frame_equal

from lab.cli import main
from lab.distributed import RayExecutor, cluster_file, executor, map_days
from recorders.sim.harness import free_port
from tests.cluster.conftest import DAY0

# Ray workers cannot import this test module: ship its functions by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def metric(lf: pl.LazyFrame) -> pl.LazyFrame:
    return lf.select(pl.len().alias("n"), pl.col("qty").sum().alias("volume"))


@pytest.mark.slow
def test_cluster_up_status_auto_and_down(lab_data, lake3, capsys, monkeypatch):
    import ray

    monkeypatch.delenv("LAB_RAY_ADDRESS", raising=False)
    assert main(["cluster", "up", "--workers", "1", "--port", str(free_port()),
                 "--client-port", str(free_port()), "--object-store-mb", "100"]) == 0
    state = json.loads(cluster_file().read_text())
    try:
        assert len(state["pids"]) == 2 and all(_alive(p) for p in state["pids"])
        assert main(["cluster", "status"]) == 0
        assert "2 node(s)" in capsys.readouterr().out

        ex = executor("auto")  # the recorded cluster
        assert isinstance(ex, RayExecutor) and ex.address == state["address"]
        remote = map_days(metric, "trades", DAY0, DAY0 + dt.timedelta(days=3), lake=lake3, cluster="auto")
        ray.shutdown()
        local = map_days(metric, "trades", DAY0, DAY0 + dt.timedelta(days=3), lake=lake3, cluster="local")
        assert remote.executor == "ray" and remote.failures == []
        assert_frame_equal(remote.frame, local.frame)
    finally:
        ray.shutdown()
        assert main(["cluster", "down"]) == 0
    assert not any(_alive(p) for p in state["pids"])
    assert not cluster_file().exists()
    assert main(["cluster", "status"]) == 0
    assert "jobs run locally" in capsys.readouterr().out


def test_cluster_down_without_a_cluster_is_a_no_op(lab_data, capsys):
    assert main(["cluster", "down"]) == 0
    assert "nothing to stop" in capsys.readouterr().out
