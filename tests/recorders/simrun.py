"""Helpers for recorder tests against the simulator: start it, write a recorder
config for it, run ``lab record`` in a subprocess, read the ground truth."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

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


def read_truth(d: Path) -> dict[str, list[dict]]:
    out = {}
    for k in ("faults", "trades", "books", "connections"):
        p = d / f"{k}.jsonl"
        out[k] = [json.loads(l) for l in p.read_text().splitlines() if l.strip()] if p.exists() else []
    return out


def iso_us(s: str) -> int:
    d = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.timezone.utc)
    return int(d.timestamp()) * 1_000_000 + d.microsecond


def windows(connections: list[dict], venue: str) -> list[tuple[int, int]]:
    """(open, close) intervals in µs of every simulator connection of ``venue``."""
    opened: dict[str, int] = {}
    out = []
    for c in connections:
        if c["venue"] != venue:
            continue
        t = iso_us(c["ts"])
        if c["event"] == "open":
            opened[c["conn_id"]] = t
        elif c["conn_id"] in opened:
            out.append((opened.pop(c["conn_id"]), t))
    out += [(t, 1 << 62) for t in opened.values()]
    return out
