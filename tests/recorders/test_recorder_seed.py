"""Start-up seeds the newest trade ids per symbol, a bounded number, however much history the
lake holds (it read every trade of ``seed_hours``, up to 200,000 ids per symbol), from the
committed files and the tail alike, and the id memory stays bounded as trades come in."""

from __future__ import annotations

import datetime as dt
import random

import polars as pl

import recorders.runtime as runtime
from lab.lake import Lake
from lab.tail import TailWriter
from recorders.config import RecorderConfig, VenueConfig
from recorders.venues.base import TradeIds

SYMS = ["BTC-USDT", "ETH-USDT"]


def _history(n: int, seed: int) -> list[dict]:
    """``n`` trades per symbol over the last two hours (ids rise with time), shuffled."""
    now = dt.datetime.now(dt.timezone.utc)
    rows = []
    for k, sym in enumerate(SYMS):
        for i in range(n):
            t = now - dt.timedelta(seconds=7200 * (n - i) / n)
            rows.append({"ts_exchange": t, "ts_local": t, "venue": "binance", "symbol": sym,
                         "trade_id": str(1_000_000 * (k + 1) + i), "price": 100.0, "qty": 1.0, "side": "buy"})
    random.Random(seed).shuffle(rows)
    return rows


def _seeded(lake_dir, monkeypatch, keep: int) -> dict[str, list[str]]:
    monkeypatch.setattr(TradeIds, "CAPACITY", keep)
    rec = runtime.Recorder(RecorderConfig(venues=[VenueConfig(venue="binance", symbols=SYMS)], lake=str(lake_dir)))
    rec.seed_trade_ids()
    ids = rec.runners[0].trade_ids
    return {s: ids.recent(s, 10**9) for s in SYMS}


def _write(lake: Lake, rows: list[dict], commits: int) -> None:
    """Rows in several commits, in shuffled order: the scan order is not time order."""
    step = -(-len(rows) // commits)
    for i in range(0, len(rows), step):
        lake.append("trades", pl.DataFrame(rows[i:i + step]).with_columns(
            pl.col("ts_exchange", "ts_local").dt.cast_time_unit("us")))


def test_seed_holds_the_newest_ids_in_time_order_and_no_more(tmp_path, monkeypatch):
    lake = Lake(tmp_path / "lake")
    rows = _history(1_000, seed=1)
    _write(lake, rows, commits=5)

    got = _seeded(tmp_path / "lake", monkeypatch, keep=120)

    for sym in SYMS:  # reference: the generated rows sorted by time, independently of the lake
        want = [r["trade_id"] for r in sorted((r for r in rows if r["symbol"] == sym), key=lambda r: r["ts_local"])]
        assert got[sym] == want[-120:]


def test_seed_does_not_grow_with_the_lake_history(tmp_path, monkeypatch):
    small, large = Lake(tmp_path / "small"), Lake(tmp_path / "large")
    _write(small, _history(300, seed=2), commits=3)
    _write(large, _history(3_000, seed=3), commits=6)

    a = _seeded(small.root, monkeypatch, keep=200)
    b = _seeded(large.root, monkeypatch, keep=200)

    assert [len(a[s]) for s in SYMS] == [200, 200]
    assert [len(b[s]) for s in SYMS] == [200, 200]


def test_seed_reads_the_tail_and_files_with_an_optional_column(tmp_path, monkeypatch):
    # the newest trades may be in tail files not yet committed, and backfilled files carry
    # trades' optional `source` column where older ones lack it: all are read
    lake = Lake(tmp_path / "lake")
    rows = sorted(_history(400, seed=4), key=lambda r: r["ts_local"])
    _write(lake, rows[:300], commits=2)
    backfilled = pl.DataFrame(rows[300:500]).with_columns(pl.col("ts_exchange", "ts_local").dt.cast_time_unit("us"),
                                                          source=pl.lit("rest"))
    lake.append("trades", backfilled)
    tw = TailWriter(lake)
    tw.write("trades", pl.DataFrame(rows[500:]).with_columns(pl.col("ts_exchange", "ts_local").dt.cast_time_unit("us")))

    got = _seeded(tmp_path / "lake", monkeypatch, keep=1_000)
    tw.close()

    for sym in SYMS:
        assert got[sym] == [r["trade_id"] for r in rows if r["symbol"] == sym]


def test_the_id_memory_keeps_the_newest_capacity_ids_and_still_dedupes_them():
    # reference: a plain list of what was added, the newest `cap` of it; ids arrive mostly
    # growing, some late and some repeated, with UUID-like texts for a venue without numbers
    rng = random.Random(5)
    cap = 500
    ids = TradeIds(capacity=cap)
    seen: list[str] = []
    for i in range(5_000):
        tid = str(10_000 + i) if i % 7 else f"uuid-{rng.randrange(10**9)}"
        if i % 11 == 0 and seen:
            late = seen[-rng.randrange(1, min(len(seen), cap // 2) + 1)]
            assert not ids.add("S", late)  # held: a duplicate
        if rng.random() < 0.05 and i > 20:
            tid = str(10_000 + i - rng.randrange(1, 10))  # a late id, maybe already held
        fresh = tid not in seen[-cap:] and tid not in seen
        assert ids.add("S", tid) is fresh
        if fresh:
            seen.append(tid)
        assert len(ids) <= cap + max(64, cap // 8)
    newest = seen[-cap:]
    assert ids.recent("S", cap) == [t for t in newest if t.isdigit()]
    assert all(not ids.add("S", t) for t in newest)  # the newest are all still held
    assert ids.add("S", seen[0])  # the oldest is forgotten


def test_a_long_backfill_does_not_push_out_the_live_ids():
    # a hole of more ids than the memory holds is filled after live trades resumed: the live
    # ids (which a reconnect may replay) must still be recognised, the hole's own ids once too
    cap = 1_000
    ids = TradeIds(capacity=cap)
    live = [str(50_000 + i) for i in range(cap // 2)]
    assert all(ids.add("S", t) for t in live)
    hole = [str(10_000 + i) for i in range(5 * cap)]
    got = ids.add_backfilled("S", hole + hole[:10])  # a page overlapping another
    assert got == [True] * len(hole) + [False] * 10
    assert not any(ids.add("S", t) for t in live)  # still held: a replay is a duplicate
    assert ids.recent("S", cap // 2) == live  # the newest ids are still the live ones
    assert len(ids) <= cap + max(64, cap // 8)
