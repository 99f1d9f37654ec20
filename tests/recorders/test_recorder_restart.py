"""kill -9 mid-run, then restart on the same lake: the lake stays readable,
no trade is duplicated, and recording continues."""

from __future__ import annotations

import signal
import time

import polars as pl
from simrun import SYMBOLS, iso_us, read_truth, start_recorder, wait_for, windows, write_config

import lab
from lab.lake import Lake


def test_kill_9_then_restart_duplicates_nothing_and_keeps_recording(tmp_path, quiet_sim):
    sim = quiet_sim
    venues = ("binance", "coinbase", "kraken")
    lake = tmp_path / "lake"
    cfg = write_config(tmp_path / "rec.toml", sim.urls(), venues, lake, "restart",
                       flush_interval=0.3, commit_interval=1.0, maintain_every=0)  # tail and commits
    first = start_recorder(cfg, log=tmp_path / "first.log")
    try:
        lk = Lake(lake)
        wait_for(lambda: lk.exists("trades") and lk.version("trades") >= 3, 90,
                 what="a few trade commits")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    killed_at = time.time()
    before = Lake(lake).read("trades")
    second = start_recorder(cfg, "--duration", "6", log=tmp_path / "second.log")
    assert second.wait(90) == 0, (tmp_path / "second.log").read_text()[-2000:]
    sim.truth.flush()

    lk = Lake(lake)
    trades = lk.read("trades")
    assert trades.select("venue", "symbol", "trade_id").is_duplicated().sum() == 0
    after = trades.filter(pl.col("ts_local").dt.epoch("us") > int(killed_at * 1e6))
    assert after.height > 0 and set(after["venue"]) == set(venues)
    assert before.height > 0 and trades.height > before.height
    # readable through DuckDB too
    con = lab.connect(lake)
    assert con.execute("SELECT count(*) FROM trades").fetchall()[0][0] == trades.height
    # no hole in what the restarted recorder saw: every trade the simulator published on
    # its connection, between the first and last trade it recorded, is in the lake
    truth = read_truth(sim.truth_dir)
    got = set(zip(trades["venue"], trades["symbol"], trades["trade_id"]))
    after_ids = set(zip(after["venue"], after["symbol"], after["trade_id"]))
    for v in venues:
        a, b = max(windows(truth["connections"], v))  # the restarted recorder's connection
        for sym in SYMBOLS[v]:
            sent = [t for t in truth["trades"] if t["venue"] == v and t["symbol"] == sym
                    and a <= iso_us(t["ts_exchange"]) <= b]
            seen = [i for i, t in enumerate(sent) if (v, sym, t["trade_id"]) in after_ids]
            assert seen, (v, sym)
            missing = [t for t in sent[seen[0]:seen[-1] + 1] if (v, sym, t["trade_id"]) not in got]
            assert not missing, (v, missing[:3])
