"""The lake's Delta log stays short: appends never clean it, maintenance does (and not while a
lease holds an old version), and tables made by older versions get the short retention.

Why it matters: every commit lists ``_delta_log``; with a 2-hour retention a recorder's
commits grew several times dearer over its first two hours."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

import lab.lake as lake_mod
from lab.distributed import lease
from lab.lake import Lake
from tests.foundation.test_lake_api import T0, make_trades


def _json_logs(lake: Lake, table: str) -> list[Path]:
    return sorted((lake.path(table) / "_delta_log").glob("*.json"))


def _age_logs(lake: Lake, table: str, minutes: float) -> None:
    """Make every log entry look ``minutes`` old (delta-rs ages entries by modification time)."""
    old = time.time() - minutes * 60
    for p in _json_logs(lake, table):
        os.utime(p, (old, old))


def _append(lake: Lake, n: int, start: int) -> None:
    for i in range(start, start + n):
        lake.append("trades", make_trades(5, T0 + dt.timedelta(seconds=i), seed=i))


def test_appends_keep_old_log_entries_and_maintenance_drops_them(lake_dir: Path) -> None:
    # Arrange: 120 commits whose entries are all past the retention
    lake = Lake(lake_dir)
    _append(lake, 120, 0)
    _age_logs(lake, "trades", 30)
    # Act: 90 more commits cross a checkpoint (version 200), where delta-rs' own hook would clean
    _append(lake, 90, 120)
    # Assert: the writer dropped nothing; maintenance drops the expired entries a checkpoint
    # covers (versions 0-98: checkpoint 100 is the newest one before the expired ones end)
    assert int(_json_logs(lake, "trades")[0].stem) == 0 and len(_json_logs(lake, "trades")) >= 210
    lake.maintain("trades", min_files=10_000)  # no compaction: only the log is under test
    left = _json_logs(lake, "trades")
    assert int(left[0].stem) >= 99, f"log entries from version {int(left[0].stem)} left after maintenance"
    assert lake.scan("trades").collect().height == 210 * 5 + 0  # every row still there
    assert DeltaTable(lake.path("trades")).version() >= 210


def test_a_lease_keeps_the_log_entries_of_its_version(lake_dir: Path) -> None:
    lake = Lake(lake_dir)
    _append(lake, 150, 0)
    v = DeltaTable(lake.path("trades")).version()
    _age_logs(lake, "trades", 30)
    with lease(lake, {"trades": v - 40}):
        lake.maintain("trades", min_files=10_000)
        # Assert: the leased version still loads, with its rows
        t = DeltaTable(lake.path("trades"), version=v - 40)
        assert t.version() == v - 40
    assert int(_json_logs(lake, "trades")[0].stem) == 0  # kept for the lease
    lake.maintain("trades", min_files=10_000)  # the lease is gone: now the entries go
    assert int(_json_logs(lake, "trades")[0].stem) >= 99


def test_maintenance_gives_an_older_table_the_short_log_retention(lake_dir: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange: a table made with the retention older versions used
    monkeypatch.setitem(lake_mod._TABLE_CONFIG, "delta.logRetentionDuration", "interval 2 hours")
    lake = Lake(lake_dir)
    lake.append("trades", make_trades(50, T0))
    conf = DeltaTable(lake.path("trades")).metadata().configuration
    assert conf["delta.logRetentionDuration"] == "interval 2 hours"
    monkeypatch.undo()
    # Act
    lake.maintain()
    # Assert: the current setting, the rows intact
    conf = DeltaTable(lake.path("trades")).metadata().configuration
    assert conf["delta.logRetentionDuration"] == lake_mod.LOG_RETENTION
    assert lake.scan("trades").collect().height == 50
