"""The recorder against the simulator over real WebSockets on 127.0.0.1, with
faults on: books equal the simulator's true book at every aligned checkpoint,
every injected fault is a feed event, no trade is lost or duplicated, readers
in another process see fresh rows, and the journal rebuilds the tables exactly.

One recorder run (a subprocess, heavy faults, a planned rotation) is shared by
the tests of this module.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from simrun import (
    ROOT,
    SYMBOLS,
    book_mismatches,
    iso_us,
    read_truth,
    replay_book,
    sim_venues,
    start_recorder,
    wait_for,
    windows,
    write_config,
)

from lab.lake import Lake
from recorders.sim.truth import silences, trades_due

RUN_S = 24.0
# faults per minute per venue: every kind several times in one run, even on a loaded machine;
# slow stays at 3: back-to-back slow faults merge into one lag episode (see below)
# (bad_checksum only lands on the two checksum venues, Kraken and OKX; a loaded simulator ticks
# less often and each tick draws at most one fault of a kind)
FAULTS = lambda FaultConfig: FaultConfig(gap=8, duplicate=5, out_of_order=4, malformed=6, bad_checksum=15,
                                         disconnect=3, slow=3, silent=3, rest_error=30, slow_s=1.0,
                                         silent_s=3.0)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from recorders.sim import FaultConfig, SimConfig, Simulator

    tmp = tmp_path_factory.mktemp("recsim")
    venues = sim_venues()
    truth_dir = tmp / "truth"
    lake = tmp / "lake"
    sim = Simulator(SimConfig(venues=venues, assets=("BTC", "ETH"), port_base=0, seed=11,
                              faults=FAULTS(FaultConfig), truth_dir=str(truth_dir), activity=0.6,
                              truth_book_every=1))
    with sim.running_in_thread():
        cfg = write_config(tmp / "rec.toml", sim.urls(), venues, lake, "simtest",
                           flush_interval=0.3, maintain_every=0, rotate_after=9.0, overlap=1.0,
                           backoff_base=0.2)
        rec = start_recorder(cfg, "--duration", str(RUN_S), log=tmp / "recorder.log")
        reader = None
        try:
            wait_for(lambda: Lake(lake).exists("trades"), 60, what="first trades in the lake")
            reader = subprocess.Popen([sys.executable, str(Path(__file__).parent / "reader_worker.py"),
                                       str(lake), "14"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
            rc = rec.wait(timeout=RUN_S + 90)
            seen = json.loads(reader.communicate(timeout=60)[0])
        finally:
            for p in (rec, reader):
                if p is not None and p.poll() is None:
                    p.kill()
    lk = Lake(lake)
    status = json.loads((tmp / "run" / "recorder-simtest.json").read_text())
    return {"rc": rc, "venues": venues, "lake": lk, "truth": read_truth(truth_dir), "reader": seen,
            "status": status, "tmp": tmp,
            "events": lk.read("feed_events"), "trades": lk.read("trades")}


def test_recorder_exits_cleanly_and_wrote_every_table(run):
    assert run["rc"] == 0, (run["tmp"] / "recorder.log").read_text()[-3000:]
    for t in ("trades", "book_updates", "quotes", "book_snapshots", "raw_messages", "feed_events"):
        assert run["lake"].exists(t), t
    assert run["status"]["lost_rows"] == 0


def test_reader_process_sees_fresh_rows_without_lock_errors(run):
    seen = run["reader"]
    assert seen["errors"] == []
    trades = [c[0] for c in seen["counts"]]
    assert len(trades) >= 3 and trades[-1] > trades[0]


def test_no_trade_duplicated(run):
    t = run["trades"]
    assert t.height > 0
    assert t.select("venue", "symbol", "trade_id").is_duplicated().sum() == 0


def test_every_trade_sent_while_connected_is_recorded(run):
    """Within each stretch of connected time no trade is missing: every trade the
    simulator published between the first and the last trade we recorded in that
    stretch (per symbol) is in the lake, with its price, size and aggressor side."""
    got = {(r["venue"], r["symbol"], r["trade_id"]): r for r in run["trades"].iter_rows(named=True)}
    quiet = silences(run["truth"]["faults"], run["trades"])
    checked = 0
    for venue in run["venues"]:
        missing = []
        for tr in trades_due(run["truth"], venue, set(got), quiet):
            checked += 1
            r = got.get((venue, tr["symbol"], str(tr["trade_id"])))
            if r is None:
                missing.append(tr)
                continue
            assert r["price"] == pytest.approx(tr["price"], rel=1e-12)
            assert r["qty"] == pytest.approx(tr["qty"], rel=1e-12)
            assert r["side"] == tr["side"], (venue, tr)
        assert not missing, f"{venue}: {len(missing)} trades missing, e.g. {missing[:3]}"
    assert checked > 50


def test_coinbase_trade_side_matches_truth(run):
    if "coinbase" not in run["venues"]:
        pytest.fail("simulator has no coinbase")
    truth = {(t["symbol"], t["trade_id"]): t["side"] for t in run["truth"]["trades"]
             if t["venue"] == "coinbase"}
    t = run["trades"].filter(pl.col("venue") == "coinbase")
    assert t.height > 0
    assert all(truth.get((r["symbol"], r["trade_id"]), r["side"]) == r["side"]
               for r in t.iter_rows(named=True))


# fault kind -> feed event kinds that must follow it, per venue (every kind the simulator injects)
def _expected(venue: str, kind: str) -> set[str]:
    return {
        "disconnect": {"reconnect"},
        "malformed": {"rejected_message"},
        "bad_checksum": {"checksum_failure"},  # injected only where there is one (Kraken, OKX)
        # Kraken v2 numbers nothing: a lost or swapped update shows only through the checksum
        "gap": {"checksum_failure"} if venue == "kraken" else {"gap"},
        "out_of_order": {"checksum_failure"} if venue == "kraken" else {"gap", "out_of_order"},
        "duplicate": {"duplicates"},  # counted per flush, not one event per message
        "slow": {"lag", "silence"},  # a stall shows as receive delay (and as quiet when long)
        # a quiet connection; on a sequenced venue the messages it did not send are a gap
        # (and on Kraken a checksum failure) once it speaks again: a connection opened
        # during the silence (a rotation) may see only that
        "silent": {"silence", "gap", "checksum_failure"},
        "rest_error": {"rest_error"},
    }[kind]


def _to_local(run):
    """Map a simulator timestamp to our receive clock through the recorded trades of
    the venue around it: the least delay of those within 2 s (the simulator's clock can
    start behind the wall clock and fall behind under load, so one fixed offset is not
    enough; the least delay is the path without a stall, which a fault may add)."""
    import bisect

    truth = {(t["venue"], t["symbol"], t["trade_id"]): iso_us(t["ts_exchange"])
             for t in run["truth"]["trades"]}
    pairs: dict[str, list[tuple[int, int]]] = defaultdict(list)
    tr = run["trades"].with_columns(pl.col("ts_local").dt.epoch("us").alias("tl"))
    for v, s, i, tl in zip(tr["venue"], tr["symbol"], tr["trade_id"], tr["tl"]):
        te = truth.get((v, s, i))
        if te is not None:
            pairs[v].append((te, tl))
    for v in pairs:
        pairs[v].sort()

    def local(venue: str, ts: int) -> int:
        p = pairs[venue]
        lo = bisect.bisect_left(p, (ts - 2_000_000, 0))
        hi = bisect.bisect_right(p, (ts + 2_000_000, 1 << 62))
        near = p[lo:hi]
        if not near:  # none that close: the nearest one
            k = min(max(bisect.bisect_left(p, (ts, 0)), 0), len(p) - 1)
            near = [min((p[j] for j in (k - 1, k) if 0 <= j < len(p)), key=lambda x: abs(x[0] - ts))]
        return ts + min(tl - te for te, tl in near)

    return local


def test_every_injected_fault_appears_in_feed_events(run):
    to_local = _to_local(run)
    ev = run["events"].with_columns(pl.col("ts_local").dt.epoch("us").alias("t"))
    by = defaultdict(list)
    for r in ev.iter_rows(named=True):
        by[(r["venue"], r["kind"])].append(r["t"])
    checked = defaultdict(int)
    unmatched = []
    kraken_explained = []
    stops = ev.filter(pl.col("kind") == "stop")["t"]
    assert stops.len() == 1
    run_end = stops[0]  # when the recorder was asked to stop
    for f in run["truth"]["faults"]:
        want = _expected(f["venue"], f["kind"])
        if f["symbol"] and f["symbol"] not in SYMBOLS[f["venue"]]:
            continue
        ts = iso_us(f["ts"])
        local = to_local(f["venue"], ts)
        wins = windows(run["truth"]["connections"], f["venue"])
        if local > run_end - 3_000_000:
            continue  # too close to the end of the run
        if f["kind"] != "rest_error" and not any(a + 500_000 <= ts <= b + 100_000 for a, b in wins):
            continue  # while no connection of ours was open (a REST error is always ours)
        checked[f["kind"]] += 1
        if any(local - 1_000_000 <= t <= local + 6_000_000 for k in want for t in by[(f["venue"], k)]):
            continue
        if f["kind"] in ("bad_checksum", "gap", "duplicate", "out_of_order") and any(
                local - 10_000_000 <= t <= local
                for k in ("resync", "gap", "checksum_failure", "reconnect", "connect")
                for t in by[(f["venue"], k)]):
            # A book fault that lands while the book is already being rebuilt (after a
            # resync or a (re)connect, before the new snapshot) is in a message the
            # adapter rightly ignores: undetectable by any client, and harmless.
            checked["ignored_while_resyncing"] += 1
            continue
        if f["kind"] == "slow":
            before = sorted((t, k) for k in ("lag", "lag_end") for t in by[(f["venue"], k)] if t <= local)
            if before and before[-1][1] == "lag" and local - before[-1][0] <= 15_000_000:
                # Explained: a delay that starts while the venue's previous lag episode is still
                # open (two slow faults back to back) extends that episode: one lag event for both.
                checked["slow_within_an_open_lag"] += 1
                continue
        if f["venue"] == "kraken" and f["kind"] in ("gap", "out_of_order"):
            # Explained: Kraken's checksum covers the top 10 levels only, so a lost or
            # swapped update of deeper levels is invisible to any client (on the real venue
            # too) until those levels reach the top 10. Asserted: the top 10 stayed right.
            checked["kraken_deeper_than_checksum"] += 1
            kraken_explained.append(f)
            continue
        unmatched.append(f)
    assert not unmatched, unmatched
    if kraken_explained:
        compared, bad = book_mismatches(run["lake"], run["truth"]["books"], "kraken", SYMBOLS["kraken"], levels=10)
        assert compared > 10 and not bad, bad[:3]
    # every kind the simulator injected was checked here
    from recorders.sim.config import FAULT_KINDS

    assert set(FAULT_KINDS) <= set(checked), dict(checked)
    assert sum(checked.values()) >= 3, dict(checked)


def test_recorded_book_equals_true_book_at_every_aligned_checkpoint(run):
    lk = run["lake"]
    books = defaultdict(list)
    for b in run["truth"]["books"]:
        books[(b["venue"], b["symbol"])].append(b)
    for venue in run["venues"]:
        compared = 0
        for sym in SYMBOLS[venue]:
            cps = books[(venue, sym)]
            # how a recorded message lines up with a truth checkpoint: by the venue's own
            # update id where it is the simulator's sequence, else by exchange time (at the
            # venue's time resolution), using the last checkpoint of that instant
            by_seq = venue in ("binance", "okx")
            res = 1000 if venue in ("okx", "bybit") else 1
            index: dict[int, dict] = {}
            for b in cps:
                index[b["seq"] if by_seq else iso_us(b["ts_exchange"]) // res * res] = b
            bu = lk.scan("book_updates", venue=venue, symbol=sym).collect()
            bu = bu.sort("ts_local", maintain_order=True)
            for seq, te, nxt, bids, asks in replay_book(bu):
                if by_seq:
                    cp = index.get(seq)
                else:
                    cp = index.get(te) if nxt != te else None
                if cp is None:
                    continue
                compared += 1
                flat = lambda lv: [x for pq in lv for x in pq]
                if venue == "kraken":
                    # Kraken's CRC32 covers the top 10 levels only: a reordered pair of
                    # updates touching levels 11+ (an injected out_of_order fault) is
                    # undetectable by any client, on the real venue too. Compare what
                    # the protocol lets a client verify.
                    bids, asks = bids[:10], asks[:10]
                    cp = {**cp, "bids": cp["bids"][:10], "asks": cp["asks"][:10]}
                assert len(bids) == len(cp["bids"]) and len(asks) == len(cp["asks"]), (venue, sym, te)
                assert flat(bids) == pytest.approx(flat(cp["bids"]), rel=1e-12), (venue, sym, seq, te)
                assert flat(asks) == pytest.approx(flat(cp["asks"]), rel=1e-12), (venue, sym, seq, te)
        assert compared >= 10, f"{venue}: only {compared} checkpoints aligned"


def test_rebuild_from_journal_reproduces_tables_exactly(run, tmp_path):
    from recorders.rebuild import rebuild

    src = run["lake"]
    dst = Lake(tmp_path / "rebuilt")
    rebuild(src, dst)
    for t in ("trades", "book_updates", "quotes", "book_snapshots"):
        a = src.read(t)
        b = dst.read(t)
        keys = a.columns
        assert_frame_equal(a.sort(keys), b.sort(keys), check_row_order=True)
    parse_kinds = ["gap", "resync", "checksum_failure", "rejected_message"]
    ev = lambda lk: (lk.read("feed_events").filter(pl.col("kind").is_in(parse_kinds))
                     .drop("detail").sort("ts_local", "venue", "kind", "symbol", nulls_last=True))
    assert_frame_equal(ev(src), ev(dst))
