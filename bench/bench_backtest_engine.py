"""Backtest engine speed: events/s on one simulated day, vs hftbacktest; vectorised sweep time.

    .venv/bin/python bench/bench_backtest_engine.py            # one simulated day of binance BTC-USDT
    .venv/bin/python bench/bench_backtest_engine.py --quick    # one hour

The data is simulated once (recorders.sim.bulk) into --data and reused.
Figures: our numba fast path (timer market maker, the same strategy as the
hftbacktest run) and hftbacktest on the same rows converted to its format, with
its fastest book (ROIVector) and its general one (HashMap), run interleaved
--repeat times and reported as medians, wall and per CPU-second, with the
ratio to ROIVector as the target line; our Python-callback path; and the time
of a 1,000-parameter vectorised sweep over the same day.
Machine shared with other agents: ratios to the in-run baseline matter most.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import time
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one simulated hour instead of a day")
    ap.add_argument("--data", type=Path, default=None,
                    help="lake directory for the simulated data (default $LAB_DATA/bench/backtest_<span>)")
    ap.add_argument("--sweep-sets", type=int, default=1000, help="parameter sets in the vectorised sweep")
    ap.add_argument("--no-hftbacktest", action="store_true", help="skip the hftbacktest comparison")
    ap.add_argument("--sweep-only", action="store_true", help="only the vectorised sweep")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved runs of each engine (medians reported)")
    ap.add_argument("--no-sweep", action="store_true", help="skip the vectorised sweep")
    args = ap.parse_args()

    from lab.backtest import BacktestConfig, Fees, Latency, core, load_events
    from lab.backtest.strategies import MarketMaker, market_maker_fast
    from lab.lake import Lake, data_dir

    span = dt.timedelta(hours=1) if args.quick else dt.timedelta(days=1)
    name = "hour" if args.quick else "day"
    root = args.data or data_dir() / "bench" / f"backtest_{name}"
    lake = Lake(root)
    start = dt.datetime(2026, 11, 21, tzinfo=dt.timezone.utc)
    if not lake.exists("book_updates"):
        from recorders.sim.bulk import write_to_lake

        print(f"simulating one {name} of binance BTC-USDT into {root} ...", flush=True)
        t = time.perf_counter()
        write_to_lake(lake, start=start, duration=span, venues=("binance",), assets=("BTC",), seed=3,
                      progress=True)
        print(f"  {time.perf_counter() - t:.1f} s")
    if args.sweep_only:
        return _sweep(lake, args)
    t = time.perf_counter()
    ev = load_events(lake=lake, venues="binance", symbols="BTC-USDT")
    print(f"events: {len(ev):,} (book_updates + trades), loaded in {time.perf_counter() - t:.1f} s")

    cfg = BacktestConfig(fees={"binance": Fees(-0.0001, 0.0005)}, latency=Latency(1_000, 1_000))
    kw = dict(qty=0.01, half_spread=0, skew_ticks=0.0, max_position=0.05, interval_s=0.1)
    hk = dict(qty=0.01, max_position=0.05, interval_s=0.1, entry_us=1_000, response_us=1_000,
              maker_fee=-0.0001, taker_fee=0.0005)
    small = _slice(ev, 50_000)
    _timed(market_maker_fast(0, **kw), small, cfg)  # warm-up: load the numba cache
    runs: dict[str, list[tuple[float, float]]] = {"ours": [], "roivector": [], "hashmap": []}
    peers = [] if args.no_hftbacktest else ["roivector", "hashmap"]
    if peers:
        from lab.backtest.peer import run_hftbacktest_mm

        for book in peers:
            run_hftbacktest_mm(small, 0, **hk, book=book)  # compile
    loads = []
    h: dict[str, dict] = {}
    for _ in range(args.repeat):  # interleaved, so load swings hit every contender alike
        loads.append(os.getloadavg()[0])
        eng, wall, cpu = _timed(market_maker_fast(0, **kw), ev, cfg)
        runs["ours"].append((wall, cpu))
        for book in peers:
            h[book] = run_hftbacktest_mm(ev, 0, **hk, book=book)
            runs[book].append((h[book]["elapsed_s"], h[book]["cpu_s"]))
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in runs.items() if v}
    a = eng.arr
    n = len(ev)
    print(f"load average during the runs: median {statistics.median(loads):.1f} on {os.cpu_count()} cores; "
          f"medians of {args.repeat} interleaved runs")
    w, c = med["ours"]
    print(f"ours, numba fast path (timer MM, 100 ms): {w:.2f} s wall, {n / w:,.0f} events/s; {c:.2f} s CPU, "
          f"{n / c:,.0f} events/s per CPU-second; {int(a.ctr[core.C_NFILL]):,} fills, "
          f"{int(a.ctr[core.C_NEXT_ID]) - 1:,} orders")
    for book in peers:
        hw, hc = med[book]
        print(f"hftbacktest {_version()} {book}: {hw:.2f} s wall, {n / hw:,.0f} events/s; {hc:.2f} s CPU, "
              f"{n / hc:,.0f} events/s per CPU-second; {h[book]['num_trades']:,} fills")
    if peers:
        hw, hc = med["roivector"]
        print(f"TARGET backtest engine >= 1.2x hftbacktest ROIVector per CPU-second: "
              f"{hc / c:.2f}x per CPU-second ({hw / w:.2f}x wall)")
        hw2, hc2 = med["hashmap"]
        print(f"(vs its HashMap book: {hc2 / c:.2f}x per CPU-second, {hw2 / w:.2f}x wall)")
        vol = float(eng.fills_frame()["qty"].sum())
        print(f"agreement: volume ours {vol:.2f} vs hftbacktest {h['roivector']['trading_volume']:.2f} "
              f"({(vol / h['roivector']['trading_volume'] - 1) * 100:+.1f}%); ROIVector and HashMap fills "
              f"{h['roivector']['num_trades']:,} / {h['hashmap']['num_trades']:,}")
    if not args.quick:
        _, wall1, cpu1 = _timed(market_maker_fast(0, **{**kw, "interval_s": 1.0}), ev, cfg)
        print(f"ours, numba fast path (same MM requoting every 1 s): {n / wall1:,.0f} events/s wall, "
              f"{n / cpu1:,.0f} events/s per CPU-second")
        py_ev = _slice(ev, min(n, 1_000_000))
        mk = lambda: MarketMaker(venue="binance", symbol="BTC-USDT", **kw)  # noqa: E731
        _timed(mk(), small, cfg)
        _, pwall, pcpu = _timed(mk(), py_ev, cfg)
        print(f"ours, Python-callback path (same MM in Python, first {len(py_ev):,} events): "
              f"{len(py_ev) / pwall:,.0f} events/s wall, {len(py_ev) / pcpu:,.0f} per CPU-second")

    return 0 if args.no_sweep else _sweep(lake, args)


def _sweep(lake, args) -> int:
    from lab import scan
    from lab.backtest import vector

    t = time.perf_counter()
    q = scan("quotes", lake=lake, venue="binance", symbol="BTC-USDT")
    snaps = scan("book_snapshots", lake=lake, venue="binance", symbol="BTC-USDT")
    prep = vector.with_latency(vector.with_walk_prices(vector.bars(q, "1s"), snaps, 0.5), "200ms").collect()
    t_prep = time.perf_counter() - t
    windows = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600]
    nth = max(1, args.sweep_sets // len(windows))
    ths = list(np.linspace(0.0, 0.99, nth))
    t = time.perf_counter()
    res = vector.sweep(prep.lazy(), windows=windows, thresholds=ths, qty=0.5, fee=0.0005, chunk=100,
                       progress=True)
    t_sweep = time.perf_counter() - t
    best = res.sort("pnl", descending=True).row(0, named=True)
    print(f"vectorised: bars+walk+latency prep {t_prep:.1f} s ({prep.height:,} 1 s bars); "
          f"sweep of {res.height:,} parameter sets {t_sweep:.1f} s (target <= 60 s); "
          f"best window={best['window']} threshold={best['threshold']:.3f} pnl={best['pnl']:.2f}")
    return 0


def _timed(strategy, ev, cfg):
    """Run the engine loop only (no result frames): (engine, wall s, CPU s of this thread)."""
    from lab.backtest import Engine

    # log sizes as run_backtest picks them (from the number of events)
    eng = Engine(ev.instruments, cfg, start_us=ev.start, end_us=ev.end,
                 max_log=min(max(262_144, len(ev)), 16_000_000), max_fills=min(max(65_536, len(ev) // 8), 4_000_000))
    eng.start(strategy)
    t, c = time.perf_counter(), time.thread_time()
    eng.feed(ev, ev.end)
    return eng, time.perf_counter() - t, time.thread_time() - c


def _slice(ev, n: int):
    import dataclasses

    m = np.arange(len(ev)) < n
    ts_l = ev.ts_l[m]
    return dataclasses.replace(ev, ts_x=ev.ts_x[m], ts_l=ts_l, kind=ev.kind[m], inst=ev.inst[m],
                               side=ev.side[m], px=ev.px[m], qty=ev.qty[m],
                               lorder=np.argsort(ts_l, kind="stable").astype(np.int64))


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("hftbacktest")
    except Exception:  # noqa: BLE001
        return "?"


if __name__ == "__main__":
    os.environ.setdefault("POLARS_MAX_THREADS", "2")
    raise SystemExit(main())
