"""kill -9 mid-run, then restart on the same lake: the lake stays readable,
no trade is duplicated, and recording continues."""

from __future__ import annotations

import os
import signal
import time

import polars as pl

import lab
from lab.lake import Lake
from simrun import SYMBOLS, iso_us, read_truth, sim_venues, start_recorder, wait_for, windows, write_config


def test_kill_9_then_restart_duplicates_nothing_and_keeps_recording(tmp_path):
    from recorders.sim import SimConfig, Simulator

    venues = tuple(v for v in sim_venues() if v in ("binance", "coinbase", "kraken"))
    lake = tmp_path / "lake"
    sim = Simulator(SimConfig(venues=venues, assets=("BTC", "ETH"), port_base=0, seed=5,
                              truth_dir=str(tmp_path / "truth"), truth_book_every=0))
    with sim.running_in_thread():
        cfg = write_config(tmp_path / "rec.toml", sim.urls(), venues, lake, "restart",
                           flush_interval=0.3, maintain_every=0)
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
        second = start_recorder(cfg, "--duration", "8", log=tmp_path / "second.log")
        assert second.wait(90) == 0, (tmp_path / "second.log").read_text()[-2000:]

    lk = Lake(lake)
    trades = lk.read("trades")
    assert trades.select("venue", "symbol", "trade_id").is_duplicated().sum() == 0
    after = trades.filter(pl.col("ts_local").dt.epoch("us") > int(killed_at * 1e6))
    assert after.height > 0 and set(after["venue"]) == set(venues)
    assert before.height > 0 and trades.height > before.height
    # readable through DuckDB too
    con = lab.connect(lake)
    assert con.execute("SELECT count(*) FROM trades").fetchall()[0][0] == trades.height
    # every trade the simulator sent while the restarted recorder was connected is there
    truth = read_truth(tmp_path / "truth")
    got = set(zip(trades["venue"], trades["symbol"], trades["trade_id"]))
    for v in venues:
        wins = [(a + 1_000_000, b - 1_000_000) for a, b in windows(truth["connections"], v)
                if a > killed_at * 1e6]
        sent = [t for t in truth["trades"] if t["venue"] == v and t["symbol"] in SYMBOLS[v]
                and any(a <= iso_us(t["ts_exchange"]) <= b for a, b in wins)]
        missing = [t for t in sent if (v, t["symbol"], t["trade_id"]) not in got]
        assert not missing, (v, missing[:3])
