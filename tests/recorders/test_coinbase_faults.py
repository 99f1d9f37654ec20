"""Coinbase under ``out_of_order`` and ``silent`` faults: the recorded book equals
the simulator's true book at every checkpoint and never crosses.

Coinbase numbers every message of a connection (``sequence_num``); the venue
documents it as the way to see a missed or reordered message. Before the fix the
simulator numbered messages when it sent them, so a swapped pair arrived with
consecutive numbers and a silent stretch dropped messages without using theirs:
the client could not see either, and its book went wrong (crossed for tens of
seconds in a 12-minute heavy run). Only those two faults run here, at high rates,
with a fixed seed.
"""

from __future__ import annotations

import polars as pl
from simrun import book_mismatches, read_truth, start_recorder, write_config

from lab.lake import Lake

SYMS = ["BTC-USD", "ETH-USD"]


def test_coinbase_book_matches_truth_after_out_of_order_and_silent_faults(tmp_path):
    from recorders.sim import FaultConfig, SimConfig, Simulator

    faults = FaultConfig(out_of_order=40, silent=30, silent_s=0.5)
    sim = Simulator(SimConfig(venues=("coinbase",), assets=("BTC", "ETH"), cross=False, port_base=0, seed=3,
                              faults=faults, truth_dir=str(tmp_path / "truth"), truth_book_every=1))
    lake = tmp_path / "lake"
    with sim.running_in_thread():
        cfg = write_config(tmp_path / "rec.toml", sim.urls(), ["coinbase"], lake, "cbfaults",
                           flush_interval=0.3, maintain_every=0, backoff_base=0.2)
        rec = start_recorder(cfg, "--duration", "15", log=tmp_path / "recorder.log")
        try:
            assert rec.wait(timeout=120) == 0, (tmp_path / "recorder.log").read_text()[-3000:]
        finally:
            if rec.poll() is None:
                rec.kill()
    truth = read_truth(tmp_path / "truth")
    kinds = {f["kind"] for f in truth["faults"]}
    assert {"out_of_order", "silent"} <= kinds, kinds  # both faults happened
    lk = Lake(lake)
    compared, bad = book_mismatches(lk, truth["books"], "coinbase", SYMS)
    assert compared >= 100, compared
    assert not bad, f"{len(bad)}/{compared} checkpoints wrong, e.g. {bad[:2]}"
    q = lk.read("quotes").filter(pl.col("venue") == "coinbase")
    assert q.height > 100
    assert q.filter(pl.col("bid_px") >= pl.col("ask_px")).height == 0
    ev = lk.read("feed_events").filter(pl.col("venue") == "coinbase")
    assert ev.filter(pl.col("kind") == "crossed_book").height == 0  # never needed: every fault was seen
    assert ev.filter(pl.col("kind").is_in(["gap", "out_of_order"])).height > 0
