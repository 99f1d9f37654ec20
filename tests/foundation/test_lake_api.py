"""The lake API as a user calls it: append, scan with filters, SQL views."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import lab
from lab.lake import Lake
from lab.schema import TABLES, SchemaError

UTC = dt.timezone.utc


def make_trades(n: int, t0: dt.datetime, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    off = np.sort(rng.integers(0, 10_000_000, n))  # 10 s of microseconds
    return pl.DataFrame({
        "ts_exchange": [t0 + dt.timedelta(microseconds=int(o)) for o in off],
        "ts_local": [t0 + dt.timedelta(microseconds=int(o) + 3000) for o in off],
        "venue": rng.choice(["binance", "kraken"], n).tolist(),
        "symbol": rng.choice(["BTC-USD", "ETH-USD"], n).tolist(),
        "trade_id": [str(i) for i in range(n)],
        "price": np.round(100 + rng.normal(0, 1, n), 2),
        "qty": np.round(rng.exponential(1, n), 4),
        "side": rng.choice(["buy", "sell"], n).tolist(),
    }, schema_overrides={"ts_exchange": pl.Datetime("us", "UTC"), "ts_local": pl.Datetime("us", "UTC")})


T0 = dt.datetime(2026, 11, 22, 9, tzinfo=UTC)


@pytest.fixture
def lake(lake_dir) -> Lake:
    lk = Lake(lake_dir)
    for i in range(3):
        lk.append("trades", make_trades(500, T0 + dt.timedelta(seconds=10 * i), seed=i))
    return lk


def test_bad_batch_raises_naming_column_and_commits_nothing(lake):
    before = lake.version("trades")
    bad = make_trades(5, T0).with_columns(pl.col("qty").cast(pl.Int64))
    with pytest.raises(SchemaError, match="'qty'"):
        lake.append("trades", bad)
    assert lake.version("trades") == before
    assert lake.read("trades").height == 1500


def test_unknown_table_is_a_clear_error(lake):
    with pytest.raises(SchemaError, match="unknown table 'trade'"):
        lake.append("trade", make_trades(1, T0))


def test_scan_filters_equal_eager_filtering(lake):
    everything = lake.read("trades")
    start, end = T0 + dt.timedelta(seconds=5), T0 + dt.timedelta(seconds=17)
    got = lab.scan("trades", lake=lake, venue="kraken", symbol=["ETH-USD"], start=start, end=end).collect()
    want = everything.filter(
        pl.col("venue") == "kraken", pl.col("symbol") == "ETH-USD",
        pl.col("ts_exchange") >= start, pl.col("ts_exchange") < end)
    assert want.height > 0
    assert_frame_equal(got.sort("trade_id", "ts_exchange"), want.sort("trade_id", "ts_exchange"))


def test_scan_accepts_naive_and_string_times_as_utc(lake):
    a = lab.scan("trades", lake=lake, start="2026-11-22T09:00:05").collect().height
    b = lab.scan("trades", lake=lake, start=dt.datetime(2026, 11, 22, 9, 0, 5)).collect().height
    c = lab.scan("trades", lake=lake, start=T0 + dt.timedelta(seconds=5)).collect().height
    assert a == b == c and 0 < c < 1500


def test_seed_query_runs_unchanged_and_matches_numpy(lake):
    con = lab.connect(lake)
    # The seed document's query, verbatim except the symbol and the time window.
    rows = con.sql(
        "SELECT time_bucket(INTERVAL '1 second', timestamp) as bucket, avg(price) as avg_price, "
        "sum(volume) as total_volume FROM trades WHERE symbol = 'BTC-USD' "
        "AND timestamp > TIMESTAMPTZ '2026-11-22 09:00:00+00' - INTERVAL '1 hour' "
        "GROUP BY bucket ORDER BY bucket DESC").fetchall()
    df = lake.read("trades").filter(pl.col("symbol") == "BTC-USD")
    secs = (df["ts_exchange"].dt.epoch("us").to_numpy() // 1_000_000)
    price, qty = df["price"].to_numpy(), df["qty"].to_numpy()
    want = {}
    for s in np.unique(secs):
        m = secs == s
        want[int(s)] = (price[m].mean(), qty[m].sum())
    assert len(rows) == len(want)
    for bucket, avg_price, vol in rows:
        ap, v = want[int(bucket.timestamp())]
        assert avg_price == pytest.approx(ap) and vol == pytest.approx(v)
    assert [r[0] for r in rows] == sorted((r[0] for r in rows), reverse=True)


def test_empty_lake_has_every_view_with_its_columns(lake_dir):
    con = lab.connect(Lake(lake_dir))
    for name, spec in TABLES.items():
        cols = [d[0] for d in con.sql(f'select * from "{name}"').description]
        assert set(spec.columns) <= set(cols), name
        assert con.sql(f'select count(*) from "{name}"').fetchall() == [(0,)]


def test_refresh_makes_a_long_lived_connection_see_new_commits(lake):
    con = lab.connect(lake)
    assert con.sql("select count(*) from trades").fetchall() == [(1500,)]
    lake.append("trades", make_trades(7, T0 + dt.timedelta(minutes=1), seed=9))
    assert con.sql("select count(*) from trades").fetchall() == [(1500,)]  # snapshot isolation
    lab.refresh(con)
    assert con.sql("select count(*) from trades").fetchall() == [(1507,)]


def test_maintain_compacts_and_keeps_every_row(lake):
    ids = lake.read("trades")["trade_id"].sort()
    info = lake.maintain("trades", min_files=2)["trades"]
    assert info["compacted"]["numFilesRemoved"] == 3 and info["files"] == 1
    assert_frame_equal(lake.read("trades").select(pl.col("trade_id").sort()), ids.to_frame())


def test_maintain_removes_a_data_file_no_commit_names_after_the_grace(lake, monkeypatch):
    # a writer killed between writing a data file and committing it leaves the file behind
    import os

    import lab.lake
    from lab.tail import TailWriter

    tdir = lake.path("trades")
    orphan = tdir / "part-00000-killed-before-commit-c000.zstd.parquet"
    make_trades(5, T0).write_parquet(orphan)
    young = tdir / "part-00000-being-committed-c000.zstd.parquet"
    make_trades(5, T0).write_parquet(young)
    tail = TailWriter(lake).write("trades", make_trades(3, T0 + dt.timedelta(minutes=5), seed=4))
    hour_ago = os.stat(orphan).st_mtime - 3 * 3600
    for p in (orphan, tail):
        os.utime(p, (hour_ago, hour_ago))
    rows = lake.scan("trades").select(pl.len()).collect().item()
    # Act: a maintainer's first pass (grace 1 h)
    lake.maintain("trades", min_files=100)
    assert not orphan.exists()  # older than the grace, named by no commit
    assert young.exists() and tail.exists()  # within the grace (a commit may be on its way); the tail
    assert lake.scan("trades").select(pl.len()).collect().item() == rows  # every committed row, + the tail's
    os.utime(young, (hour_ago, hour_ago))  # its writer died too
    lake.maintain("trades", min_files=100)
    assert young.exists()  # the next pass, at once: a lite vacuum (the next full one is an hour on)
    monkeypatch.setattr(lab.lake, "FULL_VACUUM_EVERY", 0.0)  # ... the hour has passed
    lake.maintain("trades", min_files=100)
    assert not young.exists()
    assert lake.scan("trades").select(pl.len()).collect().item() == rows
    # with no grace, a file no commit names yet survives its first hour (a writer may commit it)
    make_trades(5, T0).write_parquet(young)
    lake.maintain("trades", min_files=100, grace=dt.timedelta(0))
    assert young.exists()


def test_compaction_writes_time_sorted_files_so_recent_queries_skip_row_groups(lake_dir, monkeypatch):
    """delta-rs' own compaction interleaves the merged files' rows; ours sorts by the
    table's time column (ties in commit order), so row-group statistics prune."""
    import re

    import pyarrow.parquet as pq
    from deltalake import WriterProperties

    import lab.lake
    # small row groups, so a small test file has several (production: 131,072 rows)
    monkeypatch.setattr(lab.lake, "_WRITER_PROPS", WriterProperties(max_row_group_size=2_000))
    lk = Lake(lake_dir)
    batches = []
    for i in range(40):
        # each commit holds two venues, one lagging 30 s: commits overlap in time
        a = make_trades(300, T0 + dt.timedelta(seconds=10 * i), seed=i)
        b = make_trades(300, T0 + dt.timedelta(seconds=10 * i - 30), seed=100 + i)
        df = pl.concat([a, b]).with_columns(
            trade_id=pl.format("{}-{}", pl.lit(i), pl.int_range(pl.len()).cast(pl.String)))
        if i in (7, 8):  # identical timestamps in two commits: ties keep commit order
            df = df.with_columns(ts_exchange=pl.lit(T0 + dt.timedelta(seconds=400)).dt.cast_time_unit("us")
                                 .dt.replace_time_zone("UTC"))
        batches.append(df)
        lk.append("trades", df)
    info = lk.maintain("trades", min_files=2)["trades"]
    assert info["compacted"]["numFilesRemoved"] == 40 and info["files"] == 1
    everything = pl.concat(batches)
    assert_frame_equal(lk.read("trades").sort("trade_id"), everything.sort("trade_id"))
    # rows in the file are in time order: an independent stable sort of the commits in order
    (path,) = lk.delta("trades").file_uris()
    in_file = pl.read_parquet(path)
    assert_frame_equal(in_file, everything.sort("ts_exchange", maintain_order=True))
    # ...so a query over the newest minute reads only the newest row groups
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups >= 10
    con = lab.connect(lake_dir)
    newest = everything["ts_exchange"].max()
    plan = con.execute("EXPLAIN ANALYZE SELECT count(*) FROM trades WHERE ts_exchange >= $t",
                       {"t": newest - dt.timedelta(seconds=60)}).fetchall()[0][1]
    scanned, total = map(int, re.search(r"Row Groups Scanned: (\d+) / (\d+)", plan).groups())
    assert total == meta.num_row_groups and scanned < total, plan


def test_a_long_lived_writer_reopens_its_table_every_n_commits_and_loses_nothing(lake_dir, monkeypatch):
    # delta-rs' incremental snapshot grows with every commit (the recorder's RSS tripled over a
    # 30-minute soak): the writer drops its DeltaTable every WRITER_REOPEN_EVERY commits.
    import lab.lake as lake_mod

    monkeypatch.setattr(lake_mod, "WRITER_REOPEN_EVERY", 3)
    lk = Lake(lake_dir)
    frames = [make_trades(50, T0 + dt.timedelta(seconds=10 * i), seed=i) for i in range(7)]
    seen = []
    for f in frames:
        lk.append("trades", f)
        seen.append(lk._writers.get("trades"))
    # commits 3 and 6 drop the writer; the others keep the one opened after them
    assert seen[2] is None and seen[5] is None
    assert seen[1] is not None and seen[0] is seen[1] and seen[3] is not None and seen[3] is seen[4]
    want = pl.concat(frames).sort("trade_id", "ts_local")
    got = lk.scan("trades").collect().sort("trade_id", "ts_local")
    assert_frame_equal(got, want)


def _checkpoints(lake_dir, table="trades") -> list[int]:
    """Versions of the checkpoint files in the table's log, read from the directory."""
    log = lake_dir / table / "_delta_log"
    return sorted(int(p.name.split(".")[0]) for p in log.iterdir() if p.name.endswith(".checkpoint.parquet"))


@pytest.mark.parametrize("via", ["append", "tail"])
def test_appends_leave_checkpoints_to_maintenance_and_write_one_when_none_runs(lake_dir, monkeypatch, via):
    # a writer's own checkpoint kept delta-rs' checkpoint code and allocator memory resident in a
    # recorder for good: with maintenance (which checkpoints every pass) appends write none;
    # without it they still write one every CHECKPOINT_EVERY commits
    import lab.lake as lake_mod

    monkeypatch.setattr(lake_mod, "CHECKPOINT_EVERY", 6)
    lk = Lake(lake_dir)
    frames = [make_trades(20, T0 + dt.timedelta(seconds=10 * i), seed=i) for i in range(14)]

    added = []

    def add(f):
        lk.append("trades", f, polars_writer=via == "tail")
        added.append(f)

    for f in frames[:4]:
        add(f)
    Lake(lake_dir).maintain(min_files=1000)  # another process' pass: a checkpoint at version 3 or 4
    (cp,) = _checkpoints(lake_dir)
    while lk.version("trades") < cp + 5:
        add(frames[lk.version("trades") % 14])
    assert _checkpoints(lake_dir) == [cp], "an append checkpointed although maintenance had just done it"
    # no maintenance any more: the next multiple of 6 that is >= 6 commits past cp gets one
    due = next(v for v in range(6, 100, 6) if v - cp >= 6)
    while lk.version("trades") < due + 1:
        add(frames[lk.version("trades") % 14])
    assert _checkpoints(lake_dir) == [cp, due]
    assert lk.scan("trades").collect().height == sum(f.height for f in added)
