"""A Bybit silence without a reconnect is backfilled by time, or recorded as a hole that may remain.

Bybit's trade ids are shared across symbols (its spot docs), so the recorder cannot see a hole in
them: a venue that stops sending for a few seconds with the socket open (the simulator's
``silent`` fault) lost those trades silently (``bench/bench_soak.py``: 359 "silent holes" on
Bybit). The backfill's quiet watcher sees the connection go quiet and speak again, asks the
venue's recent-trade window for the quiet period, and records one ``backfill`` event per symbol
naming the time range (recorders/backfill.py ``Backfiller._watch_quiet``).
"""

from __future__ import annotations

import re
import signal
import time

import polars as pl
from simrun import iso_us, read_truth, start_recorder, wait_for

from lab.lake import Lake
from lab.tape import hole_summary, lake_ranges
from recorders.backfill import parse_time
from recorders.config import write_config
from recorders.sim import SimConfig, Simulator
from recorders.sim.config import FaultConfig
from recorders.sim.truth import silences

SYMS = ["BTC-USDT", "ETH-USDT"]
TIME_RANGE = re.compile(r"^time (\S+?)\.\.(\S+) asked ")


def _sim(tmp_path, silent_s: float) -> Simulator:
    # a silent rate of ~never: the one silence of the test is injected on demand (_go_silent).
    # The venue's clock runs 4 s behind ours (as the simulator's did in a soak): a silence is
    # asked for in the venue's time, not in the recorder's.
    sim = Simulator(SimConfig(venues=("bybit",), assets=("BTC", "ETH"), cross=False, port_base=0, seed=3,
                              start_ns=time.time_ns() - 4_000_000_000,
                              truth_dir=str(tmp_path / "truth"), truth_book_every=0,
                              faults=FaultConfig(silent=1e-9, silent_s=silent_s)))
    sim.truth_dir = tmp_path / "truth"
    return sim


def _go_silent(sim: Simulator) -> None:
    """The simulator's ``silent`` fault, now: Bybit sends nothing for ``silent_s``, sockets open."""
    assert sim._loop is not None
    sim._loop.call_soon_threadsafe(sim._fault_pending["bybit"].append, "silent")


def _live_trades(lake) -> dict[str, int]:
    lk = Lake(lake)
    if not lk.exists("trades"):
        return {}
    t = lk.scan("trades").group_by("symbol").len().collect()  # no backfill before the silence: all live
    return dict(t.iter_rows())


def _time_events(lake) -> pl.DataFrame:
    lk = Lake(lake)
    if not lk.exists("feed_events"):
        return pl.DataFrame(schema={"symbol": pl.String, "detail": pl.String})
    return (lk.scan("feed_events").filter(pl.col("kind") == "backfill", pl.col("venue") == "bybit",
                                          pl.col("detail").str.starts_with("time "))
            .select("symbol", "detail").collect())


def _record_a_silence(sim: Simulator, tmp_path, *, window_s: float | None = None) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """Record Bybit, go silent once (after every symbol traded live), stop once each symbol has
    its silence event. ``window_s``: the venue's REST window then serves only its last N seconds.
    Returns the lake's trades, the time-ranged backfill events, the truth."""
    lake = tmp_path / "lake"
    with sim.running_in_thread():
        cfg = write_config(tmp_path / "rec.toml", sim.urls(), {"bybit": SYMS}, lake, "quiet", backfill=True,
                           flush_interval=0.2, commit_interval=1.0, maintain_every=0, rest_min_interval=0.05)
        p = start_recorder(cfg, log=tmp_path / "rec.log")
        try:
            wait_for(lambda: all(_live_trades(lake).get(s, 0) >= 3 for s in SYMS), 30, every=0.5,
                     what="live Bybit trades of every symbol")
            if window_s is not None:
                sim.history_s = window_s
            t_silent = sim.now_ns() // 1000  # the venue's time
            _go_silent(sim)

            def silence_recorded() -> bool:  # an event ending after the silence began, per symbol
                ev = _time_events(lake)
                return all(any(_range(d)[1] > t_silent for d in ev.filter(pl.col("symbol") == s)["detail"])
                           for s in SYMS)

            wait_for(silence_recorded, 30, every=0.5, what="a time-ranged backfill event per symbol")
            time.sleep(1.5)  # trades after the silence, received live (the span checked below ends there)
        finally:
            p.send_signal(signal.SIGTERM)
            rc = p.wait(60)
        sim.truth.flush()
    log = (tmp_path / "rec.log").read_text()
    assert rc == 0 and "Traceback" not in log, log[-2000:]
    return Lake(lake).read("trades"), _time_events(lake), read_truth(sim.truth_dir)


def _range(detail: str) -> tuple[int, int]:
    m = TIME_RANGE.match(detail)
    assert m, detail
    return parse_time(m.group(1)), parse_time(m.group(2))


def _silence_event(events: pl.DataFrame, sym: str, fault_us: int) -> str:
    """The one event of ``sym`` whose range holds the silence's start (a machine stalled for 2 s
    may add an event for a lull: it names no silence and is checked apart)."""
    (detail,) = [d for d in events.filter(pl.col("symbol") == sym)["detail"]
                 if _range(d)[0] <= fault_us < _range(d)[1]]
    return detail


def _span_missing(truth: dict, trades: pl.DataFrame, sym: str) -> list[dict]:
    """The trades the simulator published for ``sym`` between the first and the last one the lake
    holds (in the venue's publishing order) that the lake does not hold."""
    sent = [t for t in truth["trades"] if t["venue"] == "bybit" and t["symbol"] == sym]
    held = set(trades.filter(pl.col("symbol") == sym)["trade_id"])
    pos = [i for i, t in enumerate(sent) if t["trade_id"] in held]
    return [t for t in sent[pos[0]:pos[-1] + 1] if t["trade_id"] not in held]


def test_a_bybit_silence_without_reconnect_is_backfilled_once(tmp_path):
    # Arrange: Bybit goes silent for 3 s with its socket open (no reconnect: the watchdog waits 30 s)
    sim = _sim(tmp_path, silent_s=3.0)
    # Act
    trades, events, truth = _record_a_silence(sim, tmp_path)
    # Assert: the silence happened, without a reconnect
    (quiet,) = silences([f for f in truth["faults"] if f["kind"] == "silent"], trades)
    _, q0, q1 = quiet
    fault_us = iso_us(next(f["ts"] for f in truth["faults"] if f["kind"] == "silent"))
    assert trades.select("symbol", "trade_id").is_duplicated().sum() == 0  # nothing twice
    for sym in SYMS:
        # every trade published during the silence is in the lake, exactly once, from REST
        sent = [t for t in truth["trades"] if t["venue"] == "bybit" and t["symbol"] == sym
                and q0 <= iso_us(t["ts_exchange"]) < q1]
        assert sent, f"no {sym} trade during the silence: the test proves nothing"
        mine = trades.filter(pl.col("symbol") == sym)
        got = mine.filter(pl.col("trade_id").is_in([t["trade_id"] for t in sent]))
        assert sorted(got["trade_id"]) == sorted(t["trade_id"] for t in sent)
        assert _span_missing(truth, trades, sym) == []  # and none lost around it
        # one event for the symbol names the silence and says the hole is closed
        detail = _silence_event(events, sym, fault_us)
        assert detail.endswith("hole closed"), detail
        start, end = _range(detail)
        rest = mine.filter(pl.col("source") == "rest")["ts_exchange"].dt.epoch("us")
        inside = rest.filter((rest >= start) & (rest < end))
        assert inside.len() > 0 and f"{inside.len()} new" in detail, detail  # it added them
        # rows from REST outside it came from another event's range (a lull taken for a silence)
        ranges = [_range(d) for d in events.filter(pl.col("symbol") == sym)["detail"]]
        assert all(any(a <= t < b for a, b in ranges) for t in rest)
        # lab status / Feed health: the tape shows the silence as a range whose trades came over REST
        tape = lake_ranges(tmp_path / "lake").filter(pl.col("venue") == "bybit", pl.col("symbol") == sym)
        shown = tape.filter(pl.col("start").dt.epoch("us") == start, pl.col("end").dt.epoch("us") == end)
        assert shown.rows(named=True) and shown["why"].to_list() == ["backfilled"], tape
        assert shown["trades_recovered"].item() == int(re.search(r"(\d+) new", detail)[1])


def test_a_silence_longer_than_the_window_is_recorded_as_a_hole_that_may_remain(tmp_path):
    # Arrange: the venue's recent window serves only its last 0.3 s of trades when the silence ends
    sim = _sim(tmp_path, silent_s=3.0)
    # Act
    trades, events, truth = _record_a_silence(sim, tmp_path, window_s=0.3)
    # Assert: nothing twice; what is missing is inside the recorded range, before the window's reach
    assert trades.select("symbol", "trade_id").is_duplicated().sum() == 0
    fault_us = iso_us(next(f["ts"] for f in truth["faults"] if f["kind"] == "silent"))
    lost = 0
    for sym in SYMS:
        detail = _silence_event(events, sym, fault_us)
        reach = re.search(r"reaches back only to (\S+), trades before it may be missing$", detail)
        assert reach or detail.endswith("window was empty, trades in it may be missing"), detail
        # every trade missing lies in a recorded range, before where the window reached
        reaches = []
        for d in events.filter(pl.col("symbol") == sym)["detail"]:
            (a, b), r = _range(d), re.search(r"reaches back only to (\S+),", d)
            # a closed range holds no missing trade (its upper bound is its start: an empty range)
            reaches.append((a, a if d.endswith("hole closed") else parse_time(r.group(1)) if r else b))
        missing = _span_missing(truth, trades, sym)
        assert all(any(a <= iso_us(t["ts_exchange"]) < u for a, u in reaches) for t in missing), (detail, missing[:3])
        lost += len(missing)
        # lab status' per-symbol counts: every silence event of the symbol, the open ones as remaining
        fe = Lake(tmp_path / "lake").scan("feed_events")
        (row,) = hole_summary(fe).filter(pl.col("venue") == "bybit", pl.col("symbol") == sym).collect().rows(named=True)
        mine = fe.filter(pl.col("kind") == "backfill", pl.col("venue") == "bybit",
                         pl.col("symbol") == sym).collect()["detail"]
        assert row["backfills"] == mine.len()
        assert row["remaining_holes"] == sum(not d.endswith("hole closed") for d in mine) > 0
    assert lost > 0  # the window could not cover the silence: trades do remain missing (recorded)


def _gaps_over(ts: pl.Series, s: float) -> int:
    """How many gaps between consecutive times (µs) of ``ts`` are longer than ``s`` seconds."""
    d = ts.sort().diff().drop_nulls()
    return int((d > int(s * 1e6)).sum())


def test_a_lull_between_trades_while_books_move_asks_nothing(tmp_path):
    # Arrange: a quiet Bybit (1/25 of the simulator's activity): its symbols go seconds without a
    # trade while their books still move
    sim = Simulator(SimConfig(venues=("bybit",), assets=("BTC", "ETH", "SOL"), cross=False, port_base=0,
                              seed=5, activity=0.04))
    lake = tmp_path / "lake"
    syms = ["BTC-USDT", "ETH-USDT", "SOL-USDT"]

    def live_trade_lulls() -> int:
        if not Lake(lake).exists("trades"):
            return 0
        return _gaps_over(Lake(lake).read("trades")["ts_local"].dt.epoch("us"), 2.5)

    # Act: record until the venue went 2.5 s without a trade
    with sim.running_in_thread():
        cfg = write_config(tmp_path / "rec.toml", sim.urls(), {"bybit": syms}, lake, "lull", backfill=True,
                           flush_interval=0.2, commit_interval=1.0, maintain_every=0, rest_min_interval=0.05)
        p = start_recorder(cfg, log=tmp_path / "rec.log")
        try:
            wait_for(lambda: live_trade_lulls() >= 1, 120, every=1.0, what="a lull of 2.5 s between trades")
        finally:
            p.send_signal(signal.SIGTERM)
            rc = p.wait(60)
    assert rc == 0
    # Assert: a silence is asked for only where no market data at all came for ~QUIET_S (the journal's
    # data pushes, not the trades, are the reference; a poll every 0.25 s sees a gap of 1.75 s or more)
    lk = Lake(lake)
    trades = lk.read("trades")
    assert "source" not in trades.columns or trades["source"].fill_null("ws").ne("rest").all()  # no REST rows
    pushes = lk.scan("raw_messages").filter(pl.col("payload").str.contains('"topic"')).collect()
    silent = _gaps_over(pushes["ts_local"].dt.epoch("us"), 1.5)
    asked = _time_events(lake).height
    assert asked <= silent * len(syms), (asked, silent)
