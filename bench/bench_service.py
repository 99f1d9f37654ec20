"""Data service speed (issue 18), remote next to local in the same run.

    .venv/bin/python bench/bench_service.py [--quick] [--minutes 5]

1. fetching 1,000,000 trades rows through Flight SQL (ADBC client, ``lab serve`` in
   its own process) vs a local ``lab.connect()``: interleaved, medians, ratio
   (local time / remote time; target >= 0.5);
2. a fresh query (the README's seed query over the last hour) every ~0.5 s for
   ``--minutes`` while a writer commits 1,000 rows a second and the lake is
   compacted every 30 s: p50/p99, remote vs local (local = a fresh ``lab.connect()``
   + the query, as a notebook or page does);
3. live: publisher -> bus hub (own process) -> data service -> remote subscriber at
   the demo's rate (~370 messages/s): p99 of receipt time minus publish time;
4. live end to end, the issue's line: ``lab simulate`` (5 venues x 3 assets, the demo's
   ~370 messages/s) -> ``lab record --bus-serve`` -> ``lab serve`` -> a remote subscriber of
   ``quotes`` and ``trades``: p50/p99 of (arrival at the subscriber - the recorder's receipt
   stamp ``ts_local``), so the recorder's own bus batching (every 50 ms) is counted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import lab  # noqa: E402
from lab.lake import Lake  # noqa: E402
from lab.service.client import RemoteConnection  # noqa: E402

TOKEN = "bench-token"
LAB = str(Path(sys.executable).with_name("lab"))
SEED = """
  SELECT time_bucket(INTERVAL '1 second', timestamp) as bucket, avg(price) as avg_price,
         sum(volume) as total_volume
  FROM trades WHERE symbol = 'BTC-USD' AND timestamp > current_timestamp - INTERVAL '1 hour'
  GROUP BY bucket ORDER BY bucket DESC"""


def trades(n: int, t_end: dt.datetime, span_s: float, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    off = np.sort(rng.uniform(0, span_s * 1e6, n)).astype("int64")
    t0 = t_end - dt.timedelta(seconds=span_s)
    ts = pl.Series(off).cast(pl.Duration("us")) + t0
    return pl.DataFrame({
        "ts_exchange": ts, "ts_local": ts,
        "venue": rng.choice(["binance", "coinbase", "kraken"], n),
        "symbol": rng.choice(["BTC-USD", "ETH-USD"], n),
        "trade_id": pl.Series(np.arange(n) + seed * 10_000_000).cast(pl.String),
        "price": 100 + rng.standard_normal(n).cumsum() * 0.01, "qty": rng.exponential(0.5, n),
        "side": rng.choice(["buy", "sell"], n),
    })


def serve(lake: Path, bus: str | None = None) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "LAB_SERVICE_TOKEN": TOKEN}
    p = subprocess.Popen([LAB, "serve", "--lake", str(lake), "--port", "0", "--bus", bus or "none",
                          "--max-rows", "20000000"], stdout=subprocess.PIPE, text=True, env=env)
    m = re.search(r"(grpc://\S+)", p.stdout.readline())
    assert m, "lab serve did not start"
    return p, m.group(1)


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def bench_fetch(reps: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        lake = Lake(Path(d) / "lake")
        lake.append("trades", trades(1_000_000, dt.datetime.now(dt.timezone.utc), 3600))
        p, url = serve(lake.root)
        try:
            remote = RemoteConnection(url, TOKEN)
            q = "select * from trades"
            loc, rem = [], []
            for _ in range(reps):
                t = time.perf_counter()
                n1 = lab.connect(lake).sql(q).to_arrow_table().num_rows
                loc.append(time.perf_counter() - t)
                t = time.perf_counter()
                n2 = remote.sql(q).to_arrow_table().num_rows
                rem.append(time.perf_counter() - t)
                assert n1 == n2 == 1_000_000
            ml, mr = statistics.median(loc), statistics.median(rem)
            print(f"1. fetch 1,000,000 rows x{reps} interleaved: local median {ml * 1e3:.0f} ms "
                  f"({1e6 / ml / 1e6:.1f} M rows/s), Flight SQL median {mr * 1e3:.0f} ms "
                  f"({1e6 / mr / 1e6:.1f} M rows/s); ratio {ml / mr:.2f} of local (target >= 0.5)")
        finally:
            p.terminate()
            p.wait(30)


def bench_fresh(minutes: float) -> None:
    with tempfile.TemporaryDirectory() as d:
        lake = Lake(Path(d) / "lake")
        now = dt.datetime.now(dt.timezone.utc)
        lake.append("trades", trades(300_000, now, 3600, seed=1))
        p, url = serve(lake.root)
        stop = threading.Event()
        commits = [0]

        def writer() -> None:
            k, last_maint = 2, time.monotonic()
            while not stop.is_set():
                t = time.monotonic()
                lake.append("trades", trades(1000, dt.datetime.now(dt.timezone.utc), 1.0, seed=k))
                k += 1
                commits[0] += 1
                if time.monotonic() - last_maint > 30:
                    lake.maintain("trades")
                    last_maint = time.monotonic()
                stop.wait(max(0.0, 1.0 - (time.monotonic() - t)))

        w = threading.Thread(target=writer, daemon=True)
        w.start()
        try:
            remote = RemoteConnection(url, TOKEN)
            loc, rem = [], []
            end = time.monotonic() + minutes * 60
            while time.monotonic() < end:
                t = time.perf_counter()
                con = lab.connect(lake)
                con.sql(SEED).to_arrow_table()
                con.close()
                loc.append(time.perf_counter() - t)
                t = time.perf_counter()
                remote.sql(SEED).to_arrow_table()
                rem.append(time.perf_counter() - t)
                time.sleep(0.5)
            print(f"2. fresh seed query for {minutes:g} min ({len(loc)} each, writer {commits[0]} commits of "
                  f"1,000 rows, compaction every 30 s): local p50 {pct(loc, 50) * 1e3:.0f} ms p99 "
                  f"{pct(loc, 99) * 1e3:.0f} ms; remote p50 {pct(rem, 50) * 1e3:.0f} ms p99 {pct(rem, 99) * 1e3:.0f} ms")
        finally:
            stop.set()
            w.join(30)
            p.terminate()
            p.wait(30)


def bench_live(seconds: float, rate: float) -> None:
    from lab.bus import Publisher

    port_probe = __import__("socket").socket()
    port_probe.bind(("127.0.0.1", 0))
    bus_port = port_probe.getsockname()[1]
    port_probe.close()
    hub = subprocess.Popen([sys.executable, "-m", "lab.bus", "--port", str(bus_port)], stdout=subprocess.PIPE,
                           text=True)
    hub.stdout.readline()
    bus = f"ws://127.0.0.1:{bus_port}"
    with tempfile.TemporaryDirectory() as d:
        p, url = serve(Path(d) / "lake", bus)
        lat: list[float] = []
        sent = [0]

        async def main() -> None:
            pub = Publisher(bus + "/publish")
            await pub.start()
            got = 0
            warm = asyncio.Event()

            def row(i: int, symbol: str = "BTC-USDT") -> dict:
                now_us = int(time.time() * 1e6)
                return {"ts_exchange": now_us, "ts_local": now_us, "venue": "binance", "symbol": symbol,
                        "bid_px": 1.0 + i, "bid_qty": 1.0, "ask_px": 2.0, "ask_qty": 1.0}

            async def consume() -> None:
                nonlocal got
                async for b in lab.subscribe("quotes", url=url, token=TOKEN):
                    now = time.time() * 1e6
                    if "WARM-UP" in b.column("symbol").to_pylist():  # until the stream flows
                        warm.set()
                        continue
                    ts = b.column("ts_local").cast("int64").to_numpy()
                    lat.extend((now - ts) / 1e3)
                    got += b.num_rows
                    if got >= sent[0] and sent[0] >= int(seconds * rate):
                        return

            task = asyncio.create_task(consume())
            while not warm.is_set():  # until one row made the whole trip
                pub.publish_nowait("quotes", [row(-1, "WARM-UP")])
                try:
                    await asyncio.wait_for(warm.wait(), 0.2)
                except TimeoutError:
                    pass
            await asyncio.sleep(0.5)  # let stray warm-up rows drain
            lat.clear()
            got = 0
            t0 = time.monotonic()
            i = 0
            while i < int(seconds * rate):
                due = t0 + i / rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                pub.publish_nowait("quotes", [row(i)])
                i += 1
                sent[0] = i
            try:
                await asyncio.wait_for(task, 30)
            except TimeoutError:
                pass
            await pub.close()

        try:
            asyncio.run(main())
            half = lat[len(lat) // 2:]
            print(f"   (second half only: p50 {pct(half, 50):.1f} ms, p99 {pct(half, 99):.1f} ms; "
                  f"first 10 rows: {', '.join(f'{x:.0f}' for x in lat[:10])} ms)")
            print(f"3. live at {rate:g} msgs/s for {seconds:g} s: {len(lat)}/{sent[0]} rows received; publish -> remote "
                  f"subscriber p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms, max {max(lat, default=0):.1f} ms "
                  f"(target p99 <= 100 ms)")
        finally:
            p.terminate()
            p.wait(30)
            hub.terminate()
            hub.wait(30)


def bench_recorder_live(seconds: float) -> None:
    from recorders.sim.harness import Recording, free_port

    os.environ.setdefault("LAB_BUS_TOKEN", "bench-bus-" + os.urandom(8).hex())  # the hub and the service
    bus = f"ws://127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory() as d, \
            Recording(Path(d), venues=("binance", "coinbase", "kraken", "okx", "bybit"), flush_interval=1.0,
                      record_args=("--bus", bus, "--bus-serve")) as rec:
        rec.wait_rows("quotes")
        p, url = serve(rec.lake_root, bus)
        lat: dict[str, list[float]] = {"quotes": [], "trades": []}

        async def one(table: str, until: float) -> None:
            it = lab.subscribe(table, url=url, token=TOKEN).__aiter__()
            while time.monotonic() < until:
                try:
                    b = await asyncio.wait_for(it.__anext__(), max(0.1, until - time.monotonic()))
                except (TimeoutError, StopAsyncIteration):
                    break
                now = time.time() * 1e6
                if b.num_rows:  # ts_local: timestamp[us], the recorder's receipt stamp
                    ts = b.column("ts_local").cast("int64").to_numpy()
                    lat[table].extend((now - ts) / 1e3)

        async def main() -> None:
            warm = time.monotonic() + 5  # the first seconds carry the restated books: not steady state
            await asyncio.gather(one("quotes", warm), one("trades", warm))
            for v in lat.values():
                v.clear()
            until = time.monotonic() + seconds
            await asyncio.gather(one("quotes", until), one("trades", until))

        try:
            asyncio.run(main())
            allv = lat["quotes"] + lat["trades"]
            print(f"4. live end to end for {seconds:g} s (lab simulate, 5 venues x 3 assets -> lab record --bus-serve "
                  f"-> lab serve -> remote subscriber): {len(lat['quotes']):,} quotes, {len(lat['trades']):,} trades; "
                  f"recorder receipt -> remote subscriber p50 {pct(allv, 50):.1f} ms, p99 {pct(allv, 99):.1f} ms, "
                  f"max {max(allv, default=0):.1f} ms (target p99 <= 100 ms); load {os.getloadavg()[0]:.2f}")
        finally:
            p.terminate()
            p.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 fetch reps, 0.5 min fresh queries, 10 s live")
    ap.add_argument("--minutes", type=float, default=5.0, help="duration of part 2")
    ap.add_argument("--reps", type=int, default=7)
    a = ap.parse_args()
    reps, minutes, live_s = (3, 0.5, 10.0) if a.quick else (a.reps, a.minutes, 60.0)
    bench_fetch(reps)
    bench_fresh(minutes)
    bench_live(live_s, 370.0)
    bench_recorder_live(live_s)


if __name__ == "__main__":
    main()
