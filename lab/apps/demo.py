"""``lab demo``: start every service of the lab on this machine, stop them all cleanly.

Foreground by default (Ctrl-C stops everything); ``--background`` detaches
and ``lab demo --stop`` (or ``make stop``) stops a background demo. Each
service's output goes to ``$LAB_DATA/logs/<name>.log``; the running set is
recorded in ``$LAB_DATA/run/demo.json``. Services whose part of the lab is
not installed are skipped with a note, so the demo grows as the lab does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgspec

from lab.apps._project import project_dir
from lab.lake import Lake, data_dir

HELP = "start every service for a local demo"
WRITES_DATA = True  # lake, logs and run files under $LAB_DATA (see lab.cli)

BIN = Path(sys.executable).parent


class Service(msgspec.Struct):
    name: str
    argv: list[str]
    needs: str | None = None  # module (or file under the repo) that must exist
    port: int | None = None  # ready when this TCP port accepts
    url: str | None = None


def _lab(*args: str) -> list[str]:
    return [str(BIN / "lab"), *args]


def services(a: argparse.Namespace, token: str) -> list[Service]:
    ROOT = project_dir()
    bus = f"ws://127.0.0.1:{a.bus_port}"
    out = [
        Service("simulator", _lab("simulate", "--venues", "binance,coinbase,kraken",
                                  "--assets", "BTC,ETH,SOL", "--faults", "gentle",
                                  "--seed", str(a.seed)),
                needs="lab.apps.simulate", port=9443),
        # The recorder hosts the live bus hub (--bus-serve) and publishes to it.
        Service("recorder", _lab("record", "--config", str(ROOT / "recorders" / "demo.toml"),
                                 "--bus", bus, "--bus-serve"),
                needs="lab.apps.record", port=a.bus_port),
        Service("maintainer", _lab("maintain", "--every", "30"), needs="lab.apps.maintain"),
        Service("arbitrage", _lab("arbitrage", "--bus", bus, "--config",
                                  str(ROOT / "config" / "arbitrage.demo.toml")), needs="lab.apps.arbitrage"),
        Service("paper", _lab("paper", "mm", "-p", "venue=binance", "-p", "symbol=BTC-USDT",
                              "--fee", "binance=-0.0001,0.0005", "--bus", bus), needs="lab.apps.paper"),
        Service("risk", _lab("risk", "--bus", bus), needs="lab.apps.risk"),
    ]
    if not a.no_jupyter:
        out.append(Service(
            "jupyter",
            [str(BIN / "jupyter"), "lab", "--ip", "127.0.0.1", "--port", str(a.jupyter_port),
             "--no-browser", "--allow-root", f"--ServerApp.root_dir={ROOT / 'notebooks'}",
             f"--IdentityProvider.token={token}"],
            needs="jupyterlab", port=a.jupyter_port,
            url=f"http://127.0.0.1:{a.jupyter_port}/lab?token={token}"))
    if not a.no_streamlit:
        out.append(Service(
            "streamlit",
            [str(BIN / "streamlit"), "run", str(ROOT / "streamlit_apps" / "app.py"),
             "--server.address", "127.0.0.1", "--server.port", str(a.streamlit_port),
             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            needs="streamlit_apps/app.py", port=a.streamlit_port,
            url=f"http://127.0.0.1:{a.streamlit_port}"))
    return out


def _available(s: Service) -> bool:
    if s.needs is None:
        return True
    if "/" in s.needs:
        return (project_dir() / s.needs).exists()
    try:
        return importlib.util.find_spec(s.needs) is not None
    except ModuleNotFoundError:
        return False


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _run_dir() -> Path:
    d = data_dir().resolve() / "run"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _token() -> str:
    env = os.environ.get("LAB_JUPYTER_TOKEN")
    if env:
        return env
    f = _run_dir() / "jupyter_token"
    if not f.exists():
        f.write_text(secrets.token_hex(24))
        f.chmod(0o600)
    return f.read_text().strip()


def _stop_pids(pids: dict[str, int], timeout: float = 15.0) -> None:
    for name, pid in reversed(list(pids.items())):
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.time() + timeout
    for name, pid in reversed(list(pids.items())):
        while time.time() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            try:
                os.killpg(pid, signal.SIGKILL)
                print(f"  {name}: killed after {timeout:.0f} s", flush=True)
            except ProcessLookupError:
                pass


def _seed_history(minutes: int, seed: int) -> None:
    lake = Lake()
    if minutes <= 0 or lake.exists("trades") or importlib.util.find_spec("recorders.sim.bulk") is None:
        return
    from recorders.sim.bulk import write_to_lake

    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    print(f"seeding {minutes} minutes of simulated history into {lake.root} ...", flush=True)
    # Another seed than the live simulator's: its trade ids must not collide with
    # the live ones (the recorder drops trade ids it has already stored).
    write_to_lake(lake, start=now - dt.timedelta(minutes=minutes),
                  duration=dt.timedelta(minutes=minutes), seed=seed + 1, progress=True)


def supervise(a: argparse.Namespace) -> int:
    if a.seed is None:
        a.seed = int(time.time()) % 1_000_000
    run = _run_dir()
    logs = data_dir().resolve() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    state_file = run / "demo.json"
    if state_file.exists():
        old = json.loads(state_file.read_text())
        try:
            os.kill(old["supervisor"], 0)
            print(f"a demo is already running (pid {old['supervisor']}); `make stop` stops it",
                  file=sys.stderr)
            return 1
        except ProcessLookupError:
            _stop_pids(old.get("services", {}), timeout=5)
    token = _token()
    env = {**os.environ, "LAB_DATA": str(data_dir().resolve()), "PYTHONUNBUFFERED": "1"}
    _seed_history(a.history_minutes, a.seed)
    started: dict[str, int] = {}
    procs: dict[str, subprocess.Popen] = {}
    stopping = False

    def on_signal(signum, frame):  # noqa: ARG001
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    svcs = services(a, token)
    try:
        for s in svcs:
            if not _available(s):
                print(f"  {s.name:<11} skipped (not in this version yet)", flush=True)
                continue
            if s.port and _port_open(s.port):
                print(f"  {s.name:<11} port {s.port} is already in use: stop what holds it "
                      f"or pass another port", file=sys.stderr, flush=True)
                stopping = True
                break
            log = open(logs / f"{s.name}.log", "ab")
            p = subprocess.Popen(s.argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                 cwd=str(project_dir()), start_new_session=True)
            procs[s.name], started[s.name] = p, p.pid
            state_file.write_text(json.dumps({"supervisor": os.getpid(), "services": started}))
            if s.port:
                deadline = time.time() + 60
                while not _port_open(s.port) and p.poll() is None and time.time() < deadline:
                    time.sleep(0.2)
            ok = p.poll() is None
            print(f"  {s.name:<11} {'started' if ok else 'FAILED'} (pid {p.pid}, log {logs / (s.name + '.log')})",
                  flush=True)
        if not stopping:
            print("\nHFThot Research Lab demo is running:", flush=True)
            for s in svcs:
                if s.url and s.name in procs:
                    print(f"  {s.name:<11} {s.url}", flush=True)
            print(f"  data        {data_dir().resolve()}  (lab status: recorder health)", flush=True)
            print("Ctrl-C (or `make stop`) stops everything.\n", flush=True)
            (run / "demo.ready").write_text(json.dumps({s.name: s.url for s in svcs if s.url and s.name in procs}))
        while not stopping:
            for name, p in procs.items():
                if p.poll() is not None and not getattr(p, "_reported", False):
                    p._reported = True  # type: ignore[attr-defined]
                    print(f"  {name} exited with {p.returncode}; see {logs / (name + '.log')}", flush=True)
            time.sleep(0.5)
    finally:
        print("stopping the demo ...", flush=True)
        _stop_pids(started)
        state_file.unlink(missing_ok=True)
        (run / "demo.ready").unlink(missing_ok=True)
        print("stopped.", flush=True)
    return 0


def stop() -> int:
    f = _run_dir() / "demo.json"
    if not f.exists():
        print("no demo is running")
        return 0
    st = json.loads(f.read_text())
    try:
        os.kill(st["supervisor"], signal.SIGTERM)
        deadline = time.time() + 30
        while f.exists() and time.time() < deadline:
            time.sleep(0.2)
    except ProcessLookupError:
        pass
    if f.exists():  # supervisor gone or stuck: stop the services ourselves
        _stop_pids(st.get("services", {}))
        f.unlink(missing_ok=True)
    print("demo stopped")
    return 0


def background(argv: list[str]) -> int:
    logs = data_dir().resolve() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    ready = _run_dir() / "demo.ready"
    ready.unlink(missing_ok=True)
    log = open(logs / "demo.log", "ab")
    p = subprocess.Popen([str(BIN / "lab"), "demo", *argv], stdout=log, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not ready.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.3)
    if not ready.exists():
        print(f"the demo did not come up; see {logs / 'demo.log'}", file=sys.stderr)
        return 1
    print("HFThot Research Lab demo is running in the background:")
    for name, url in json.loads(ready.read_text()).items():
        print(f"  {name:<11} {url}")
    print(f"  logs        {logs}\n`make stop` stops it.")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--background", action="store_true", help="detach; `lab demo --stop` stops it")
    p.add_argument("--stop", action="store_true", help="stop a demo running in the background")
    p.add_argument("--seed", type=int, default=None,
                   help="simulator seed (default: a new one each run, so trade ids never repeat "
                        "those already in the lake, as on a real venue)")
    p.add_argument("--history-minutes", type=int, default=60,
                   help="on an empty lake, first write this much simulated history (0: none)")
    p.add_argument("--no-jupyter", action="store_true", help="do not start Jupyter Lab")
    p.add_argument("--no-streamlit", action="store_true", help="do not start Streamlit")
    p.add_argument("--jupyter-port", type=int, default=8888)
    p.add_argument("--streamlit-port", type=int, default=8501)
    p.add_argument("--bus-port", type=int, default=50052)


def run(a: argparse.Namespace) -> int:
    if a.stop:
        return stop()
    if a.background:
        argv = [x for x in sys.argv[2:] if x != "--background"]
        return background(argv)
    if shutil.which("lab") is None and not (BIN / "lab").exists():
        print("the `lab` script is not installed; run `make setup`", file=sys.stderr)
        return 1
    return supervise(a)
