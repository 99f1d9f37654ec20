"""A writer or a maintainer process on the S3 lake ``$LAB_LAKE`` (tests/cluster/test_objectstore_tiers.py).

``python s3_tiers_worker.py write NAME BATCHES ROWS``: appends ``BATCHES`` batches of ``ROWS`` trades
(ids ``NAME-batch-i``), one JSON line per commit. ``python s3_tiers_worker.py maintain UNTIL_FILE``:
``maintain("trades", min_files=2)`` passes until ``UNTIL_FILE`` exists, one JSON line per pass.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys

import polars as pl

from lab.lake import Lake

T0 = dt.datetime(2026, 11, 22, tzinfo=dt.timezone.utc)


def write(name: str, batches: int, rows: int) -> None:
    lake = Lake()
    for b in range(batches):
        i = pl.int_range(rows, eager=True)
        ts = pl.lit(T0) + pl.duration(seconds=b) + pl.duration(microseconds=(rows - i) * 7)  # unsorted batch
        df = pl.DataFrame({"i": i}).select(
            ts_exchange=ts, ts_local=ts, venue=pl.lit(name), symbol=pl.lit("BTC-USDT"),
            trade_id=pl.format("{}-{}-{}", pl.lit(name), pl.lit(b), pl.col("i")),
            price=pl.lit(100.0), qty=pl.lit(1.0), side=pl.lit("buy"))
        v = lake.append("trades", df)
        print(json.dumps({"writer": name, "batch": b, "version": v}), flush=True)


def maintain(until: str) -> None:
    lake = Lake()
    passes = 0
    while not os.path.exists(until) or passes == 0:
        if lake.exists("trades"):
            info = lake.maintain("trades", min_files=2)["trades"]
            print(json.dumps({"pass": passes, "compacted": info.get("compacted")}, default=str), flush=True)
            passes += 1


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        maintain(sys.argv[2])
