"""Subprocess workers for the lake concurrency tests (writer, reader, maintainer).

Run as ``python tests/foundation/lake_worker.py ROLE ...``; each role logs one
JSON line per completed operation to its log file, flushed and fsynced, so
the test can compare what was committed with what readers saw.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import polars as pl  # noqa: E402

import lab  # noqa: E402
from lab.lake import Lake  # noqa: E402

T0 = dt.datetime(2026, 11, 22, tzinfo=dt.timezone.utc)


def batch(writer: str, b: int, rows: int) -> pl.DataFrame:
    i = pl.int_range(rows, eager=True)
    ts = pl.lit(T0) + pl.duration(milliseconds=b * 1000) + pl.duration(microseconds=i)
    return pl.DataFrame({"i": i}).select(
        ts_exchange=ts, ts_local=ts, venue=pl.lit("binance"), symbol=pl.lit("BTC-USDT"),
        trade_id=pl.format("{}-{}-{}", pl.lit(writer), pl.lit(b), pl.col("i")),
        price=100.0 + pl.col("i").cast(pl.Float64) / rows, qty=pl.lit(1.0), side=pl.lit("buy"),
    )


def log(f, **kv) -> None:
    f.write(json.dumps(kv) + "\n")
    f.flush()
    os.fsync(f.fileno())


def write(a) -> None:
    lake = Lake(a.lake)
    with open(a.log, "a") as f:
        for b in range(a.start_batch, a.start_batch + a.batches):
            t = time.monotonic()
            lake.append("trades", batch(a.id, b, a.rows))
            log(f, batch=b, rows=a.rows, done=time.time())
            time.sleep(max(0.0, a.interval - (time.monotonic() - t)))


def read(a) -> None:
    end = time.time() + a.seconds
    with open(a.log, "a") as f:
        while time.time() < end:
            started = time.time()
            con = lab.connect(a.lake)
            n, uniq = con.sql("select count(*), count(distinct trade_id) from trades").fetchall()[0]
            log(f, started=started, ended=time.time(), count=n, distinct=uniq)
            con.close()
            time.sleep(a.interval)


def maintain(a) -> None:
    lake = Lake(a.lake)
    end = time.time() + a.seconds
    with open(a.log, "a") as f:
        while time.time() < end:
            info = lake.maintain("trades", min_files=2)
            log(f, done=time.time(), info=info.get("trades", {}))
            time.sleep(a.interval)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["write", "read", "maintain"])
    p.add_argument("--lake", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--id", default="w0")
    p.add_argument("--batches", type=int, default=10)
    p.add_argument("--start-batch", type=int, default=0)
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--interval", type=float, default=0.1)
    p.add_argument("--seconds", type=float, default=10.0)
    a = p.parse_args()
    {"write": write, "read": read, "maintain": maintain}[a.role](a)
