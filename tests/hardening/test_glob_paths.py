"""A lake under a folder whose name holds glob characters (``lake[v2]``, ``run*1``, ``what?``,
``a{b,c}``, ``it's``) reads and compacts exactly its own rows.

DuckDB reads every path given to ``read_parquet`` as a glob pattern (``*``, ``?`` and ``[...]``
are wildcards). So ``/data/lake[v2]/trades/part-1.parquet`` also matched
``/data/lakev/trades/part-1.parquet``: with a copy of the lake next to it (a backup taken with
``cp -r``), every SQL query counted the copied files twice and compaction wrote their rows twice
into the merged file. Each test keeps such a copy (the decoy) beside the lake, taken after some
commits and tail files, then appends more, so the lake's own rows differ from the copy's.

Reference values come from the Python lists of what was appended, not from the lake.
"""

from __future__ import annotations

import datetime as dt
import shutil
import urllib.parse
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

import lab
from lab.lake import Lake
from lab.tail import TailWriter

UTC = dt.timezone.utc
US = pl.Datetime("us", "UTC")
T0 = dt.datetime(2026, 11, 22, 9, tzinfo=UTC)

# folder name of the lake -> a sibling name the unescaped path matches as a glob (None: the
# characters are not wildcards to DuckDB; the case guards the decoding and quoting of the path)
CASES = {
    "brackets": ("lake[v2]", "lakev"),
    "star": ("run*1", "run01"),
    "question": ("what?", "whatX"),
    "braces": ("a{b,c}", None),
    "quote": ("it's", None),
    "space": ("my lake", None),
}


def trades(i: int, n: int) -> pl.DataFrame:
    """``n`` trades of batch ``i``; times in whole milliseconds with repeats, so a time sort has
    ties (kept in commit order, then file order, by a merge)."""
    rng = np.random.default_rng(i)
    ms = np.sort(rng.integers(0, 50, n)) + i * 40  # batches overlap in time
    t = [T0 + dt.timedelta(milliseconds=int(m)) for m in ms]
    return pl.DataFrame({
        "ts_exchange": t, "ts_local": t,
        "venue": rng.choice(["binance", "kraken"], n).tolist(),
        "symbol": ["BTC-USD"] * n,
        "trade_id": [f"{i}-{k}" for k in range(n)],
        "price": np.round(100 + rng.normal(0, 1, n), 2).tolist(),
        "qty": np.round(rng.exponential(1, n), 4).tolist(),
        "side": rng.choice(["buy", "sell"], n).tolist(),
    }, schema_overrides={"ts_exchange": US, "ts_local": US})


def book_updates(i: int, n: int) -> pl.DataFrame:
    rng = np.random.default_rng(1000 + i)
    ms = np.sort(rng.integers(0, 50, n)) + i * 40
    t = [T0 + dt.timedelta(milliseconds=int(m)) for m in ms]
    return pl.DataFrame({
        "ts_exchange": t, "ts_local": t,
        "venue": ["okx"] * n, "symbol": ["BTC-USDT"] * n,
        "side": rng.choice(["bid", "ask"], n).tolist(),
        "price": np.round(100 + rng.normal(0, 1, n), 1).tolist(),
        "qty": np.round(rng.exponential(1, n), 3).tolist(),
        "is_snapshot": [False] * n,
        "seq": list(range(i * 1000, i * 1000 + n)),
    }, schema_overrides={"ts_exchange": US, "ts_local": US})


MAKERS = {"trades": trades, "book_updates": book_updates}


def sql_count_sum(root: Path, table: str) -> tuple[int, float]:
    con = lab.connect(root)
    try:
        n, s = con.execute(f"SELECT count(*), sum(qty) FROM {table}").fetchall()[0]
    finally:
        con.close()
    return n, s


@pytest.mark.parametrize("case", list(CASES))
def test_lake_under_a_glob_folder_reads_and_compacts_its_own_rows(tmp_path: Path, case: str) -> None:
    name, decoy = CASES[case]
    root = tmp_path / name
    lake = Lake(root)
    appended: dict[str, list[pl.DataFrame]] = {t: [] for t in MAKERS}  # commit order
    tail: dict[str, list[pl.DataFrame]] = {t: [] for t in MAKERS}
    tw = TailWriter(lake, grace=3600)  # held open: its tail stays a tail through maintain

    def add(batches: range, rows: int, tail_seed: int, tail_rows: int) -> None:
        """Committed appends of every table (small: delta-rs' own writer, except under `[`),
        then one tail file of each."""
        for i in batches:
            for table, make in MAKERS.items():
                appended[table].append(make(i, rows))
                lake.append(table, appended[table][-1])
        for table, make in MAKERS.items():
            tail[table].append(make(tail_seed, tail_rows))
            tw.write(table, tail[table][-1])

    try:
        # Arrange: committed files and tail files, a copy of the lake beside it, then more of both
        add(range(3), 60, 10, 25)
        if decoy is not None:
            shutil.copytree(root, tmp_path / decoy)
        add(range(3, 6), 40, 11, 15)

        # Act / Assert: SQL sees exactly the appended rows and the tail's, once each
        for table in MAKERS:
            qty = [q for df in appended[table] + tail[table] for q in df["qty"].to_list()]
            n, s = sql_count_sum(root, table)
            assert n == len(qty), f"{table}: {n} rows through SQL, {len(qty)} appended"
            assert s == pytest.approx(sum(qty), rel=1e-12)
            # the recorder's start-up reads (one pl.scan_parquet over the snapshot and the tail)
            n, s = Lake(root).scan_files(table).select(pl.len(), pl.col("qty").sum()).collect().row(0)
            assert n == len(qty), f"{table}: {n} rows through Lake.scan_files, {len(qty)} appended"
            assert s == pytest.approx(sum(qty), rel=1e-12)
            # a notebook's lab.scan (Polars), a venue filter pushed down
            venue = appended[table][0]["venue"][0]
            vq = [q for df in appended[table] + tail[table] for q, v in zip(df["qty"], df["venue"]) if v == venue]
            n, s = Lake(root).scan(table, venue=venue).select(pl.len(), pl.col("qty").sum()).collect().row(0)
            assert n == len(vq), f"{table}: {n} {venue} rows through Lake.scan, {len(vq)} appended"
            assert s == pytest.approx(sum(vq), rel=1e-12)

        # Act: compact the committed files (the tail stays: its writer is alive)
        Lake(root).maintain(min_files=2, grace=dt.timedelta(0))

        for table in MAKERS:
            files = [urllib.parse.unquote(f) for f in DeltaTable(str(root / table)).file_uris()]
            assert len(files) < len(appended[table]), f"{table}: nothing was merged ({len(files)} files)"
            # the committed rows once each; a merged file holds its inputs stably sorted by time
            want = pl.concat(appended[table])
            got = pl.concat([pl.read_parquet(f, glob=False) for f in files]).select(want.columns)
            assert got.height == want.height, f"{table}: {got.height} rows after maintain, {want.height} appended"
            key = ["ts_exchange", "trade_id" if table == "trades" else "seq"]
            assert_frame_equal(got.sort(key), want.sort(key))
            for f in files:
                part = pl.read_parquet(f, glob=False).select(want.columns)
                ids = set(part[key[1]].to_list())
                assert_frame_equal(part, want.filter(pl.col(key[1]).is_in(ids)).sort("ts_exchange", maintain_order=True))
            # and SQL still reads every row once
            qty = [q for df in appended[table] + tail[table] for q in df["qty"].to_list()]
            n, s = sql_count_sum(root, table)
            assert n == len(qty)
            assert s == pytest.approx(sum(qty), rel=1e-12)
    finally:
        tw.close()
