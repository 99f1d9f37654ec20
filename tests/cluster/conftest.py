"""Fixtures of the scale-out tests: a 3-day simulated lake and a small Ray cluster on this machine."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

DAY0 = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)
VENUES = ("binance", "coinbase")
ASSETS = ("BTC", "ETH")


@pytest.fixture(scope="session")
def lake3_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three UTC days of simulated data (30 s at noon each day, 2 venues x 2 assets), one commit per day."""
    from lab.lake import Lake
    from recorders.sim.bulk import write_to_lake

    root = tmp_path_factory.mktemp("lake3") / "lake"
    lake = Lake(root)
    for d in range(3):
        write_to_lake(lake, start=DAY0 + dt.timedelta(days=d, hours=12), duration=dt.timedelta(seconds=30),
                      venues=VENUES, assets=ASSETS, seed=d)
    return root


@pytest.fixture
def lake3(lake3_master: Path, tmp_path: Path):
    """A private copy of the 3-day lake (tests may commit to it)."""
    from lab.lake import Lake

    root = tmp_path / "lake"
    shutil.copytree(lake3_master, root)
    return Lake(root)


def start_cluster(workers: int, *, head_cpus: int = 0, attempts: int = 3):
    """``ray.cluster_utils.Cluster``: a head (no CPUs: tasks go to workers) + ``workers`` 1-CPU nodes.

    On a loaded machine a raylet can give up waiting (~15 s, not configurable) for its
    node's Python agent to start; that start is retried on a fresh cluster.
    """
    import ray
    from ray.cluster_utils import Cluster

    mem = 80 * 1024 * 1024
    for attempt in range(attempts):
        c = None
        try:
            c = Cluster(initialize_head=True, head_node_args={"num_cpus": head_cpus, "include_dashboard": False,
                                                              "object_store_memory": mem})
            nodes = [c.add_node(num_cpus=1, object_store_memory=mem) for _ in range(workers)]
            c.wait_for_nodes()
            ray.init(address=c.address, logging_level="WARNING", log_to_driver=False)
            return c, nodes
        except Exception:
            if c is not None:
                c.shutdown()
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def stop_cluster(c) -> None:
    import ray

    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def s3():
    """A local SeaweedFS S3 server with a bucket ``lake`` (one per test module)."""
    from lab.objectstore import LocalS3

    with LocalS3(bucket="lake") as server:
        yield server


@pytest.fixture
def s3_env(s3, monkeypatch):
    """:func:`s3`, with its credentials and endpoint in the environment."""
    for k, v in s3.env().items():
        monkeypatch.setenv(k, v)
    return s3
