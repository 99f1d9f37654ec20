"""Tardis import speed: `lab import tardis` of an incremental_book_L2 file vs a plain Polars read_csv.

Writes one tardis-shaped ``incremental_book_L2`` CSV (default 10 M rows: snapshots,
updates, deletes), then, interleaved ``--repeat`` times: ``pl.read_csv`` of the file
(the baseline: parsing alone, nothing stored) and the full import into a fresh lake
(parse, normalise, hash the file, Delta commit). Prints medians, rows/s and the ratio
(target >= 0.5 of the plain read), with the load average and the CPU seconds of each (all
threads of this process: on a shared machine the wall-clock ratio follows the CPU ratio).
The first import also pays for loading pyarrow (~0.3 s, once per process); medians leave it out.
``--stages`` then times the import's stages one after the other (wall and CPU seconds, medians):
where the time goes, and how much of it the import overlaps (the hash runs beside the parse,
the Parquet parts beside each other).

    .venv/bin/python bench/bench_tardis_import.py [--rows 10000000] [--repeat 3] [--stages]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from lab import tardis
from lab.apps import import_
from lab.apps.import_ import import_tardis
from lab.lake import Lake, file_stats


def make_file(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    ts = 1_700_006_400_000_000 + np.cumsum(rng.integers(50, 5_000, rows))
    snap = np.zeros(rows, bool)
    snap[:50] = True
    side = np.where(rng.random(rows) < 0.5, "bid", "ask")
    off = rng.integers(0, 200, rows) * 0.1
    price = np.where(side == "bid", 37000.0 - 0.1 - off, 37000.0 + 0.1 + off).round(1)
    amount = np.where(rng.random(rows) < 0.2, 0.0, rng.uniform(0.001, 5, rows).round(4))
    pl.DataFrame({
        "exchange": "binance", "symbol": "BTCUSDT", "timestamp": ts,
        "local_timestamp": ts + rng.integers(500, 30_000, rows), "is_snapshot": snap,
        "side": side, "price": price, "amount": amount,
    }).write_csv(path)


def _timed(fn: Callable[[], object]) -> tuple[object, float, float]:
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def stages(f: Path, tmp: Path, repeat: int) -> None:
    """The import's stages run one after the other on ``f`` (what the import overlaps, serially)."""
    kind = tardis.detect_kind(f)
    times: dict[str, list[tuple[float, float]]] = {}
    for i in range(repeat):
        lake = Lake(tmp / f"stages{i}")
        lake.new_file("book_updates", "none")  # the table exists: its creation is not a stage
        steps: list[tuple[str, Callable[[], object]]] = [
            ("read_csv (default settings)", lambda: pl.read_csv(f)),
            ("parse + schema checks", lambda: tardis._read(f, kind)),
            ("convert (names, seq, Enum)", lambda: tardis._CONVERT[kind](f, df, True)),
            ("sha256 of the file", lambda: tardis.file_digest(f)),
            ("Parquet write, 1 file, 1 thread", lambda: tardis.write_parquet(out, lake.new_file("book_updates", "none"))),
            ("file_stats (Delta add stats)", lambda: file_stats(out)),
            ("write parts in parallel + commit", lambda: import_._append_encoded(lake, "book_updates", out)),
        ]
        df = out = None
        for name, fn in steps:
            r, w, c = _timed(fn)
            times.setdefault(name, []).append((w, c))
            if name.startswith("parse"):
                df = r
            elif name.startswith("convert"):
                out = r
        shutil.rmtree(lake.root)
    print(f"stages one after the other (medians of {repeat}; load average {os.getloadavg()[0]:.2f}):")
    for name, v in times.items():
        print(f"  {name:34s} wall {statistics.median(x[0] for x in v):5.2f} s  CPU {statistics.median(x[1] for x in v):5.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--stages", action="store_true", help="then time each stage of the import on its own")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_tardis_"))
    try:
        f = tmp / "binance_incremental_book_L2_2023-11-15_BTCUSDT.csv"
        t = time.perf_counter()
        make_file(f, a.rows)
        print(f"file: {a.rows:,} rows, {f.stat().st_size / 1e6:,.0f} MB, written in {time.perf_counter() - t:.1f} s")
        base, ours, base_cpu, ours_cpu = [], [], [], []
        for i in range(a.repeat):
            t, c = time.perf_counter(), time.process_time()
            n = pl.read_csv(f).height
            base.append(time.perf_counter() - t)
            base_cpu.append(time.process_time() - c)
            lake = Lake(tmp / f"lake{i}")
            t, c = time.perf_counter(), time.process_time()
            res = import_tardis(lake, [str(f)], progress=False)
            ours.append(time.perf_counter() - t)
            ours_cpu.append(time.process_time() - c)
            assert res[0]["rows"] == n == a.rows
            shutil.rmtree(lake.root)
        b, o = statistics.median(base), statistics.median(ours)
        bc, oc = statistics.median(base_cpu), statistics.median(ours_cpu)
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; medians of {a.repeat}, interleaved")
        print(f"polars read_csv (baseline): {b:6.2f} s  {a.rows / b / 1e6:6.2f} M rows/s  (CPU {bc:.2f} s)")
        print(f"lab import tardis:          {o:6.2f} s  {a.rows / o / 1e6:6.2f} M rows/s  (CPU {oc:.2f} s)")
        print(f"ratio import / read_csv: {b / o:.2f}  (target >= 0.5); CPU-time ratio {bc / oc:.2f} "
              f"(what a busy machine leaves of it)")
        if a.stages:
            stages(f, tmp, a.repeat)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
