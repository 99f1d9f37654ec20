"""The lake's hot tail (lab.tail): rows are readable as soon as their file is written, are
read exactly once across the Delta commit that adds them, survive a kill -9 of their
writer (adopted by the next settle), and the journal leads in every commit order."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
from deltalake import DeltaTable

import lab
from lab.lake import Lake
from lab.tail import TAIL, TailWriter, settle, uncommitted
from recorders.venues.base import COLUMNS, Rows
from recorders.writer import Writer
from tests.foundation.test_lake_api import T0, make_trades

ROOT = Path(__file__).resolve().parents[2]


def _count_sql(lake: Lake, table: str = "trades") -> int:
    con = lab.connect(lake)
    try:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


def _ids(lake: Lake) -> list[str]:
    return sorted(lake.scan("trades").collect()["trade_id"].to_list())


def _delta_rows(lake: Lake, table: str = "trades") -> int:
    return pl.scan_delta(str(lake.path(table))).select(pl.len()).collect().item()


def test_rows_are_readable_before_the_commit_and_read_once_after(lake_dir: Path) -> None:
    lake = Lake(lake_dir)
    tw = TailWriter(lake, grace=3600)
    frames = [make_trades(7, T0 + dt.timedelta(seconds=i), seed=i) for i in range(3)]
    want = sorted(pl.concat(frames)["trade_id"].to_list())
    for f in frames:
        tw.write("trades", f)
    # before any commit: Delta holds nothing, every reader of the lab sees all rows
    assert _delta_rows(lake) == 0
    assert _count_sql(lake) == 21 and _ids(lake) == want
    tw.commit("trades")
    # after: Delta holds them, the tail files are still on disk (grace) and read no more
    assert _delta_rows(lake) == 21
    assert len(list((lake.path("trades") / TAIL).glob("*.parquet"))) == 3
    assert _count_sql(lake) == 21 and _ids(lake) == want
    assert tw.uncommitted() == 0  # the three files are kept (grace) and counted no more
    tw.write("trades", make_trades(4, T0 + dt.timedelta(seconds=9), seed=9))
    assert _count_sql(lake) == 25 and _delta_rows(lake) == 21
    assert tw.uncommitted() == 1
    tw.close()


def test_a_snapshot_taken_before_the_commit_reads_the_files_once(lake_dir: Path) -> None:
    # The reader's order is: snapshot, then list the tail. Whichever side of the commit the
    # snapshot falls, every row is counted once.
    lake = Lake(lake_dir)
    tw = TailWriter(lake, grace=3600)
    tw.write("trades", make_trades(5, T0, seed=1))
    tw.write("trades", make_trades(6, T0, seed=2))
    old = DeltaTable(lake.path("trades"))  # before the commit
    tw.commit("trades")
    new = DeltaTable(lake.path("trades"))
    d = lake.path("trades")
    assert len(old.file_uris()) == 0 and len(uncommitted(d, old)) == 2  # 11 rows via the tail
    assert len(new.file_uris()) == 1 and uncommitted(d, new) == []  # 11 rows via Delta
    tw.close()


def test_committed_files_are_deleted_after_the_grace(lake_dir: Path) -> None:
    lake = Lake(lake_dir)
    tw = TailWriter(lake, grace=0)
    tw.write("trades", make_trades(5, T0, seed=1))
    tw.commit("trades")
    assert list((lake.path("trades") / TAIL).glob("*.parquet")) == []
    assert _count_sql(lake) == 5
    tw.close()
    settle(lake, grace=0)
    assert list((lake.path("trades") / TAIL).iterdir()) == []  # the lock file of a gone writer too


_KILLED_WRITER = textwrap.dedent("""
    import datetime as dt, sys, time
    sys.path.insert(0, sys.argv[2])
    from lab.lake import Lake
    from lab.tail import TailWriter
    from tests.foundation.test_lake_api import T0, make_trades
    tw = TailWriter(Lake(sys.argv[1]))
    import polars as pl
    for i in range(4):
        f = make_trades(10, T0 + dt.timedelta(seconds=i), seed=100 + i)
        tw.write("raw_messages", pl.DataFrame({"ts_local": f["ts_local"], "venue": f["venue"],
            "conn_id": ["c"] * 10, "recv_seq": list(range(i * 10, i * 10 + 10)), "payload": f["trade_id"]}))
        tw.write("trades", f)
    tw.commit("raw_messages")  # one table committed, the other not: then killed
    print("ready", flush=True)
    time.sleep(600)
""")


def test_a_killed_writers_tail_is_adopted_once_journal_first(lake_dir: Path) -> None:
    lake = Lake(lake_dir)
    p = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(lake_dir), str(ROOT)],
                         stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        # alive: its lock is held, nothing is adopted, readers see every row already
        assert settle(lake) == {}
        assert _delta_rows(lake) == 0 and _count_sql(lake) == 40
        want = _ids(lake)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    done = settle(lake)
    assert done["trades"]["adopted"] == 40 and "raw_messages" not in done  # the journal was in
    assert _delta_rows(lake) == 40 and _delta_rows(lake, "raw_messages") == 40
    assert _ids(lake) == want and _count_sql(lake) == 40
    assert settle(lake) == {}  # twice adds nothing
    assert _delta_rows(lake) == 40


def test_a_commit_that_landed_but_raised_is_not_repeated(lake_dir: Path, monkeypatch) -> None:
    lake = Lake(lake_dir)
    tw = TailWriter(lake, grace=3600)
    tw.write("trades", make_trades(5, T0, seed=1))
    real = Lake.append

    def lands_then_raises(self, table, data, **kw):
        real(self, table, data, **kw)
        raise OSError(28, "No space left on device (checkpoint)")

    monkeypatch.setattr(Lake, "append", lands_then_raises)
    try:
        tw.commit("trades")
    except OSError:
        pass
    monkeypatch.setattr(Lake, "append", real)
    tw.write("trades", make_trades(3, T0, seed=2))
    tw.commit("trades")
    assert _delta_rows(lake) == 8 and _count_sql(lake) == 8
    tw.close()


def test_the_writer_in_tail_mode_commits_everything_when_closed(lake_dir: Path) -> None:
    lake = Lake(lake_dir)
    w = Writer(lake, commit_every=3600)
    w.start()
    for i in range(5):
        assert w.submit(_trade_rows(i))
    deadline = time.monotonic() + 30
    while _count_sql(lake) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _count_sql(lake) == 20 and _delta_rows(lake) == 0  # readable, not yet committed
    w.close()
    assert _delta_rows(lake) == 20 and _count_sql(lake) == 20
    assert w.tail_commits >= 1 and uncommitted(lake.path("trades"), DeltaTable(lake.path("trades"))) == []


def test_a_table_that_gains_an_optional_column_reads_whole(lake_dir: Path) -> None:
    # trades gains `source` on the first backfill: older files (committed or in the tail) lack
    # it. Every reader must still read every row, the old ones with a null source (DuckDB
    # matched files by position and refused the table).
    lake = Lake(lake_dir)
    lake.append("trades", make_trades(3, T0, seed=1))
    tw = TailWriter(lake, grace=3600)
    tw.write("trades", make_trades(4, T0, seed=2))
    rest = make_trades(2, T0, seed=3).with_columns(trade_id=pl.lit("r") + pl.col("trade_id"), source=pl.lit("rest"))
    lake.append("trades", rest)  # the table gains `source`
    tw.write("trades", make_trades(5, T0, seed=4))
    want = [(None, 12), ("rest", 2)]
    for step in ("tail", "committed"):
        con = lab.connect(lake)
        got = con.execute("SELECT source, count(*) FROM trades GROUP BY 1 ORDER BY 1 NULLS FIRST").fetchall()
        con.close()
        assert got == want, step
        by = lake.scan("trades").group_by("source").len().sort("source", nulls_last=False).collect()
        assert by.rows() == want, step
        tw.commit("trades")
    tw.close()


def _trade_rows(i: int, n: int = 4) -> Rows:
    r = Rows()
    f = make_trades(n, T0 + dt.timedelta(seconds=i), seed=i).with_columns(
        pl.col("trade_id") + f"-{i}", pl.col("ts_exchange", "ts_local").dt.epoch("us"))
    for col, values in zip(r.trades, (f[c].to_list() for c in COLUMNS["trades"]), strict=True):
        col.extend(values)
    return r


def test_failing_delta_commits_keep_the_rows_readable_and_say_so(lake_dir: Path, monkeypatch) -> None:
    lake = Lake(lake_dir)
    real = Lake.append

    def broken(self, table, data, **kw):
        raise OSError(5, "Input/output error (the log's disk)")

    monkeypatch.setattr(Lake, "append", broken)
    w = Writer(lake, commit_every=0.05)
    w.start()
    for i in range(3):
        assert w.submit(_trade_rows(i))
        time.sleep(0.1)
    deadline = time.monotonic() + 30
    while not (w.commit_error and w.tail_uncommitted() == 3) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "Input/output error" in w.commit_error and w.tail_uncommitted() == 3
    assert _count_sql(lake) == 12 and _delta_rows(lake) == 0  # nothing lost, nothing committed
    monkeypatch.setattr(Lake, "append", real)  # the disk is back
    while (w.commit_error or w.tail_uncommitted()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert w.commit_error == "" and w.tail_uncommitted() == 0
    w.close()
    assert _delta_rows(lake) == 12 and _count_sql(lake) == 12


def test_a_large_tail_commit_is_written_in_row_groups_of_bounded_size(lake_dir: Path) -> None:
    """30 s of raw messages (~3 MiB of text) in one 128k-row group made a recorder's RSS jump
    by ~6 MiB at each commit: a tail commit's row groups hold ~SMALL_GROUP_BYTES each (at least
    1,024 rows), every row kept, in order."""
    import pyarrow.parquet as pq

    from lab.lake import SMALL_GROUP_BYTES

    lake = Lake(lake_dir)
    tw = TailWriter(lake, grace=3600)
    payload = "x" * 300
    n = 0
    for i in range(10):  # ten 1-s flushes of 1,200 messages of ~300 bytes
        r = Rows()
        for k in range(1200):
            n += 1
            r.raw(1_796_000_000_000_000 + n, "okx", "c1", n, f'{{"n":{n},"p":"{payload}"}}')
        tw.write("raw_messages", r.frames()["raw_messages"])
    assert tw.commit("raw_messages") == 12_000
    (f,) = DeltaTable(str(lake.path("raw_messages"))).file_uris()
    meta = pq.ParquetFile(f).metadata
    sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    assert len(sizes) > 1 and min(sizes[:-1]) >= 1024, sizes
    assert max(sizes) * len(payload) <= 2 * SMALL_GROUP_BYTES, sizes  # ~300 bytes a row
    got = pl.read_parquet(f)["recv_seq"].to_list()
    assert got == list(range(1, 12_001))
    tw.close()


def _flush(tw: TailWriter, k: int) -> None:
    """One recorder flush: the journal's file first, then the trades' (flush ``k`` in both)."""
    f = make_trades(3, T0 + dt.timedelta(seconds=k), seed=k).with_columns(
        pl.format("{}-{}", pl.lit(k), pl.col("trade_id")).alias("trade_id"))
    tw.write("raw_messages", pl.DataFrame({"ts_local": f["ts_local"], "venue": f["venue"], "conn_id": ["c"] * 3,
                                           "recv_seq": [k * 3 + j for j in range(3)], "payload": f["trade_id"]}))
    tw.write("trades", f)


def test_a_live_writer_without_commits_is_committed_by_settle_journal_first(lake_dir: Path, monkeypatch) -> None:
    # Arrange: a writer that leaves its commits to maintenance (a recorder with committer =
    # "maintainer"), and a settle that lists the tail while that writer goes on writing: after
    # each table's listing, one more whole flush lands
    import lab.tail as tail

    lake = Lake(lake_dir)
    tw = TailWriter(lake, grace=3600, commits=False)
    _flush(tw, 0)
    listing = tail._listing
    flushes = iter(range(1, 1000))

    def listing_then_a_flush(table_dir: Path):
        out = listing(table_dir)
        _flush(tw, next(flushes))
        return out

    monkeypatch.setattr(tail, "_listing", listing_then_a_flush)
    for _ in range(4):
        # Act: settle while the writer lives (it holds no lock)
        settle(lake, ["raw_messages", "trades"])
        # Assert: the Delta tables alone never hold a trade whose journal rows they lack
        raw = set(pl.read_delta(str(lake.path("raw_messages")))["payload"])
        trades = set(pl.read_delta(str(lake.path("trades")))["trade_id"])
        assert trades and trades <= raw, sorted(trades - raw)[:5]
    monkeypatch.setattr(tail, "_listing", listing)
    settle(lake, ["raw_messages", "trades"])
    # every row written is committed exactly once, and readers of the tail see each once
    n = 3 * next(flushes)
    assert _delta_rows(lake) == n and _delta_rows(lake, "raw_messages") == n
    assert _count_sql(lake) == n and len(set(_ids(lake))) == n
    assert settle(lake, ["raw_messages", "trades"]) == {}
