"""``lab cluster up|down|status``: a local Ray cluster for sweeps and per-day jobs, or join one.

Examples::

    lab cluster up --workers 2             # head + 2 worker nodes on this machine (127.0.0.1)
    lab cluster status                      # nodes, CPUs, memory, object store
    lab backtest mm --start ... --end ... --sweep half_spread=0:4:1 --cluster auto
    lab cluster down                        # stops the nodes this command started (by pid)
    lab cluster up --address ray://head.example:10001    # use a remote cluster (KubeRay, ...)

The cluster's address is recorded in ``$LAB_DATA/run/ray-cluster.json``;
``lab.distributed`` (``--cluster auto``) uses it, or ``$LAB_RAY_ADDRESS`` which wins.
Each node runs ``ray start --block`` in its own process group, so ``down``
stops exactly those processes and nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from lab.distributed import cluster_file, ray_address
from lab.errors import ConfigError, ServiceError

HELP = "start, stop or inspect a Ray cluster for distributed jobs (lab.distributed)"

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["up", "down", "status"], help="up: start or join; down: stop; status: nodes")
    p.add_argument("--workers", type=int, default=1, help="worker nodes to start besides the head (up)")
    p.add_argument("--num-cpus", type=int, default=1, help="CPUs each node offers to tasks (head: --head-cpus)")
    p.add_argument("--head-cpus", type=int, default=0, help="CPUs the head node offers (0: it only schedules)")
    p.add_argument("--port", type=int, default=6379, help="GCS port of the head (up)")
    p.add_argument("--client-port", type=int, default=10001, help="Ray Client port (ray://127.0.0.1:PORT)")
    p.add_argument("--object-store-mb", type=int, default=256, help="object store memory per node, MB")
    p.add_argument("--address", default=None,
                   help="join this cluster instead of starting one (ray://host:10001 or host:6379); "
                   "default $LAB_RAY_ADDRESS when set")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the nodes to register")


def _ray_bin() -> str:
    exe = Path(sys.executable).with_name("ray")
    if exe.is_file():
        return str(exe)
    found = shutil.which("ray")
    if not found:
        raise ServiceError("the `ray` command is not installed (pip install 'ray[data]')")
    return found


def _alive(pid: int) -> bool:
    return pid > 0 and psutil.pid_exists(pid)


def _read_state() -> dict | None:
    f = cluster_file()
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except ValueError:
        return None


def _nodes(address: str, timeout: float) -> list[dict]:
    import logging

    import ray

    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ServiceError(f"cannot reach the Ray cluster at {address}: {e}") from e
    try:
        return [n for n in ray.nodes() if n.get("Alive")]
    finally:
        ray.shutdown()


def _spawn(cmd: list[str], log: Path) -> int:
    """Start one ``ray start --block`` in its own session (process group); its pid."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    with open(log, "ab") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, env=env)
    return p.pid


def _wait_head(ray: str, gcs: str, pid: int, deadline: float) -> bool:
    """True once the head's GCS answers; False if the head process exited or time ran out."""
    while time.monotonic() < deadline:
        if not _alive(pid):
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            return False
        try:
            if subprocess.run([ray, "health-check", f"--address={gcs}"], capture_output=True,
                              timeout=15).returncode == 0:
                return True
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.5)
    return False


def _up(a: argparse.Namespace) -> int:
    addr = a.address or os.environ.get("LAB_RAY_ADDRESS")
    state = _read_state()
    if state and state.get("pids") and any(_alive(p) for p in state["pids"]):
        raise ConfigError(f"a cluster started by `lab cluster up` is running ({state['address']}); "
                          "`lab cluster down` first")
    f = cluster_file()
    f.parent.mkdir(parents=True, exist_ok=True)
    if addr:
        nodes = _nodes(addr, a.timeout)
        f.write_text(json.dumps({"address": addr, "pids": [], "joined": True}))
        print(f"joined {addr}: {len(nodes)} node(s); recorded in {f}")
        return 0
    if a.workers < 0 or a.num_cpus < 1 or a.head_cpus < 0:
        raise ConfigError("--workers must be >= 0, --num-cpus >= 1, --head-cpus >= 0")
    ray = _ray_bin()
    gcs = f"127.0.0.1:{a.port}"
    mem = str(a.object_store_mb * 1024 * 1024)
    log = f.parent / "ray-cluster.log"
    common = ["--node-ip-address=127.0.0.1", f"--object-store-memory={mem}", "--disable-usage-stats", "--block"]
    head = [ray, "start", "--head", f"--port={a.port}", f"--num-cpus={a.head_cpus}", "--include-dashboard=false",
            f"--ray-client-server-port={a.client_port}", *common]
    deadline = time.monotonic() + a.timeout
    pids: list[int] = []
    # on a loaded machine a raylet can give up waiting for its agents and the head exits: start it again
    for attempt in range(3):
        pids = [_spawn(head, log)]
        f.write_text(json.dumps({"address": gcs, "client": f"ray://127.0.0.1:{a.client_port}", "pids": pids}))
        if _wait_head(ray, gcs, pids[0], deadline):
            break
        if _alive(pids[0]):  # timed out but running: stop it (its process group) before giving up
            os.killpg(pids[0], signal.SIGKILL)
        if attempt == 2 or time.monotonic() > deadline:
            f.unlink(missing_ok=True)
            raise ServiceError(f"the Ray head did not start within {a.timeout:.0f} s; see {log}")
    worker = [ray, "start", f"--address={gcs}", f"--num-cpus={a.num_cpus}", *common]
    for _ in range(a.workers):
        pids.append(_spawn(worker, log))
    f.write_text(json.dumps({"address": gcs, "client": f"ray://127.0.0.1:{a.client_port}", "pids": pids}))
    want = 1 + a.workers
    n = 0
    while True:
        try:
            n = len(_nodes(gcs, a.timeout))
        except ServiceError:  # the head's own raylet may still be registering
            n = 0
        if n >= want:
            break
        for k in range(1, len(pids)):  # a worker node that exited during start is started again
            if not _alive(pids[k]):
                pids[k] = _spawn(worker, log)
                f.write_text(json.dumps({"address": gcs, "client": f"ray://127.0.0.1:{a.client_port}", "pids": pids}))
        if time.monotonic() > deadline:
            raise ServiceError(f"only {n} of {want} Ray nodes registered within {a.timeout:.0f} s; see {log}")
        time.sleep(1.0)
    print(f"Ray cluster up: head {gcs} + {a.workers} worker(s) x {a.num_cpus} CPU; "
          f"client ray://127.0.0.1:{a.client_port}; `lab cluster down` stops it")
    return 0


def _down(a: argparse.Namespace) -> int:
    state = _read_state()
    f = cluster_file()
    if not state:
        print("no cluster recorded (nothing to stop)")
        return 0
    pids = [p for p in state.get("pids", []) if _alive(p)]
    # workers first, then the head: each is the leader of its own process group
    for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        for pid in reversed(pids):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                pass
        end = time.monotonic() + wait
        while time.monotonic() < end and any(_alive(p) for p in pids):
            time.sleep(0.2)
            for p in pids:  # reap our children when `up` ran in this process (tests)
                try:
                    os.waitpid(p, os.WNOHANG)
                except ChildProcessError:
                    pass
        pids = [p for p in pids if _alive(p)]
        if not pids:
            break
    f.unlink(missing_ok=True)
    if state.get("joined"):
        print(f"forgot {state['address']} (a cluster this machine joined; it keeps running)")
    else:
        print(f"Ray cluster at {state['address']} stopped")
    return 0


def _status(a: argparse.Namespace) -> int:
    addr = a.address or ray_address()
    if addr is None:
        print("no Ray cluster configured: jobs run locally (`lab cluster up` starts one)")
        return 0
    nodes = _nodes(addr, a.timeout)
    total: dict[str, float] = {}
    print(f"Ray cluster {addr}: {len(nodes)} node(s)")
    for n in nodes:
        r = n.get("Resources", {})
        for k, v in r.items():
            if not k.startswith("node:"):
                total[k] = total.get(k, 0.0) + v
        kind = "head" if r.get("node:__internal_head__") else "worker"
        print(f"  {kind:6s} {n.get('NodeManagerAddress')}  CPU {r.get('CPU', 0):g}  "
              f"memory {r.get('memory', 0) / 2**30:.1f} GiB  object store {r.get('object_store_memory', 0) / 2**20:.0f} MiB")
    print(f"  total  CPU {total.get('CPU', 0):g}  memory {total.get('memory', 0) / 2**30:.1f} GiB")
    return 0


def run(a: argparse.Namespace) -> int:
    return {"up": _up, "down": _down, "status": _status}[a.action](a)
