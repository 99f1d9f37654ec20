"""The recorder status file: one typed struct (lab.recorder.RecorderStatus) written by the
recorder and decoded by `lab status`, the notebook widgets and the dashboards."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from simrun import ROOT

from lab.errors import DataError
from lab.recorder import (
    RecorderStatus,
    SymbolStatus,
    VenueStatus,
    WriteOutage,
    decode_status,
    encode_status,
    read_status,
    status_dict,
)
from lab.widgets import recorder_status

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)

# A status file exactly as the recorder wrote it before the struct (json.dumps(dict, indent=1),
# "+00:00" times, padded with spaces to a 4 KiB block): a running old recorder's file.
OLD = {
    "name": "old", "pid": 4242, "run_id": "20260101T000000-4242",
    "started": (NOW - dt.timedelta(hours=1)).isoformat(), "updated": NOW.isoformat(),
    "lake": "/data/lake", "bus": None, "lag_s": 0.012, "queue_depth": 1, "queue_bound": 64,
    "rows_written": {"trades": 10, "quotes": 20}, "commits": 3, "lost_rows": 0, "lost_batches": 0,
    "lost_by_table": {}, "write_errors": 0, "pending_rows": 5, "write_outage": None,
    "last_write_age_s": 0.4, "rest_calls": 2, "rest_errors": 0, "bus_dropped": 0,
    "venues": {"binance": {
        "lag_s": 0.01, "connected": True, "connections": 1, "url": "ws://127.0.0.1:1/ws",
        "msgs_per_s": 55.5, "messages": 1000, "gaps": 1, "resyncs": 2, "checksum_failures": 0,
        "rejected": 0, "duplicate_trades": 0, "duplicate_messages": 0, "bad_values": 0,
        "crossed_books": 0, "reconnects": 3, "rotations": 0, "stale": 0, "last_error": "",
        "symbols": {"BTC-USDT": {"last_msg_age_s": 0.2, "book_synced": True},
                    "ETH-USDT": {"last_msg_age_s": None, "book_synced": False}}}},
}


def _old_file(path: Path, body: dict) -> Path:
    text = json.dumps(body, indent=1).encode()
    path.write_bytes(text + b" " * (4096 - len(text) % 4096))
    return path


def test_status_round_trips_through_the_file_format() -> None:
    st = RecorderStatus(
        name="r", pid=1, run_id="x", started=NOW, updated=NOW, lake="/l", bus="ws://127.0.0.1:9",
        lag_s=0.5, rows_written={"trades": 3}, commits=1,
        write_outage=WriteOutage(since="2026-01-01T00:00:00Z", for_s=1.5, failing_tables={"trades": "disk full"}),
        venues={"kraken": VenueStatus(connected=True, msgs_per_s=2.5, gaps=1, last_error="boom",
                                      symbols={"BTC-USD": SymbolStatus(last_msg_age_s=0.1, book_synced=True)})})
    assert decode_status(encode_status(st)) == st
    # the plain-JSON view is what json.loads of the file gives
    assert status_dict(st) == json.loads(encode_status(st))


def test_an_old_recorders_padded_file_reads_with_every_value(tmp_path: Path) -> None:
    st = read_status(_old_file(tmp_path / "recorder-old.json", OLD))
    assert st.name == "old" and st.pid == 4242 and st.updated == NOW
    assert st.rows_written == {"trades": 10, "quotes": 20} and st.pending_rows == 5
    v = st.venues["binance"]
    assert (v.connected, v.msgs_per_s, v.gaps, v.resyncs, v.reconnects) == (True, 55.5, 1, 2, 3)
    assert v.symbols["BTC-USDT"].book_synced and v.symbols["ETH-USDT"].last_msg_age_s is None
    # and the dict every reader used before has the same keys and values
    assert status_dict(st) == {**OLD, "started": st.started.isoformat().replace("+00:00", "Z"),
                               "updated": st.updated.isoformat().replace("+00:00", "Z"),
                               # fields added since that recorder: their defaults
                               "tail_uncommitted": 0, "tail_commit_error": ""}


def test_a_partial_file_with_unknown_fields_reads_with_defaults(tmp_path: Path) -> None:
    body = {"name": "p", "updated": NOW.isoformat(), "added_by_a_newer_recorder": {"x": 1},
            "venues": {"okx": {"gaps": 4, "new_counter": 9}}}
    st = read_status(_old_file(tmp_path / "recorder-p.json", body))
    assert st.name == "p" and st.pid == -1 and st.rows_written == {} and st.write_outage is None
    assert st.venues["okx"].gaps == 4 and st.venues["okx"].connected is False
    assert st.venues["okx"].symbols == {} and st.venues["okx"].last_error == ""


@pytest.mark.parametrize("content", [b"not json at all", b"[1, 2]", b'{"pid": "twelve"}', b""])
def test_a_garbage_file_is_a_clear_data_error(tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "recorder-bad.json"
    f.write_bytes(content)
    with pytest.raises(DataError) as e:
        read_status(f)
    msg = str(e.value)
    assert str(f) in msg and "not a recorder status file" in msg and "\n" not in msg
    # the widget shows the reason instead of failing
    assert recorder_status(f)["state"].startswith("unreadable status: ")


def test_lab_status_lists_good_files_and_names_the_garbage_one(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    _old_file(run / "recorder-old.json", {**OLD, "pid": os.getpid()})
    (run / "recorder-bad.json").write_text("{ truncated")
    r = subprocess.run([sys.executable, "-m", "lab.cli", "status", "--run-dir", str(run), "--no-lake"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "LAB_DATA": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert "recorder old pid" in r.stdout and "binance" in r.stdout and "BTC-USDT" in r.stdout
    err = [line for line in r.stderr.splitlines() if "recorder-bad.json" in line]
    assert len(err) == 1 and err[0].startswith("lab status: skipped ") and "not a recorder status" in err[0]
