"""The lake survives damage and says where it hurts (issue 15).

Each test damages a real Delta lake on disk the way a crash, a full disk or a
stray command does: a truncated or zero-length newest commit, a deleted,
overwritten or truncated data file. The expectations come from what the test
itself wrote and which file it damaged (commit files are read here with plain
``json``), never from the code under test.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import warnings
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import lab
import lab.sql
from lab.cli import main
from lab.errors import DataError
from lab.lake import DamagedTableError, Lake, LakeWarning

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 22, 9, tzinfo=UTC)
BATCHES = (300, 200, 100)  # rows per trades commit (versions 1, 2, 3)
LOG_KINDS = ("truncated_commit", "empty_commit")
FILE_KINDS = ("deleted_file", "overwritten_file", "truncated_file")
KINDS = LOG_KINDS + FILE_KINDS


def trades_batch(n: int, first_id: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    off = np.sort(rng.integers(0, 10_000_000, n))
    t0 = T0 + dt.timedelta(seconds=10 * seed)
    return pl.DataFrame({
        "ts_exchange": [t0 + dt.timedelta(microseconds=int(o)) for o in off],
        "ts_local": [t0 + dt.timedelta(microseconds=int(o) + 2000) for o in off],
        "venue": rng.choice(["binance", "kraken"], n).tolist(),
        "symbol": ["BTC-USDT"] * n,
        "trade_id": [str(first_id + i) for i in range(n)],
        "price": np.round(100 + rng.normal(0, 1, n), 2),
        "qty": np.round(rng.exponential(1, n), 4),
        "side": rng.choice(["buy", "sell"], n).tolist(),
    }, schema_overrides={"ts_exchange": pl.Datetime("us", "UTC"), "ts_local": pl.Datetime("us", "UTC")})


def commit_file(table_dir: Path, version: int) -> Path:
    return table_dir / "_delta_log" / f"{version:020d}.json"


def added_file(table_dir: Path, version: int) -> str:
    """The one data file commit ``version`` added, read straight from the commit JSON."""
    adds = [json.loads(x)["add"]["path"] for x in commit_file(table_dir, version).read_text().splitlines()
            if '"add"' in x]
    assert len(adds) == 1
    return adds[0]


class Damaged:
    """A lake with ``trades`` (3 commits) and ``feed_events`` (1), one kind of damage
    applied to trades' newest commit or to the data file of its commit 2."""

    def __init__(self, data: Path, kind: str) -> None:
        self.data = data
        self.lake = Lake(data / "lake")
        self.batches = [trades_batch(n, sum(BATCHES[:i]), i) for i, n in enumerate(BATCHES)]
        for b in self.batches:
            self.lake.append("trades", b)
        self.events = pl.DataFrame({"ts_local": [T0, T0], "venue": ["binance", "okx"],
                                    "symbol": ["BTC-USDT", "BTC-USDT"], "kind": ["gap", "resync"],
                                    "detail": ["a", "b"]})
        self.lake.append("feed_events", self.events)
        self.tdir = self.lake.path("trades")
        self.kind = kind
        if kind in LOG_KINDS:
            self.file = commit_file(self.tdir, 3)
            self.data_file = added_file(self.tdir, 3)  # what the damaged commit added
            self.data_bytes = (self.tdir / self.data_file).read_bytes()
            raw = self.file.read_bytes()
            self.damaged_bytes = raw[: len(raw) // 2] if kind == "truncated_commit" else b""
            self.lost = 0  # the data file is intact: a repair re-adds its rows
        else:
            self.data_file = added_file(self.tdir, 2)
            self.file = self.tdir / self.data_file
            raw = self.file.read_bytes()
            if kind == "deleted_file":
                self.damaged_bytes = None
            elif kind == "overwritten_file":  # same size, zeros: what a torn write leaves
                self.damaged_bytes = bytes(len(raw))
            else:
                self.damaged_bytes = raw[: len(raw) // 2]
            self.lost = BATCHES[1]
        if self.damaged_bytes is None:
            self.file.unlink()
        else:
            self.file.write_bytes(self.damaged_bytes)

    def expected_trades(self) -> pl.DataFrame:
        keep = [b for i, b in enumerate(self.batches) if not (self.lost and i == 1)]
        return pl.concat(keep).sort("trade_id")


@pytest.fixture(params=KINDS)
def damaged(request, lab_data: Path) -> Damaged:
    return Damaged(lab_data, request.param)


def test_connect_opens_healthy_tables_and_warns_naming_the_damaged_one(damaged):
    with pytest.warns(LakeWarning, match=rf"trades: .*{damaged.file.name}"):
        con = lab.connect(damaged.lake)
    got = pl.from_arrow(con.sql("select * from feed_events order by venue").to_arrow_table())
    assert_frame_equal(got, damaged.events)
    [d] = lab.sql.damaged(con)
    assert (d.table, Path(d.file).name) == ("trades", damaged.file.name)
    assert d.problem
    with pytest.raises(duckdb.Error, match=r"lake table 'trades' is damaged .*lab doctor"):
        con.sql("select count(*) from trades").fetchall()
    with pytest.raises(duckdb.Error, match=r"lake table 'trades' is damaged"):
        con.sql("select * from ohlcv_1s").fetchall()  # a view over trades says so too


def test_connect_on_a_healthy_lake_does_not_warn(lab_data):
    lake = Lake(lab_data / "lake")
    lake.append("trades", trades_batch(10, 0, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        con = lab.connect(lake)
    assert lab.sql.damaged(con) == []
    assert con.sql("select count(*) from trades").fetchall() == [(10,)]


def test_status_lists_the_damaged_table_and_exits_nonzero(damaged, capsys):
    rc = main(["status", "--lake", str(damaged.lake.root), "--run-dir", str(damaged.data / "run")])
    out = capsys.readouterr().out
    assert rc == 1
    assert "DAMAGED" in out and damaged.file.name in out
    assert "feed_events" in out and " 2 rows" in out


def test_doctor_reports_the_damage_and_exits_nonzero(damaged, capsys):
    rc = main(["doctor", "--lake", str(damaged.lake.root)])
    out = capsys.readouterr().out
    assert rc == 1
    trades_block = out.split("trades", 1)[1].split("feed_events", 1)[0]
    assert "DAMAGED" in trades_block and damaged.file.name in trades_block
    assert "feed_events        OK" in out


def test_doctor_repair_restores_a_readable_table_losing_only_the_damaged_file(damaged, capsys):
    rc = main(["doctor", "--repair", "--lake", str(damaged.lake.root)])
    out = capsys.readouterr().out
    assert rc == 0, out

    # Rows: everything written, minus the rows of the damaged data file (none for log damage).
    got = Lake(damaged.lake.root).read("trades").sort("trade_id")
    assert got.height == sum(BATCHES) - damaged.lost
    assert_frame_equal(got, damaged.expected_trades())
    if damaged.lost:
        assert f"LOST: {damaged.lost} rows" in out and damaged.data_file in out
    else:
        assert "nothing lost" in out and f"{BATCHES[2]} rows" in out

    # A clean doctor, a clean connect, appends work again.
    assert main(["doctor", "--lake", str(damaged.lake.root)]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        con = lab.connect(damaged.lake.root)
    assert con.sql("select count(*) from trades").fetchall() == [(sum(BATCHES) - damaged.lost,)]
    Lake(damaged.lake.root).append("trades", trades_batch(5, 10_000, 9))
    assert Lake(damaged.lake.root).read("trades").height == sum(BATCHES) - damaged.lost + 5

    # Quarantine ($LAB_DATA/quarantine/<ts>/) holds copies of what was set aside.
    [qdir] = list((damaged.data / "quarantine").iterdir())
    held = {p.name: p.read_bytes() for p in qdir.rglob("*") if p.is_file()}
    assert "repair.json" in held
    if damaged.damaged_bytes is not None:
        assert held[damaged.file.name] == damaged.damaged_bytes
    if damaged.kind in LOG_KINDS:
        assert held[damaged.data_file] == damaged.data_bytes


@pytest.mark.parametrize("kind", LOG_KINDS)
def test_append_to_a_damaged_log_raises_a_data_error_naming_table_and_cause(kind, lab_data):
    d = Damaged(lab_data, kind)
    before = sorted(os.listdir(d.tdir / "_delta_log"))
    with pytest.raises(DamagedTableError, match=rf"'trades'.*{d.file.name}.*lab doctor") as ei:
        Lake(d.lake.root).append("trades", trades_batch(5, 10_000, 9))
    assert isinstance(ei.value, DataError)
    assert sorted(os.listdir(d.tdir / "_delta_log")) == before  # nothing committed on top


def test_append_by_a_writer_that_opened_the_table_before_the_damage_raises(lab_data):
    writer = Lake(lab_data / "lake")
    writer.append("trades", trades_batch(10, 0, 0))  # this writer now holds the table open
    Lake(lab_data / "lake").append("trades", trades_batch(10, 10, 1))  # another writer: commit 2
    f = commit_file(writer.path("trades"), 2)
    f.write_bytes(f.read_bytes()[:40])
    with pytest.raises(DamagedTableError, match=r"'trades'.*00000000000000000002\.json"):
        writer.append("trades", trades_batch(5, 100, 2))
    assert not commit_file(writer.path("trades"), 3).exists()


def test_repair_of_an_empty_commit_in_the_middle_replays_the_commits_after_it(lab_data, capsys):
    lake = Lake(lab_data / "lake")
    batches = [trades_batch(n, 1000 * i, i) for i, n in enumerate((50, 60, 70, 80))]
    for b in batches:
        lake.append("trades", b)
    commit_file(lake.path("trades"), 3).write_bytes(b"")  # commit 4 stays readable
    with pytest.warns(LakeWarning, match="empty commit"):
        lab.connect(lake)
    assert main(["doctor", "--repair", "--lake", str(lake.root)]) == 0
    got = Lake(lake.root).read("trades").sort("trade_id")
    assert_frame_equal(got, pl.concat(batches).sort("trade_id"))
    assert main(["doctor", "--lake", str(lake.root)]) == 0
    assert "nothing lost" in capsys.readouterr().out


def test_dashboard_sql_path_tolerates_a_damaged_table(lab_data, monkeypatch):
    pytest.importorskip("streamlit")
    d = Damaged(lab_data, "truncated_commit")
    monkeypatch.setenv("LAB_LAKE", str(d.lake.root))
    from streamlit_apps import data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # streamlit warns about running without `streamlit run`
        got = data.sql("select venue from feed_events order by venue")
    assert got["venue"].to_list() == ["binance", "okx"]


def test_maintain_skips_the_damaged_table_and_keeps_the_others(lab_data, capsys):
    d = Damaged(lab_data, "deleted_file")
    for _ in range(3):
        d.lake.append("feed_events", d.events)
    result = Lake(d.lake.root).maintain(min_files=2, grace=dt.timedelta(0))
    assert d.data_file in result["trades"]["damaged"][0]
    assert result["feed_events"]["files"] == 1  # compacted as usual
    assert main(["maintain", "--lake", str(d.lake.root)]) == 1
    assert Lake(d.lake.root).read("feed_events").height == 8



def test_opening_a_table_with_an_unreadable_commit_names_it(lab_data):
    d = Damaged(lab_data, "truncated_commit")
    with pytest.raises(DamagedTableError, match=rf"'trades'.*{d.file.name}.*lab doctor"):
        d.lake.version("trades")
    assert d.lake.version("feed_events") == 1


def test_repair_of_a_truncated_compaction_commit_adds_no_duplicate(lab_data, capsys):
    lake = Lake(lab_data / "lake")
    batches = [trades_batch(40, 100 * i, i) for i in range(6)]
    for b in batches:
        lake.append("trades", b)
    from deltalake import DeltaTable

    lake._compact_sorted("trades", DeltaTable(lake.path("trades")), 128 * 1024 * 1024)  # commit 7
    f = commit_file(lake.path("trades"), 7)
    assert '"remove"' in f.read_text()
    f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])  # its removes are lost, its add kept
    assert main(["doctor", "--repair", "--lake", str(lake.root)]) == 0
    got = Lake(lake.root).read("trades").sort("trade_id")
    assert_frame_equal(got, pl.concat(batches).sort("trade_id"))  # each row once
    assert "nothing lost" in capsys.readouterr().out
