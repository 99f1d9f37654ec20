"""Helpers for the hardening tests of the bus and its consumers: an event loop in a
thread (to run a real hub, or a hostile server, next to subprocess services), canonical
rows, service subprocesses."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import msgspec
import websockets

from recorders.sim.harness import free_port  # noqa: F401 - the hardening tests take it from here

ROOT = Path(__file__).resolve().parents[2]


def now_us() -> int:
    return time.time_ns() // 1000


def quote(venue: str, symbol: str, bid: float, ask: float, qty: float = 5.0, ts: int | None = None) -> dict:
    ts = now_us() if ts is None else ts
    return {"ts_exchange": ts - 1000, "ts_local": ts, "venue": venue, "symbol": symbol,
            "bid_px": bid, "bid_qty": qty, "ask_px": ask, "ask_qty": qty}


def book_row(venue: str, symbol: str, side: str, price: float, qty: float, snap: bool, seq: int,
             ts: int | None = None) -> dict:
    ts = now_us() if ts is None else ts
    return {"ts_exchange": ts - 1000, "ts_local": ts, "venue": venue, "symbol": symbol, "side": side,
            "price": price, "qty": qty, "is_snapshot": snap, "seq": seq}


def trade(venue: str, symbol: str, tid: int, price: float, qty: float, side: str, ts: int | None = None) -> dict:
    ts = now_us() if ts is None else ts
    return {"ts_exchange": ts - 1000, "ts_local": ts, "venue": venue, "symbol": symbol,
            "trade_id": str(tid), "price": price, "qty": qty, "side": side}


def arb_config(tmp_path: Path, alerts: Path, *, name: str = "arb.toml", fees_bps: str = "binance = 0.0, kraken = 0.0",
               depth: int = 0, max_age_ms: float = 60000.0, flush_every_s: float = 3600.0) -> Path:
    """A ``lab arbitrage`` config ``tmp_path/name``: binance vs kraken BTC, alerts to the file
    ``alerts``; by default no fees, top of book, and signals written to the lake once an hour
    (so only a flush on stop writes them)."""
    cfg = tmp_path / name
    cfg.write_text(f"""
[arbitrage]
fees_bps = {{ {fees_bps} }}
sizes = {{ BTC = 1.0 }}
depth = {depth}
triangles = []
max_age_ms = {max_age_ms}
alerts = ["file:{alerts}"]
flush_every_s = {flush_every_s}
""")
    return cfg


def risk_config(tmp_path: Path) -> tuple[Path, Path]:
    """A ``lab risk`` config (no alerts, no paper positions) and a positions file: 1 BTC on
    binance BTC-USDT bought at 100."""
    cfg = tmp_path / "risk.toml"
    cfg.write_text("[risk]\ncapital = 1000.0\nalerts = []\nstale_after_s = 60.0\npaper = false\n"
                   "history_days = 1.0\n")
    pos = tmp_path / "pos.toml"
    pos.write_text('[[position]]\nvenue = "binance"\nasset = "BTC"\nsymbol = "BTC-USDT"\nqty = 1.0\n'
                   "avg_entry = 100.0\n")
    return cfg, pos


def frame(table: str, rows: Any) -> bytes:
    return msgspec.msgpack.encode({"table": table, "rows": rows})


class LoopThread:
    """An asyncio loop in a daemon thread; :meth:`call` runs a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.loop.is_running():
            self.loop.close()  # here, not by the garbage collector during a later test


class HostileServer:
    """A WebSocket server on ``port`` that plays whatever frames the test sends to every
    connected client (no token check, no validation: what a broken or malicious hub does)."""

    def __init__(self, lt: LoopThread, port: int) -> None:
        self.lt, self.port = lt, port
        self.clients: set = set()
        self.server = None

    async def _handler(self, ws) -> None:
        self.clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            self.clients.discard(ws)

    def start(self) -> HostileServer:
        async def go():
            self.server = await websockets.serve(self._handler, "127.0.0.1", self.port)
        self.lt.call(go())
        return self

    def send(self, data: bytes) -> None:
        async def go():
            for ws in list(self.clients):
                await ws.send(data)
        self.lt.call(go())

    def stop(self) -> None:
        async def go():
            self.server.close()
            await self.server.wait_closed()
        self.lt.call(go())


def wait_until(pred: Callable[[], Any], timeout: float, what: str, proc: subprocess.Popen | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the service exited ({proc.returncode}) while waiting for {what}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def start_service(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``lab ARGS...`` as a real subprocess (its own session), output to ``log``."""
    f = open(log, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "lab.cli", *args], cwd=ROOT, stdout=f,
                            stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                            start_new_session=True)
