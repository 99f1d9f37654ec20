"""A recorder-like writer process: ``python s3_writer.py NAME BATCHES ROWS`` appends to ``$LAB_LAKE``.

Prints one JSON line per commit: ``{"writer", "batch", "version"}``.
"""

from __future__ import annotations

import datetime as dt
import json
import sys

import polars as pl

from lab.lake import Lake

T0 = dt.datetime(2026, 11, 22, tzinfo=dt.timezone.utc)


def main(name: str, batches: int, rows: int, descending: bool = False) -> None:
    """``descending``: each batch's times run backwards (an unsorted file for compaction to sort)."""
    lake = Lake()
    for b in range(batches):
        i = pl.int_range(rows, eager=True)
        ts = pl.lit(T0) + pl.duration(seconds=b) + pl.duration(microseconds=(rows - i) * 7 if descending else i)
        df = pl.DataFrame({"i": i}).select(
            ts_exchange=ts, ts_local=ts, venue=pl.lit(name), symbol=pl.lit("BTC-USDT"),
            trade_id=pl.format("{}-{}-{}", pl.lit(name), pl.lit(b), pl.col("i")),
            price=pl.lit(100.0), qty=pl.lit(1.0), side=pl.lit("buy"))
        v = lake.append("trades", df)
        print(json.dumps({"writer": name, "batch": b, "version": v}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
