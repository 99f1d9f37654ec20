"""Backfill after downtime: a recorder killed with kill -9 and restarted fetches the
trades it missed from the simulator's REST history (recorders/backfill.py)."""

from __future__ import annotations

import asyncio
import re
import signal
import time

import polars as pl
import pytest
from simrun import read_truth, start_recorder, wait_for

from lab.lake import Lake
from recorders.backfill import fetch_between
from recorders.config import write_config as _write_config
from recorders.rest import RestClient
from recorders.sim import SimConfig, Simulator
from recorders.sim.history import RateLimit

VENUES = ("binance", "okx", "kraken", "coinbase")  # Bybit serves only its last 60 trades
SYMS = {"binance": ["BTC-USDT"], "okx": ["BTC-USDT"], "kraken": ["BTC-USD"], "coinbase": ["BTC-USD"]}
HOLE = re.compile(r"ids (\d+)\.\.(\d+) asked \((\d+)\); found (\d+).*?(hole closed|hole remains: (\d+))")


def _sim(tmp_path, venues=VENUES, **kw) -> Simulator:
    sim = Simulator(SimConfig(venues=venues, assets=("BTC",), port_base=0, seed=11, speed=kw.pop("speed", 1.0),
                              truth_dir=str(tmp_path / "truth"), truth_book_every=0, **kw))
    sim.truth_dir = tmp_path / "truth"
    return sim


def _config(sim, tmp_path, venues, name: str, **rec):
    """A backfilling recorder's config for ``venues`` of ``sim``, its lake at ``tmp_path/lake``."""
    return _write_config(tmp_path / "rec.toml", sim.urls(), {v: SYMS[v] for v in venues}, tmp_path / "lake", name,
                         backfill=True, flush_interval=0.2, commit_interval=1.0, maintain_every=0,
                         rest_min_interval=0.05, **rec)


def _record(sim, tmp_path, venues, name: str, **rec) -> tuple[pl.DataFrame, pl.DataFrame]:
    """25 s of one recorder on ``sim`` (run here); its trades and feed events."""
    with sim.running_in_thread():
        p = start_recorder(_config(sim, tmp_path, venues, name, **rec), "--duration", "25", log=tmp_path / "rec.log")
        assert p.wait(120) == 0, (tmp_path / "rec.log").read_text()[-2000:]
        sim.truth.flush()
    return Lake(tmp_path / "lake").read("trades"), _events(tmp_path / "lake")


def _kill_restart(sim, tmp_path, kills: int, outage_s: float, venues=VENUES) -> tuple[pl.DataFrame, pl.DataFrame]:
    lake = tmp_path / "lake"
    cfg = _config(sim, tmp_path, venues, "bf")
    for k in range(kills):
        n0 = _events(lake).filter(pl.col("kind") == "backfill").height if k else 0
        p = start_recorder(cfg, log=tmp_path / f"run{k}.log")
        try:
            lk = Lake(lake)
            target = 2 if k == 0 else 0
            v0 = lk.version("trades") if lk.exists("trades") else -1
            wait_for(lambda: lk.exists("trades") and lk.version("trades") >= max(target, v0 + 3), 90,
                     what="trade commits")
            if k:  # the restarted recorder has had time to backfill the previous outage (a venue
                # that published nothing while the recorder was down has no hole and no row)
                wait_for(lambda: _events(lake).filter(pl.col("kind") == "backfill").height > n0, 60,
                         what=f"backfill rows after restart {k}")
                time.sleep(2.0)
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait(30)
        time.sleep(outage_s)
    last = start_recorder(cfg, "--duration", "8", log=tmp_path / "last.log")
    assert last.wait(120) == 0, (tmp_path / "last.log").read_text()[-2000:]
    sim.truth.flush()
    return Lake(lake).read("trades"), _events(lake)


def _events(lake) -> pl.DataFrame:
    lk = Lake(lake)
    return lk.read("feed_events") if lk.exists("feed_events") else pl.DataFrame(
        schema={"kind": pl.String, "venue": pl.String, "symbol": pl.String, "detail": pl.String})


@pytest.mark.parametrize("kills", [3, pytest.param(6, marks=pytest.mark.slow)])
def test_kill_9_repeatedly_backfill_leaves_no_hole_and_no_duplicate(tmp_path, kills):
    sim = _sim(tmp_path)
    with sim.running_in_thread():
        trades, events = _kill_restart(sim, tmp_path, kills=kills, outage_s=2.0)
    _assert_complete(sim, trades, events, min_backfills=1)


def test_disconnects_are_backfilled_by_a_recorder_whose_tail_the_maintainer_commits(tmp_path):
    # lab demo's recorder (committer = "maintainer"): the hole's start time of a venue that pages
    # by time is read by a child process, the fills go to the backfiller's own tail, and the stop
    # commits both tails (the other backfill tests run the default committer)
    from recorders.sim.config import FaultConfig

    sim = _sim(tmp_path, faults=FaultConfig(disconnect=8.0))
    trades, events = _record(sim, tmp_path, VENUES, "bfd", committer="maintainer")
    lake = tmp_path / "lake"
    assert pl.read_delta(str(lake / "trades")).height == trades.height  # all committed at the stop
    assert events.filter(pl.col("kind") == "reconnect").height >= 2  # the faults happened
    assert events.filter(pl.col("kind") == "backfill").height >= 2  # and left holes that were filled
    _assert_complete(sim, trades, events, min_backfills=0)


def test_trade_id_gap_on_a_live_stream_is_backfilled(tmp_path):
    from recorders.sim.config import FaultConfig

    # the venue goes silent for 1.5 s now and then (sockets stay open, no reconnect): trades are lost
    venues = ("binance", "okx")
    sim = _sim(tmp_path, venues=venues, faults=FaultConfig(silent=6.0, silent_s=1.5))
    trades, events = _record(sim, tmp_path, venues, "bfg")
    faults = [f for f in read_truth(sim.truth_dir)["faults"] if f["kind"] == "silent"]
    assert faults  # the venue did go silent
    _assert_complete(sim, trades, events, min_backfills=0, venues=venues)
    assert events.filter(pl.col("kind") == "backfill").height >= 1


def _assert_complete(sim, trades: pl.DataFrame, events: pl.DataFrame, min_backfills: int,
                     venues: tuple[str, ...] = VENUES) -> None:
    truth = read_truth(sim.truth_dir)["trades"]
    assert trades.select("venue", "symbol", "trade_id").is_duplicated().sum() == 0
    bf = events.filter(pl.col("kind") == "backfill")
    for v in venues:
        sym = SYMS[v][0]
        mine = trades.filter((pl.col("venue") == v) & (pl.col("symbol") == sym))
        ids = sorted(int(i) for i in mine["trade_id"])
        sent = sorted(int(t["trade_id"]) for t in truth if t["venue"] == v and t["symbol"] == sym)
        # every trade the simulator published between the first and the last one recorded is in the lake
        span = [i for i in sent if ids[0] <= i <= ids[-1]]
        missing = sorted(set(span) - set(ids))
        assert not missing, (v, len(missing), missing[:5])
        rows = bf.filter(pl.col("venue") == v)["detail"].to_list()
        assert len(rows) >= min_backfills, (v, rows)  # restarts left holes, each recorded
        assert all("hole closed" in d for d in rows), rows
        if min_backfills:
            assert mine.filter(pl.col("source") == "rest").height > 0
        assert mine.filter(pl.col("source").is_null()).height > 0


def test_truncated_history_records_the_remaining_hole_exactly(tmp_path):
    sim = _sim(tmp_path, venues=("binance",))
    sim.history_s = 0.5  # the venue serves only its last half second of trades
    with sim.running_in_thread():
        trades, events = _kill_restart(sim, tmp_path, kills=1, outage_s=3.0, venues=("binance",))
    ids = set(int(i) for i in trades["trade_id"])
    rows = events.filter(pl.col("kind") == "backfill")["detail"].to_list()
    assert rows, "no backfill row"
    recorded = 0
    for d in rows:
        m = HOLE.search(d)
        assert m, d
        lo, hi = int(m.group(1)), int(m.group(2))
        absent = [i for i in range(lo, hi + 1) if i not in ids]
        remains = int(m.group(6) or 0)
        assert remains == len(absent), (d, len(absent))  # the hole recorded is the hole in the lake
        recorded += remains
    assert recorded > 0  # 3 s down, 0.5 s served: a hole must remain
    truth = read_truth(sim.truth_dir)["trades"]
    sent = sorted(int(t["trade_id"]) for t in truth if t["venue"] == "binance" and t["symbol"] == "BTC-USDT")
    lost = [i for i in sent if min(ids) <= i <= max(ids) and i not in ids]
    assert len(lost) == recorded  # nothing missing that is not recorded
    from lab.apps.status import tape_holes  # what `lab status` shows

    tape = tape_holes(Lake(tmp_path / "lake"))
    assert tape.filter(pl.col("venue") == "binance").select("trades_missing", "remaining_holes").row(0)[0] == recorded


def test_backfill_over_many_pages_meets_429s_and_completes_within_the_weight(tmp_path):
    sim = _sim(tmp_path, venues=("binance",), speed=200.0, activity=3.0)
    with sim.running_in_thread():
        wait_for(lambda: sim.history[0].cols()[4].shape[0] > 3500, 120, what="3500 trades of history")
        sim.rate_limits["binance"] = lim = RateLimit(50.0, 1.0)  # 2 requests of weight 25 per second
        ids = sim.history[0].cols()[4]
        lo, hi = int(ids[0]), int(ids[3400])

        async def run():
            client = RestClient(min_interval=0.0, max_backoff=2.0)
            errors: list[str] = []
            try:
                r = await fetch_between("binance", sim.urls()["binance_rest"], "BTC-USDT", lo, hi,
                                        lambda u: client.get(u, errors.append))
            finally:
                await client.aclose()
            return r, errors

        r, errors = asyncio.run(run())
    assert [t.trade_id for t in r.trades] == list(range(lo, hi + 1))  # complete, in order
    assert r.missing == 0 and r.requests == 4  # 3401 ids in pages of 1000
    assert any("HTTP 429" in e for e in errors)  # it went faster than the limit and was told so
    assert lim.refused > 0 and lim.max_used <= lim.limit


def test_lab_backfill_fetches_exactly_the_window_and_adds_nothing_twice(tmp_path):
    import subprocess
    import sys

    from simrun import ROOT, iso_us

    sim = _sim(tmp_path, speed=10.0)
    with sim.running_in_thread():
        wait_for(lambda: all(sim.history[i].cols()[4].shape[0] > 400 for i in sim.history), 120,
                 what="history on every venue")
        sim.truth.flush()
        truth = read_truth(sim.truth_dir)["trades"]
        lake = tmp_path / "lake"
        for v in VENUES:
            sym = SYMS[v][0]
            mine = [t for t in truth if t["venue"] == v and t["symbol"] == sym]
            t0 = iso_us(mine[len(mine) // 4]["ts_exchange"]) // 1_000_000 + 1  # whole seconds
            t1 = iso_us(mine[3 * len(mine) // 4]["ts_exchange"]) // 1_000_000
            start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0))
            end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t1))
            cmd = [sys.executable, "-m", "lab.cli", "backfill", "--venue", v, "--symbols", sym, "--start", start,
                   "--end", end, "--rest-url", sim.urls()[v + "_rest"], "--lake", str(lake), "--no-progress"]
            for _ in range(2 if v == VENUES[0] else 1):  # a second run adds nothing (checked on one venue:
                out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)  # the dedup
                assert out.returncode == 0, out.stderr[-2000:]  # against the lake is the same for all)
            want = {t["trade_id"] for t in mine if t0 * 10**6 <= iso_us(t["ts_exchange"]) < t1 * 10**6}
            got = Lake(lake).read("trades").filter(pl.col("venue") == v)
            assert got["trade_id"].n_unique() == got.height  # nothing twice
            absent = sorted(want - set(got["trade_id"]))
            extra = sorted(set(got["trade_id"]) - want)
            assert not absent and not extra, (v, start, end, len(want), got.height, min(want), max(want),
                                              [t for t in mine if t["trade_id"] in absent[:3] + extra[:3]])
            assert set(got["source"]) == {"rest"}
    ev = Lake(lake).read("feed_events").filter(pl.col("kind") == "backfill")
    assert ev.height == len(VENUES) + 1 and ev["detail"].str.contains("0 new in the lake").sum() == 1
