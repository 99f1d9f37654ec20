"""The dashboard server's long-lived state stays bounded (issue 17: Streamlit memory).

The server keeps one DeltaTable per lake table and brings it up to date
incrementally; delta-rs' incremental snapshot keeps every commit it applied, so
after ``WRITER_REOPEN_EVERY`` commits the table is opened afresh, as the lake's
writers do. And the memory report thread starts once per process.
"""

from __future__ import annotations

import datetime as dt
import time

import polars as pl

from lab.lake import WRITER_REOPEN_EVERY, Lake


def _event(i: int) -> pl.DataFrame:
    t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=i)
    return pl.DataFrame({"ts_local": [t], "venue": ["binance"], "symbol": ["BTC-USDT"], "kind": ["gap"],
                         "detail": [f"event {i}"]})


def test_cached_table_is_reopened_after_many_commits_and_stays_current(tmp_path):
    from streamlit_apps import data

    # Arrange: a table the server has open, then a recorder's worth of commits
    lake = Lake(tmp_path / "lake")
    lake.append("feed_events", _event(0))
    root = str(lake.root)
    first = data._with_table(root, "feed_events", lambda t: t)
    for i in range(1, WRITER_REOPEN_EVERY + 2):
        lake.append("feed_events", _event(i))
    time.sleep(data._UPDATE_EVERY_S * 1.5)  # past the update throttle (not a timing assertion)

    # Act
    later = data._with_table(root, "feed_events", lambda t: t)
    rows = data._with_table(root, "feed_events", lambda t: pl.scan_delta(t).select(pl.len()).collect().item())

    # Assert: a fresh handle (the grown incremental snapshot is let go), at the newest version,
    # and every row is read
    assert later is not first
    assert later.version() == lake.version("feed_events")
    assert rows == WRITER_REOPEN_EVERY + 2


def test_memory_report_thread_starts_once_and_says_where_the_memory_is(tmp_path, monkeypatch):
    import json
    import threading

    from streamlit_apps import memory

    out = tmp_path / "memreport.jsonl"
    monkeypatch.setenv("LAB_STREAMLIT_MEMREPORT", str(out))

    # Act: the app calls bound() on every rerun
    results = [memory.bound(every_s=0.2) for _ in range(3)]
    deadline = time.monotonic() + 60
    while not (out.exists() and out.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.2)

    # Assert: one thread however often it is called, and its report names the parts
    assert results == [True, True, True]
    assert sum(t.name == "lab-malloc-trim" for t in threading.enumerate()) == 1
    rep = json.loads(out.read_text().splitlines()[0])
    assert {"glibc_in_use", "python_objects", "polars_frames", "st_cache_data", "tokio_threads"} <= set(rep)


def test_the_server_collects_cycles_every_so_often_instead_of_after_every_rerun():
    """Streamlit's collection after every script run is off (a live page reruns every second);
    the lab's own thread collects instead. With Python's automatic collector off, a reference
    cycle is freed only by that thread."""
    import argparse
    import subprocess
    import sys
    import tomllib
    from pathlib import Path

    from lab.apps import demo

    root = Path(__file__).resolve().parents[2]
    assert tomllib.loads((root / ".streamlit" / "config.toml").read_text())["runner"]["postScriptGC"] is False
    p = argparse.ArgumentParser()
    demo.add_arguments(p)
    (st,) = [s for s in demo.services(p.parse_args([]), "t0ken") if s.name == "streamlit"]
    assert st.argv[st.argv.index("--runner.postScriptGC") + 1] == "false"

    code = (
        "import gc, sys, time, weakref\n"
        "from streamlit_apps import memory\n"
        "gc.disable()\n"
        "class Node: pass\n"
        "a, b = Node(), Node(); a.b, b.a = b, a\n"
        "alive = weakref.ref(a); del a, b\n"
        "print(memory.collect_periodically(float(sys.argv[1])))\n"
        "t = time.monotonic()\n"
        "while alive() is not None and time.monotonic() - t < float(sys.argv[2]): time.sleep(0.05)\n"
        "print(alive() is None)\n")

    def run(every: str, wait_s: str) -> list[str]:
        r = subprocess.run([sys.executable, "-c", code, every, wait_s], cwd=root, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    assert run("0.2", "30") == ["True", "True"]  # the thread runs, and it freed the cycle
    assert run("0", "1") == ["False", "False"]  # 0: no thread, and nothing else frees it
