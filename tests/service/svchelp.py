"""Helpers of the data-service tests: lake rows, a server on a free port, a client in another process."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl

from lab.lake import Lake
from lab.service import DataService, ServiceConfig

TOKEN = "test-token-0123456789"
NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def trades_frame(n: int, *, start: int = 0, t0: dt.datetime | None = None) -> pl.DataFrame:
    """``n`` BTC-USD trades on coinbase, one per second back from ``t0`` (default: now)."""
    t0 = t0 or NOW
    ids = range(start, start + n)
    return pl.DataFrame({
        "ts_exchange": [t0 - dt.timedelta(seconds=i % 3000, microseconds=i) for i in ids],
        "ts_local": [t0] * n,
        "venue": ["coinbase"] * n, "symbol": ["BTC-USD"] * n,
        "trade_id": [str(i) for i in ids],
        "price": [100.0 + (i % 97) for i in ids], "qty": [0.5 + (i % 7) for i in ids],
        "side": ["buy" if i % 2 else "sell" for i in ids],
    })


def signals_frame(n: int) -> pl.DataFrame:
    return pl.DataFrame({
        "ts": [NOW - dt.timedelta(minutes=i) for i in range(n)], "kind": ["cross_venue"] * n,
        "asset": ["BTC"] * n, "buy_venue": ["kraken"] * n, "sell_venue": ["binance"] * n,
        "buy_symbol": ["BTC-USD"] * n, "sell_symbol": ["BTC-USDT"] * n, "size": [0.01] * n,
        "buy_px": [100.0] * n, "sell_px": [100.5] * n,
        "gross_edge_bps": [float(i) for i in range(n)], "net_edge_bps": [float(i) - 5.0 for i in range(n)],
        "profit_quote": [0.001 * i for i in range(n)], "volume_usd": [1.0] * n,
    })


def start(lake: Lake, **kw) -> DataService:
    kw.setdefault("bus_url", None)
    return DataService(ServiceConfig(lake=str(lake.root), token=TOKEN, port=0, **kw))


def run_client(code: str, *, timeout: float = 60, env: dict | None = None, args: object = None):
    """Run ``code`` in a fresh Python process (``A`` holds ``args``); it must
    ``print(json.dumps(...))`` last, which is returned."""
    e = {k: v for k, v in os.environ.items() if k not in ("LAB_SERVICE_TOKEN", "LAB_SERVICE", "LAB_SERVICE_CA")}
    e.update(env or {})
    e["SVC_ARGS"] = json.dumps(args)
    src = "import json, os\nA = json.loads(os.environ['SVC_ARGS'])\n" + textwrap.dedent(code)
    p = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, timeout=timeout, env=e)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def private_ca(d: Path) -> tuple[Path, Path]:
    """A private CA's certificate for 127.0.0.1/localhost in ``d``: returns (chain, key) for the
    server; ``d/ca.pem`` is the CA that signed it, ``d/other.pem`` a CA that did not."""
    import trustme

    ca, other = trustme.CA(), trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key = d / "chain.pem", d / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(chain))
    cert.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    other.cert_pem.write_to_path(str(d / "other.pem"))
    return chain, key
