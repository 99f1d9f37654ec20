"""`lab simulate --continue-ids LAKE`: the live simulator's trade ids continue a lake's, so the demo's
seeded history and its live trades form one tape (the recorder's backfill then sees no false hole)."""

from __future__ import annotations

import argparse
import datetime as dt

import polars as pl

from lab.apps.simulate import _next_trade_ids, add_arguments
from lab.lake import Lake
from recorders.sim.bulk import CHUNK_NS, write_to_lake
from recorders.sim.config import SimConfig
from recorders.sim.market import Market


def test_live_trade_ids_start_right_after_the_lakes(tmp_path):
    end = dt.datetime(2026, 11, 29, 12, tzinfo=dt.timezone.utc)
    lake = Lake(tmp_path / "lake")
    write_to_lake(lake, start=end - dt.timedelta(minutes=2), duration=dt.timedelta(minutes=2), seed=5,
                  venues=("binance", "kraken"), assets=("BTC",))
    # the reference: each listing's largest id in the lake, read with Polars here
    last = {f"{v}:{s}": int(n) for v, s, n in lake.scan("trades").group_by("venue", "symbol")
            .agg(pl.col("trade_id").cast(pl.Int64).max()).collect().iter_rows()}
    assert len(last) == 2

    p = argparse.ArgumentParser()
    add_arguments(p)
    ns = p.parse_args(["--venues", "binance,kraken", "--assets", "BTC", "--continue-ids", str(lake.root)])
    firsts = _next_trade_ids(ns.continue_ids)
    assert firsts == {k: v + 1 for k, v in last.items()}

    cfg = SimConfig(venues=("binance", "kraken"), assets=("BTC",), seed=4, first_trade_ids=firsts)
    market = Market(cfg, start_ns=int(end.timestamp() * 1e9), chunk_ns=CHUNK_NS)
    seen: dict[str, int] = {}
    for _ in range(3):
        for c in market.step():
            key = f"{c.listing.venue}:{c.listing.symbol}"
            if c.trade_id.shape[0] and key not in seen:
                seen[key] = int(c.trade_id[0])
    assert seen == firsts

    # without the option the ids are the market's own (random per listing), far from the lake's
    plain = Market(SimConfig(venues=("binance", "kraken"), assets=("BTC",), seed=4),
                   start_ns=int(end.timestamp() * 1e9), chunk_ns=CHUNK_NS)
    first_plain = {}
    for _ in range(3):
        for c in plain.step():
            key = f"{c.listing.venue}:{c.listing.symbol}"
            if c.trade_id.shape[0] and key not in first_plain:
                first_plain[key] = int(c.trade_id[0])
    assert all(abs(first_plain[k] - firsts[k]) > 1000 for k in firsts)


def test_an_empty_or_missing_lake_continues_nothing(tmp_path, monkeypatch):
    assert _next_trade_ids(None) == {}
    assert _next_trade_ids(str(tmp_path / "nolake")) == {}
    monkeypatch.setenv("LAB_DATA", str(tmp_path / "data"))  # `--continue-ids` alone: the default lake
    assert _next_trade_ids("") == {}
