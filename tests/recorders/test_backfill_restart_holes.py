"""A hole already committed in the lake when a recorder starts is backfilled, once.

A gap on a live stream (a venue silent for a while) is filled only after the backfill's scanner
has seen it twice, a few seconds apart. A recorder killed in between left the gap committed
behind the newest trade id, and its successor scanned only ids above that newest id: the hole
stayed in the tape, unfilled and unrecorded (found by the soak, bench/bench_soak.py: 15 Coinbase
SOL-USD trades of a silence, never backfilled). The successor scans the tape it starts from, and
does not ask again for a hole an earlier process already asked for (its ``backfill`` event).
"""

from __future__ import annotations

import signal
import time
import urllib.request

import polars as pl
from simrun import start_recorder, wait_for

from lab.lake import Lake
from recorders.backfill import Result, parse_page, result_frame
from recorders.config import write_config
from recorders.sim import SimConfig, Simulator

SYMS = {"binance": ["BTC-USDT"]}


def _sim() -> Simulator:
    return Simulator(SimConfig(venues=("binance",), assets=("BTC",), port_base=0, seed=5, truth_book_every=0))


def _plant_tape_with_hole(sim: Simulator, lake_dir, n_hole: int = 5) -> tuple[int, int]:
    """The venue's trades so far, as if recorded live, minus ``n_hole`` ids in the middle
    (committed before this recorder starts). Returns the hole's (first, last) id."""
    url = sim.urls()["binance_rest"] + "/api/v3/historicalTrades?symbol=BTCUSDT&limit=1000"

    def enough():
        tr = parse_page("binance", urllib.request.urlopen(url, timeout=10).read().decode())
        return tr if len(tr) >= 40 else None

    trades = wait_for(enough, 60, every=0.5, what="40 trades in the simulator's history")
    mid = len(trades) // 2
    hole = trades[mid:mid + n_hole]
    kept = trades[:mid] + trades[mid + n_hole:]
    df = result_frame(Result("binance", "BTC-USDT", 0, 0, kept, 0), 0)
    df = df.with_columns(ts_local=pl.col("ts_exchange"), source=pl.lit(None, pl.String))  # as received live
    Lake(lake_dir).append("trades", df)
    return hole[0].trade_id, hole[-1].trade_id


def _events(lake_dir, lo: int, hi: int) -> list[str]:
    lk = Lake(lake_dir)
    if not lk.exists("feed_events"):
        return []
    ev = lk.scan("feed_events").filter(pl.col("kind") == "backfill").collect()
    return [d for d in ev["detail"] if d.startswith(f"ids {lo}..{hi} asked")]


def _run_until(cfg, log, pred, what: str) -> None:
    p = start_recorder(cfg, log=log)
    try:
        wait_for(pred, 60, every=0.5, what=what)
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(60)
    assert rc == 0, log.read_text()[-2000:]


def test_a_hole_committed_before_the_start_is_backfilled(tmp_path):
    # Arrange: a tape with 5 trades missing in its middle, then a recorder started on it
    lake = tmp_path / "lake"
    sim = _sim()
    with sim.running_in_thread():
        lo, hi = _plant_tape_with_hole(sim, lake)
        cfg = write_config(tmp_path / "rec.toml", sim.urls(), SYMS, lake, "holes", backfill=True,
                           flush_interval=0.2, maintain_every=0, rest_min_interval=0.05)
        # Act
        _run_until(cfg, tmp_path / "rec.log", lambda: _events(lake, lo, hi), f"a backfill of ids {lo}..{hi}")
    # Assert: every id of the hole is in the lake once, from REST, and the hole is recorded as closed
    t = Lake(lake).read("trades").filter(pl.col("symbol") == "BTC-USDT")
    assert t.select("trade_id").is_duplicated().sum() == 0
    got = t.filter(pl.col("trade_id").cast(pl.Int64).is_between(lo, hi))
    assert sorted(int(i) for i in got["trade_id"]) == list(range(lo, hi + 1))
    assert set(got["source"]) == {"rest"}
    (detail,) = _events(lake, lo, hi)
    assert detail.endswith("hole closed"), detail


def test_a_hole_an_earlier_process_asked_for_is_not_asked_again(tmp_path):
    # Arrange: the planted hole is older than what the venue still serves, so it remains
    lake = tmp_path / "lake"
    sim = _sim()
    with sim.running_in_thread():
        lo, hi = _plant_tape_with_hole(sim, lake)
        sim.history_s = 0.5  # the venue now serves only its last half second of trades
        cfg = write_config(tmp_path / "rec.toml", sim.urls(), SYMS, lake, "holes", backfill=True,
                           flush_interval=0.2, maintain_every=0, rest_min_interval=0.05)
        _run_until(cfg, tmp_path / "rec1.log", lambda: _events(lake, lo, hi), f"a backfill of ids {lo}..{hi}")
        (first,) = _events(lake, lo, hi)
        assert first.endswith(f"hole remains: {hi - lo + 1} trade(s) missing, ids {lo}..{hi}"), first
        # Act: a second recorder on the same tape, for long enough to have scanned it twice
        t0 = time.time()
        _run_until(cfg, tmp_path / "rec2.log",
                   lambda: time.time() - t0 > 12 and Lake(lake).scan("feed_events")
                   .filter(pl.col("kind") == "connect").select(pl.len()).collect().item() >= 2,
                   "the second recorder connected, then 12 s")
    # Assert: the hole is recorded once, by the process that asked for it
    assert _events(lake, lo, hi) == [first]
    log = (tmp_path / "rec2.log").read_text()
    assert "Traceback" not in log, log[-2000:]
