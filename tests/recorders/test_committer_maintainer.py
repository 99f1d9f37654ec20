"""A recorder with ``committer = "maintainer"`` (lab demo's): it writes only its tail and never
loads delta-rs; ``lab maintain`` commits the tail while it records, a kill -9 loses nothing, and
a clean stop leaves every row in the Delta tables themselves (issue 17: recorder RSS)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
from simrun import ROOT, start_recorder, wait_for, write_config

import lab
from lab.lake import Lake
from lab.tail import uncommitted


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def _delta(lake: Path, table: str) -> pl.DataFrame:
    """The table as a plain Delta reader sees it (its snapshot, no tail)."""
    return pl.read_delta(str(lake / table))


def _sql_count(lake: Path, table: str) -> int:
    con = lab.connect(lake)
    try:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


def test_maintainer_commits_a_recorder_that_never_loads_delta_rs(tmp_path, quiet_sim):
    # Arrange: a recorder that leaves its commits to maintenance, and `lab maintain` beside it
    venues = ("binance", "coinbase")
    lake = tmp_path / "lake"
    cfg = write_config(tmp_path / "rec.toml", quiet_sim.urls(), venues, lake, "maint",
                       flush_interval=0.3, commit_interval=1.0, maintain_every=0, committer="maintainer")
    rec = start_recorder(cfg, log=tmp_path / "rec.log")
    mnt = None
    try:
        # Act 1: it records; readers of the lab see its rows before any commit of theirs
        wait_for(lambda: (lake / "trades" / "_delta_log").is_dir() and _sql_count(lake, "trades") > 0, 90,
                 what="trades readable through lab.connect")
        # Assert: Polars is mapped (the check sees libraries), delta-rs never is
        maps = _maps(rec.pid)
        assert "polars" in maps
        assert f"{os.sep}deltalake{os.sep}" not in maps, "the recorder loaded delta-rs"
        assert _delta(lake, "trades").height == 0  # nothing commits yet: no maintainer runs
        mnt = subprocess.Popen([sys.executable, "-m", "lab.cli", "maintain", "--lake", str(lake), "--every", "2"],
                               cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Act 2: the maintainer commits the live recorder's tail, journal included
        wait_for(lambda: _delta(lake, "trades").height > 0 and _delta(lake, "raw_messages").height > 0, 90,
                 what="the maintainer's commits of the live tail")
        assert f"{os.sep}deltalake{os.sep}" not in _maps(rec.pid)
    finally:
        rec.send_signal(signal.SIGKILL)  # killed mid-run: its last files are in the tail only
        rec.wait(30)
        if mnt is not None:
            mnt.terminate()
            mnt.wait(60)
    killed = Lake(lake).scan("trades").collect()
    assert killed.height > 0
    # Act 3: a restart (its start-up commits the tail) that stops cleanly
    second = start_recorder(cfg, "--duration", "4", log=tmp_path / "second.log")
    assert second.wait(120) == 0, (tmp_path / "second.log").read_text()[-2000:]
    # Assert: every row is in the Delta tables themselves, once, and nothing is left uncommitted
    for table in ("raw_messages", "trades", "book_updates"):
        assert not uncommitted(lake / table, Lake(lake).delta(table)), table
        assert _delta(lake, table).height == _sql_count(lake, table) > 0, table
    trades = _delta(lake, "trades")
    assert trades.select("venue", "symbol", "trade_id").is_duplicated().sum() == 0
    ids = set(zip(trades["venue"], trades["symbol"], trades["trade_id"]))
    assert ids >= set(zip(killed["venue"], killed["symbol"], killed["trade_id"]))  # the kill lost nothing
    assert trades.height > killed.height  # and the second run recorded
    log = (tmp_path / "second.log").read_text()
    assert "Traceback" not in log, log[-2000:]


def test_a_bad_committer_is_refused_in_one_line(tmp_path, quiet_sim):
    cfg = write_config(tmp_path / "rec.toml", quiet_sim.urls(), ("binance",), tmp_path / "lake", "bad",
                       committer="nobody")
    p = start_recorder(cfg, log=tmp_path / "rec.log")
    assert p.wait(60) == 2
    out = (tmp_path / "rec.log").read_text()
    assert "committer" in out and "'nobody'" in out and "Traceback" not in out
    cfg = write_config(tmp_path / "rec2.toml", quiet_sim.urls(), ("binance",), tmp_path / "lake", "bad",
                       committer="maintainer", commit_interval=0)
    p = start_recorder(cfg, log=tmp_path / "rec2.log")
    assert p.wait(60) == 2
    assert "commit_interval must be > 0" in (tmp_path / "rec2.log").read_text()
