"""Helpers for recorder tests against the simulator: start it, write a recorder
config for it, run ``lab record`` in a subprocess, read the ground truth."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from recorders.sim.truth import book_mismatches, iso_us, read_truth, replay_book, windows  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = {"binance": ["BTC-USDT", "ETH-USDT"], "coinbase": ["BTC-USD", "ETH-USD"],
           "kraken": ["BTC-USD", "ETH-USD"], "okx": ["BTC-USDT", "ETH-USDT"],
           "bybit": ["BTC-USDT", "ETH-USDT"]}


def sim_venues() -> tuple[str, ...]:
    from recorders.sim.server import ENCODERS

    return tuple(v for v in ("binance", "coinbase", "kraken", "okx", "bybit") if v in ENCODERS)


def write_config(path: Path, urls: dict[str, str], venues, lake: Path, name: str, **rec) -> Path:
    from recorders.config import write_config as _write

    return _write(path, urls, {v: SYMBOLS[v] for v in venues}, lake, name, **rec)


def start_recorder(config: Path, *extra: str, log: Path | None = None,
                   env: dict[str, str] | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    out = open(log, "ab") if log else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "lab.cli", "record", "--config", str(config), *extra],
                            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_for(pred, timeout: float = 60.0, every: float = 0.2, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
