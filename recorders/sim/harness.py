"""The simulator and a recorder as subprocesses on free loopback ports, for the tests and
the benches (which must not import from tests/): free ports, and :class:`Recording`.

``Recording`` starts ``lab simulate`` on free loopback ports and one ``lab record``
process recording its venues into ``$LAB_DATA/lake``, and stops both (by their own
process ids) on exit.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["DEMO_PORTS", "free_port", "free_port_base", "Recording"]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
QUOTE = {"binance": "USDT", "coinbase": "USD", "kraken": "USD", "okx": "USDT", "bybit": "USDT"}
# the demo's default ports (Jupyter, Streamlit, the service, the bus, the simulator's venues):
# a test or bench on this machine never takes one, so a running demo is left alone
DEMO_PORTS = frozenset({8888, 8501, 50052, 50053, *range(9443, 9448)})


def free_port() -> int:
    """A free port on 127.0.0.1 (the OS's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_base(n: int) -> int:
    """A port ``p`` such that ``p .. p+n-1`` are all free on 127.0.0.1 and none is one of
    :data:`DEMO_PORTS` (the simulator serves venue ``i`` on ``port_base + i``).

    >>> p = free_port_base(3)
    >>> 1024 < p and p + 2 < 65536 and not DEMO_PORTS & set(range(p, p + 3))
    True
    """
    for _ in range(200):
        base = free_port()
        if base + n > 65535 or DEMO_PORTS & set(range(base, base + n)):
            continue
        socks = []
        try:
            for i in range(n):
                t = socket.socket()
                socks.append(t)
                t.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for t in socks:
                t.close()
    raise RuntimeError("no run of free ports")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _stop(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


class Recording:
    """Simulator + recorder subprocesses writing into ``lab_data/lake``."""

    def __init__(self, lab_data: Path, *, venues: tuple[str, ...] = ("binance", "coinbase", "kraken"),
                 assets: tuple[str, ...] = ("BTC", "ETH", "SOL"), seed: int = 0, faults: str = "off",
                 flush_interval: float = 0.5, record_args: tuple[str, ...] = ()) -> None:
        self.lab_data = Path(lab_data)
        self.record_args = record_args  # more ``lab record`` arguments, e.g. ("--bus", url, "--bus-serve")
        self.venues, self.assets, self.seed, self.faults = venues, assets, seed, faults
        self.flush_interval = flush_interval
        self.procs: list[subprocess.Popen] = []
        self.port_base = 0

    @property
    def lake_root(self) -> Path:
        return self.lab_data / "lake"

    def _config(self) -> Path:
        from lab.venues import sim_urls

        lines = ['[recorder]', 'name = "st-test"', f"flush_interval = {self.flush_interval}",
                 f'lake = "{self.lake_root}"', ""]
        for v in self.venues:
            ws, rest = sim_urls(v, self.port_base)
            syms = ", ".join(f'"{a}-{QUOTE[v]}"' for a in self.assets)
            lines += ["[[venue]]", f'venue = "{v}"', f"symbols = [{syms}]", f'base_url = "{ws}"']
            if rest:
                lines.append(f'rest_url = "{rest}"')
            lines.append("")
        p = self.lab_data / "recorder.toml"
        p.write_text("\n".join(lines))
        return p

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.lab_data / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        env = os.environ | {"LAB_DATA": str(self.lab_data), "PYTHONUNBUFFERED": "1"}
        p = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def log(self, name: str) -> str:
        f = self.lab_data / f"{name}.log"
        return f.read_text()[-3000:] if f.exists() else ""

    def __enter__(self) -> Recording:
        self.lab_data.mkdir(parents=True, exist_ok=True)
        self.port_base = free_port_base(5)  # the simulator uses base+0..4
        sim = self._spawn("simulator", [str(BIN / "lab"), "simulate", "--port-base", str(self.port_base),
                                        "--venues", ",".join(self.venues), "--assets", ",".join(self.assets),
                                        "--seed", str(self.seed), "--faults", self.faults])
        deadline = time.monotonic() + 90
        while not all(_port_open(self.port_base + i) for i in range(len(self.venues))):
            if sim.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"simulator did not start:\n{self.log('simulator')}")
            time.sleep(0.2)
        self._spawn("recorder", [str(BIN / "lab"), "record", "--config", str(self._config()), *self.record_args])
        return self

    def wait_rows(self, table: str = "quotes", venues: int | None = None, timeout: float = 120.0) -> None:
        """Block until ``table`` has rows from ``venues`` venues (default: all)."""
        import polars as pl

        from lab.lake import Lake

        want = venues or len(self.venues)
        lake = Lake(self.lake_root)
        deadline = time.monotonic() + timeout
        last_err: Exception | None = None
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"a process died:\nrecorder: {self.log('recorder')}\n"
                                   f"simulator: {self.log('simulator')}")
            if lake.exists(table):
                try:
                    n = lake.scan(table).select(pl.col("venue").n_unique()).collect().item()
                except Exception as e:  # noqa: BLE001 - a commit in flight; look again
                    last_err, n = e, 0
                if n >= want:
                    return
            time.sleep(0.5)
        raise TimeoutError(f"no {table} rows from {want} venues after {timeout} s (last error: {last_err!r}):\n"
                           f"{self.log('recorder')}")

    def __exit__(self, *exc: object) -> None:
        for p in reversed(self.procs):  # signal every process first, then wait: they stop in parallel
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in reversed(self.procs):
            _stop(p)
        self.procs.clear()
