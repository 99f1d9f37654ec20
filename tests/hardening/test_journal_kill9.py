"""The journal is the record: after ``kill -9`` of a real recorder at random
moments (three times; ten in the `slow` variant; restarting on the same lake), ``lab rebuild --from-journal``
gives back every row the tables hold, and the only rows it adds are each killed
process's last, unfinished batch.

Before the fix the writer committed ``raw_messages`` last, so a kill between two
table commits left rows in the tables whose messages were not in the journal.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from lab.lake import Lake

ROOT = Path(__file__).resolve().parents[2]
VENUES = {"binance": ["BTC-USDT", "ETH-USDT"], "coinbase": ["BTC-USD", "ETH-USD"],
          "kraken": ["BTC-USD", "ETH-USD"], "okx": ["BTC-USDT", "ETH-USDT"], "bybit": ["BTC-USDT", "ETH-USDT"]}
TABLES = ("trades", "book_updates", "quotes", "book_snapshots")


def _config(path: Path, urls: dict[str, str], lake: Path) -> Path:
    lines = ["[recorder]", 'name = "kill9"', f'lake = "{lake}"', f'status_dir = "{lake.parent / "run"}"',
             # tail files every 0.25 s, Delta commits every 1 s: a kill lands at any point of either
             "flush_interval = 0.25", "commit_interval = 1.0", "maintain_every = 0"]
    for v, syms in VENUES.items():
        lines += ["", "[[venue]]", f'venue = "{v}"', f"symbols = {syms!r}".replace("'", '"'),
                  f'base_url = "{urls[v]}"']
        if f"{v}_rest" in urls:  # REST snapshots (binance) and the backfill of each restart's hole
            lines.append(f'rest_url = "{urls[v + "_rest"]}"')
    path.write_text("\n".join(lines) + "\n")
    return path


def _commits(lake: Path) -> int:
    d = lake / "raw_messages" / "_delta_log"
    return len(list(d.glob("*.json"))) if d.exists() else 0


def test_after_repeated_kill_9_the_journal_rebuilds_every_row_of_the_tables(tmp_path):
    _kill_and_rebuild(tmp_path, kills=3, seed=15)


@pytest.mark.slow
def test_after_many_kill_9_the_journal_rebuilds_every_row_of_the_tables(tmp_path):
    _kill_and_rebuild(tmp_path, kills=10, seed=16)


def _kill_and_rebuild(tmp_path: Path, kills: int, seed: int) -> None:
    from recorders.sim import SimConfig, Simulator

    rng = random.Random(seed)
    lake = tmp_path / "lake"
    sim = Simulator(SimConfig(venues=tuple(VENUES), assets=("BTC", "ETH"), cross=False, port_base=0, seed=9))
    windows = []
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with sim.running_in_thread():
        cfg = _config(tmp_path / "rec.toml", sim.urls(), lake)
        for k in range(kills):
            start = time.time()
            p = subprocess.Popen([sys.executable, "-m", "lab.cli", "record", "--config", str(cfg)], cwd=ROOT,
                                 env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"rec{k}.log", "wb"))
            try:
                n0 = _commits(lake)
                deadline = time.monotonic() + 60
                while _commits(lake) < n0 + 2:  # this process is writing
                    assert p.poll() is None and time.monotonic() < deadline, (tmp_path / f"rec{k}.log").read_text()
                    time.sleep(0.05)
                time.sleep(rng.uniform(0.0, 1.5))  # then at a random point of its write cycle
            finally:
                p.send_signal(signal.SIGKILL)
                p.wait(30)
            windows.append((int(start * 1e6), int(time.time() * 1e6)))

    out = tmp_path / "rebuilt"
    r = subprocess.run([sys.executable, "-m", "lab.cli", "rebuild", "--from-journal", "--lake", str(lake),
                        "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    src, dst = Lake(lake), Lake(out)
    extra_total = 0
    backfills = 0
    for table in TABLES:
        a = src.read(table)
        b = dst.read(table)
        assert a.height > 0, table
        if "source" in a.columns:  # trades backfilled over REST are not journaled: rebuild copies them
            # (minus the ids the journal holds: trades a killed process received but never committed,
            # which the restarted recorder then backfilled)
            rest_a, rest_b = (x.filter(pl.col("source") == "rest") for x in (a, b))
            a, b = (x.filter(pl.col("source").is_null()) for x in (a, b))  # the rest comes from the journal
            key = ["venue", "symbol", "trade_id"]
            same = ["venue", "symbol", "trade_id", "price", "qty", "side"]
            assert rest_b.join(rest_a, on=rest_a.columns, how="anti", nulls_equal=True).height == 0, \
                f"{table}: rebuilt backfilled rows the source lake does not hold"
            lost = rest_a.join(rest_b, on=key, how="anti").join(b, on=same, how="anti")
            assert lost.height == 0, f"{table}: backfilled rows neither carried over nor in the journal: {lost.head(3)}"
            backfills += rest_a.height
        cols = a.columns
        # every row of the table comes back from the journal, as often as it is there
        ca = a.group_by(cols).len()
        cb = b.group_by(cols).len()
        j = ca.join(cb, on=cols, how="left", suffix="_rebuilt", nulls_equal=True)
        short = j.filter(pl.col("len_rebuilt").is_null() | (pl.col("len_rebuilt") < pl.col("len")))
        assert short.height == 0, f"{table}: {short.height} rows not in the rebuild, e.g. {short.head(3).to_dicts()}"
        # and what the rebuild adds is only the unfinished tail of a killed process
        extra = b.join(a, on=cols, how="anti", nulls_equal=True)
        extra_total += extra.height
        tl_a = a["ts_local"].dt.epoch("us")
        tl_x = extra["ts_local"].dt.epoch("us")
        for w0, w1 in windows:
            last = tl_a.filter((tl_a >= w0) & (tl_a <= w1)).max()
            early = tl_x.filter((tl_x >= w0) & (tl_x <= w1) & (tl_x <= (last or 0)))
            assert early.len() == 0, f"{table}: rebuilt rows before the process's last written row"
    # the journal itself is whole: one row per received message, none twice
    raw = src.read("raw_messages")
    assert raw.select("conn_id", "recv_seq").is_duplicated().sum() == 0
    assert raw.height > 1000 and extra_total >= 0
    print(f"{backfills} backfilled trade(s) in the source lake; {extra_total} row(s) of unfinished tails rebuilt")
