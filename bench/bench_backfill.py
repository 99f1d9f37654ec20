"""Backfill of one hour of one busy simulated symbol over the venue's REST history.

The simulator runs fast (``--speed``) until it has published ``--minutes`` of
simulated trading, then the backfill fetches every trade of that span through
``recorders/backfill.py`` and ``recorders/rest.py`` at the venue's real rate
limits (the simulator enforces them: 429 beyond). Prints seconds, trades,
requests made, the weight used in the venue's window vs its limit, and 429s.

    .venv/bin/python bench/bench_backfill.py --venue binance --minutes 60
    .venv/bin/python bench/bench_backfill.py --venue okx --minutes 10
"""

from __future__ import annotations

import argparse
import asyncio
import time

from recorders.backfill import fetch_between
from recorders.rest import RestClient
from recorders.sim import SimConfig, Simulator
from recorders.sim.history import RATE_LIMITS, WEIGHTS

SYM = {"binance": "BTC-USDT", "okx": "BTC-USDT", "kraken": "BTC-USD", "coinbase": "BTC-USD"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venue", default="binance", choices=sorted(SYM))
    ap.add_argument("--minutes", type=float, default=60.0, help="simulated minutes of history to backfill")
    ap.add_argument("--speed", type=float, default=300.0)
    ap.add_argument("--activity", type=float, default=4.0, help="trade-rate multiplier (busy symbol)")
    ap.add_argument("--min-interval", type=float, default=None,
                    help="client seconds between requests (default: the venue's limit / weight)")
    a = ap.parse_args()
    v = a.venue
    sim = Simulator(SimConfig(venues=(v,), assets=("BTC",), port_base=0, seed=3, speed=a.speed,
                              activity=a.activity, truth_book_every=0))
    limit, window = RATE_LIMITS[v]
    every = a.min_interval if a.min_interval is not None else window * WEIGHTS[v] / limit
    with sim.running_in_thread():
        t0 = time.perf_counter()
        h = sim.history[0]
        while True:
            t = h.cols()[0]
            if t.shape[0] and (int(t[-1]) - int(t[0])) >= a.minutes * 60e9:
                break
            time.sleep(0.5)
        fill_s = time.perf_counter() - t0
        t, _, _, _, ids = h.cols()
        lo, hi = int(ids[0]), int(ids[-1])
        ts0, ts1 = int(t[0]) // 1000, int(t[-1]) // 1000
        lim = sim.rate_limits[v]

        async def run():
            client = RestClient(min_interval=every, max_backoff=5.0)
            errors: list[str] = []
            try:
                s = time.perf_counter()
                r = await fetch_between(v, sim.urls()[v + "_rest"], SYM[v], lo, hi,
                                        lambda u: client.get(u, errors.append), lo_ts_us=ts0, hi_ts_us=ts1)
                return r, time.perf_counter() - s, client.calls, errors
            finally:
                await client.aclose()

        r, secs, calls, errors = asyncio.run(run())
    n429 = sum("HTTP 429" in e for e in errors)
    print(f"venue {v}: {a.minutes:g} simulated minutes, {hi - lo + 1:,} trades (history built in {fill_s:.1f} s)")
    print(f"backfill: {secs:.2f} s, {len(r.trades):,} trades fetched, missing {r.missing}, "
          f"{r.requests} pages, {calls} HTTP requests ({n429} answered 429)")
    print(f"rate: {calls / secs:.1f} requests/s; weight per request {WEIGHTS[v]:g}; peak weight used in a "
          f"{window:g} s window {lim.max_used:g} of {limit:g} allowed; client spacing {every:.3f} s")


if __name__ == "__main__":
    main()
