"""Soak: five venues x 3 symbols under heavy faults, `lab maintain` running, the recorder killed with
SIGKILL every few minutes and restarted; then every promise of the recording path checked.

    .venv/bin/python bench/bench_soak.py [--minutes 30] [--kill-every 180] [--venues ...]

Runs `lab simulate --faults heavy --truth-dir` (the ground truth), `lab record` and `lab maintain
--every 30` as processes on free ports over a fresh lake in a temporary folder. At each kill the
journal is rebuilt (`lab rebuild --from-journal`) and compared with the tables row for row. At the
end it prints:

- trades lost while connected (every trade the simulator published while a connection of the
  recorder was open; trades of the last flush interval before a kill -9 are counted apart: they
  were received but not committed, and only a REST backfill can bring them back),
- duplicated trades, book checkpoints right per venue, crossed quotes without an event,
- injected faults by kind beside the feed events that show them,
- journal ⊇ tables after every kill,
- recorder peak RSS, first half vs second half of the run (and, apart, the peak RSS of the
  compaction processes: `lab maintain` and the recorder's maintenance passes, sampled every 2 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import psutil

from recorders.sim.harness import free_port_base

ROOT = Path(__file__).resolve().parents[1]
LAB = str(Path(sys.executable).parent / "lab")
SYMBOLS = {"binance": ["BTC-USDT", "ETH-USDT", "SOL-USDT"], "coinbase": ["BTC-USD", "ETH-USD", "SOL-USD"],
           "kraken": ["BTC-USD", "ETH-USD", "SOL-USD"], "okx": ["BTC-USDT", "ETH-USDT", "SOL-USDT"],
           "bybit": ["BTC-USDT", "ETH-USDT", "SOL-USDT"]}
KEYS = {"trades": ["venue", "symbol", "trade_id"],
        "quotes": ["venue", "symbol", "ts_local", "bid_px", "bid_qty", "ask_px", "ask_qty"],
        "book_updates": ["venue", "symbol", "ts_local", "side", "price", "qty", "seq"]}


def _rss_mib(p: subprocess.Popen | psutil.Process) -> float:
    try:
        return psutil.Process(p.pid).memory_info().rss / 2**20
    except psutil.Error:
        return 0.0


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children()
    except psutil.Error:
        return []


def journal_covers_tables(data: Path, lake: Path, out: Path) -> tuple[bool, str]:
    """Rebuild the journal into ``out`` and check every table row is there (anti-join on the row's key)."""
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, LAB_DATA=str(data))
    r = subprocess.run([LAB, "rebuild", "--from-journal", "--lake", str(lake), "--out", str(out)],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    if r.returncode != 0:
        return False, f"rebuild failed: {r.stderr.strip()[-300:]}"
    from lab.lake import Lake

    src, dst = Lake(lake), Lake(out)
    missing = {}
    for t, key in KEYS.items():
        if not src.exists(t):
            continue
        have = src.scan(t).select(key).unique().collect()
        got = dst.scan(t).select(key).unique().collect() if dst.exists(t) else have.clear()
        n = have.join(got, on=key, how="anti", nulls_equal=True).height
        if n:
            missing[t] = n
    return not missing, ("all table rows are in the journal" if not missing else f"missing from journal: {missing}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="length of the run (default 30)")
    ap.add_argument("--kill-every", type=float, default=180.0, help="seconds between kill -9 of the recorder")
    ap.add_argument("--venues", default="binance,coinbase,kraken,okx,bybit")
    ap.add_argument("--flush-interval", type=float, default=None, help="recorder flush interval (default: its own)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    a = ap.parse_args()
    venues = a.venues.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    data, truth = tmp / "data", tmp / "truth"
    lake = data / "lake"
    env = dict(os.environ, LAB_DATA=str(data), PYTHONUNBUFFERED="1")
    base = free_port_base(len(venues) + 1)
    logs = tmp / "logs"
    logs.mkdir(parents=True)
    sim = subprocess.Popen([LAB, "simulate", "--venues", ",".join(venues), "--assets", "BTC,ETH,SOL",
                            "--faults", "heavy", "--truth-dir", str(truth), "--port-base", str(base),
                            "--seed", str(int(time.time()) % 100_000)],
                           stdout=open(logs / "sim.log", "wb"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    from lab.venues import sim_urls
    from recorders.config import write_config

    time.sleep(3)
    urls: dict[str, str] = {}
    for v in venues:
        ws, rest = sim_urls(v, base)
        urls[v] = ws
        if rest:
            urls[f"{v}_rest"] = rest
    extra = {} if a.flush_interval is None else {"flush_interval": a.flush_interval}
    cfg = write_config(tmp / "rec.toml", urls, {v: SYMBOLS[v] for v in venues}, lake, "soak", **extra)

    def start_recorder() -> subprocess.Popen:
        return subprocess.Popen([LAB, "record", "--config", str(cfg)], stdout=open(logs / "rec.log", "ab"),
                                stderr=subprocess.STDOUT, env=env, cwd=ROOT)

    rec = start_recorder()
    maint = subprocess.Popen([LAB, "maintain", "--every", "30", "--lake", str(lake)],
                             stdout=open(logs / "maintain.log", "ab"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    t0 = time.time()
    end = t0 + a.minutes * 60
    next_kill = t0 + a.kill_every
    rss: list[tuple[float, float, int]] = []
    upkeep: list[tuple[float, float, float]] = []  # (t, lab maintain RSS, recorder's maintenance child RSS)
    kills: list[float] = []
    journal_ok: list[tuple[bool, str]] = []
    try:
        while time.time() < end:
            time.sleep(2)
            try:
                rss.append((time.time() - t0, psutil.Process(rec.pid).memory_info().rss / 2**20, rec.pid))
            except psutil.Error:
                pass
            upkeep.append((time.time() - t0, _rss_mib(maint), max((_rss_mib(c) for c in _children(rec.pid)), default=0.0)))
            if time.time() >= next_kill and time.time() < end - 30:
                rec.send_signal(signal.SIGKILL)
                rec.wait()
                kills.append(time.time())
                ok = journal_covers_tables(data, lake, tmp / "rebuilt")
                journal_ok.append(ok)
                print(f"[{time.time() - t0:6.0f} s] kill -9 #{len(kills)}: {ok[1]}", flush=True)
                rec = start_recorder()
                next_kill = time.time() + a.kill_every
        rec.send_signal(signal.SIGTERM)
        rec.wait(timeout=120)
    finally:
        for p in (rec, maint, sim):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
    report(a, venues, lake, truth, kills, journal_ok, rss, t0, upkeep)
    if a.keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def report(a, venues, lake_dir: Path, truth_dir: Path, kills, journal_ok, rss, t0, upkeep=()) -> None:
    from lab.lake import Lake
    from recorders.sim.truth import book_mismatches, read_truth, silences, trades_due

    lake = Lake(lake_dir)
    truth = read_truth(truth_dir)
    trades = lake.scan("trades").collect()
    dups = trades.height - trades.unique(["venue", "symbol", "trade_id"]).height
    have = set(zip(trades["venue"], trades["symbol"], trades["trade_id"].cast(pl.String), strict=True))
    # As tests/recorders/test_recorder_sim.py: within each stretch of connected time, every trade
    # published between the first and the last trade we recorded in it (per symbol) must be there
    # (recorders.sim.truth.trades_due); a silent venue's trades reach no client. Trades outside
    # those spans (down time after a kill -9, the uncommitted last flush, reconnects) are counted
    # apart: only a REST backfill brings them back.
    quiet = silences(truth["faults"], trades)
    lost, published, outside = 0, 0, 0
    for v in venues:
        due = trades_due(truth, v, have, quiet)
        published += len(due)
        lost += sum(1 for t in due if (v, t["symbol"], str(t["trade_id"])) not in have)
        outside += sum(1 for t in truth["trades"] if t["venue"] == v and (v, t["symbol"], str(t["trade_id"])) not in have)
    outside -= lost
    print(f"\n== soak: {a.minutes:g} min, {len(venues)} venues x 3 symbols, --faults heavy, "
          f"{len(kills)} kill -9 of the recorder, load {os.getloadavg()[0]:.1f}")
    print(f"trades published within connected stretches: {published:,}; recorded in all: {len(have):,} "
          f"of {len(truth['trades']):,} published")
    print(f"TARGET trades lost while connected: {lost} (must be 0)")
    print(f"   not recorded outside connected stretches (down after kill -9, uncommitted last flush, "
          f"reconnects, silences; only backfill recovers them): {outside}")
    print(f"TARGET duplicated trades: {dups} (must be 0)")
    twice = {t: lake.scan(t).select(pl.len() - pl.struct(pl.all()).n_unique()).collect().item()
             for t in ("raw_messages", "book_updates") if lake.exists(t)}
    print(f"TARGET rows stored twice (journal, book_updates; compaction races): {twice} (must be 0)")
    for v in venues:
        # Kraken's checksum covers the top 10 levels: a lost update deeper than that is invisible to any
        # client (docs/CONTRACTS.md), so its books are compared on the levels the venue lets one verify.
        levels = 10 if v == "kraken" else 25
        n, bad = book_mismatches(lake, truth["books"], v, SYMBOLS[v], levels=levels)
        pct = 100.0 * (n - len(bad)) / n if n else float("nan")
        print(f"TARGET book checkpoints right, {v} (top {levels}): {n - len(bad)}/{n} = {pct:.1f}% (must be 100%)")
    q = lake.scan("quotes").filter(pl.col("bid_px") >= pl.col("ask_px")).collect()
    ev = lake.scan("feed_events").collect()
    crossed_events = ev.filter(pl.col("kind") == "crossed_book").height
    print(f"TARGET crossed quotes stored: {q.height} (must be 0); crossed_book events: {crossed_events}")
    faults = pl.DataFrame(truth["faults"]) if truth["faults"] else pl.DataFrame({"kind": []}, schema={"kind": pl.String})
    fk = faults.group_by("kind").len().sort("kind") if faults.height else faults
    ek = ev.group_by("kind").len().sort("kind")
    print("faults injected by kind:", dict(zip(fk["kind"], fk["len"], strict=True)) if fk.height else {})
    print("feed events by kind:    ", dict(zip(ek["kind"], ek["len"], strict=True)))
    ok = all(o for o, _ in journal_ok)
    print(f"TARGET journal ⊇ tables after every kill: {'yes' if ok else 'NO'} ({len(journal_ok)} checks)")
    if rss:
        half = (rss[-1][0]) / 2
        first = max((m for t, m, _ in rss if t <= half), default=float("nan"))
        second = max((m for t, m, _ in rss if t > half), default=float("nan"))
        # per recorder process: RSS 20 s after its start (start-up reads done) and its peak, so a
        # growth across restarts (start-up on a growing lake) shows apart from growth within one life
        lives: dict[int, list[tuple[float, float]]] = {}
        for t, m, pid in rss:
            lives.setdefault(pid, []).append((t, m))
        for i, life in enumerate(lives.values()):
            t_start = life[0][0]
            early = max((m for t, m in life if t - t_start <= 20), default=float("nan"))
            peak_t, peak = max(life, key=lambda x: x[1])
            print(f"   recorder #{i + 1} from {t_start:5.0f} s: {early:4.0f} MiB after 20 s, "
                  f"peak {peak:4.0f} MiB at +{peak_t - t_start:.0f} s, last {life[-1][1]:4.0f} MiB")
        print(f"TARGET recorder peak RSS flat: first half {first:.0f} MiB, second half {second:.0f} MiB "
              f"(ratio {second / first:.2f}; must be <= 1.10)")
    if upkeep:
        # compaction runs outside the recorder (its maintenance passes are child processes, and
        # `lab maintain` is its own process): their memory, apart, so it is seen where it went
        half = upkeep[-1][0] / 2
        for i, what in ((1, "lab maintain --every 30"), (2, "recorder's maintenance passes (child processes)")):
            f = max((x[i] for x in upkeep if x[0] <= half), default=0.0)
            s = max((x[i] for x in upkeep if x[0] > half), default=0.0)
            print(f"   {what}: peak RSS first half {f:.0f} MiB, second half {s:.0f} MiB")


if __name__ == "__main__":
    raise SystemExit(main())
