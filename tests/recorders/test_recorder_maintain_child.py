"""The recorder compacts its lake in a child process, never in its own.

A compaction pass reads whole files and rewrites them sorted; files under the target size are
merged again at every pass, so a pass's memory grows with the table's history. Run inside the
recorder, every pass raised the recorder's peak RSS (294 -> 449 MiB over a 16-minute soak,
bench/bench_soak.py) while its RSS between passes stayed flat. In a child process the memory
goes back to the system when the pass ends.
"""

from __future__ import annotations

import json

import psutil
from simrun import start_recorder, wait_for, write_config

from lab.lake import Lake


def _maintain_children(pid: int) -> list[psutil.Process]:
    try:
        kids = psutil.Process(pid).children()
    except psutil.Error:
        return []
    out = []
    for k in kids:
        try:
            if any("maintain" in part for part in k.cmdline()):
                out.append(k)
        except psutil.Error:
            pass
    return out


def _compactions(table_dir) -> int:
    """Commits in the table's log made by the lake's sorted compaction."""
    n = 0
    for f in sorted((table_dir / "_delta_log").glob("*.json")):
        for line in f.read_text().splitlines():
            info = json.loads(line).get("commitInfo")
            if info and info.get("lab.operation") == "compact-sorted":
                n += 1
    return n


def test_recorder_compacts_the_lake_in_a_child_process(tmp_path, quiet_sim):
    lake = tmp_path / "lake"
    cfg = write_config(tmp_path / "rec.toml", quiet_sim.urls(), ("binance", "coinbase"), lake, "maint",
                       flush_interval=0.1, commit_interval=0, maintain_every=3.0)  # many small commits
    rec = start_recorder(cfg, "--duration", "20", log=tmp_path / "rec.log")
    try:
        passes = wait_for(lambda: _maintain_children(rec.pid), 60, every=0.02,
                          what="a maintenance pass as a child process of the recorder")
        assert passes[0].pid != rec.pid
        assert rec.wait(90) == 0, (tmp_path / "rec.log").read_text()[-2000:]
    finally:
        if rec.poll() is None:
            rec.kill()
            rec.wait(30)
    # the passes did their work: small commits were merged, and no row was lost or doubled
    lk = Lake(lake)
    assert _compactions(lk.path("trades")) + _compactions(lk.path("raw_messages")) > 0
    trades = lk.read("trades")
    assert trades.height > 0
    assert trades.select("venue", "symbol", "trade_id").is_duplicated().sum() == 0
