"""Recorder throughput vs bare receive loops on the same stream (websockets, and picows: the recorder's client).

A Binance-shaped stream (3 depth diffs : 1 trade) is served from another
process as fast as the socket takes it. Baseline (the issue's): a bare
``websockets`` loop, ``async for m in ws`` only. Recorder: the full pipeline in
one process (receive, journal, msgspec parse, L2 book, quotes, sampled
snapshots, columnar batches, the lake writer thread appending to a fresh Delta
lake). The recorder receives through picows' websockets-compatible client, so
bare loops on that library are printed too — its websockets API and its native
listener API, the fastest way to receive with it: the ratio to that one is the
honest cost of the recorder. The peer, cryptofeed (its Binance feed: Decimal JSON,
snapshot + diff sync, C order book, callbacks keeping the top of book and a trade
buffer, no storage: its handling rate), runs in the same rounds from a venv of
its own that this bench creates under ``--venvs`` with the project's uv (see
``bench/_cryptofeed_client.py``); if it cannot be installed or run, the output
says why and the rest of the bench still runs. Prints msgs/s and msgs per
CPU-second, medians of interleaved rounds, the load average, and the ratios
(the issue's target: >= 0.70 of the websockets loop). The recorder and the bare loops run on
the event loop `lab record` uses (lab.eventloop: uvloop; ``LAB_EVENT_LOOP=asyncio`` for asyncio's),
and cryptofeed on uvloop too (its own fastest setting).

    .venv/bin/python bench/bench_recorder_throughput.py [--quick] [-n N] [--repeat R] [--no-cryptofeed]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import picows
import picows.websockets
import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab import eventloop  # noqa: E402
from recorders.config import RecorderConfig, VenueConfig  # noqa: E402
from recorders.runtime import Recorder  # noqa: E402


def start_server(n: int, rate: float = 0.0, burst: float = 0.0) -> tuple[subprocess.Popen, int]:
    p = subprocess.Popen([sys.executable, str(ROOT / "bench" / "_recorder_stream.py"), "-n", str(n),
                          "--rate", str(rate), "--burst", str(burst)], stdout=subprocess.PIPE, text=True)
    port = int(p.stdout.readline())
    return p, port


async def bare(url: str, n: int, lib=websockets) -> tuple[float, float]:
    """(msgs per wall second, msgs per CPU second of this process)."""
    async with lib.connect(url, compression=None, max_size=2**24, max_queue=256) as ws:
        t0 = c0 = None
        k = 0
        async for _ in ws:
            if t0 is None:
                t0, c0 = time.perf_counter(), time.process_time()
            k += 1
            if k >= n:
                return (n - 1) / (time.perf_counter() - t0), (n - 1) / (time.process_time() - c0)
    raise RuntimeError("stream ended early")


async def bare_picows_native(url: str, n: int) -> tuple[float, float]:
    """The fastest receive loop on the recorder's client library: picows' native listener API
    (frames handed to a callback, no per-message awaits), counting text frames only."""
    done = asyncio.get_running_loop().create_future()

    class Count(picows.WSListener):
        k = 0
        t0 = c0 = 0.0

        def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
            if frame.msg_type != picows.WSMsgType.TEXT:
                return
            if self.k == 0:
                self.t0, self.c0 = time.perf_counter(), time.process_time()
            self.k += 1
            if self.k >= n and not done.done():
                done.set_result(((n - 1) / (time.perf_counter() - self.t0), (n - 1) / (time.process_time() - self.c0)))
                transport.disconnect()

    transport, _ = await picows.ws_connect(Count, url, max_frame_size=2**24)
    try:
        return await asyncio.wait_for(done, 600)
    finally:
        transport.disconnect()


async def recorder(port: int, n: int, lake: str) -> tuple[float, float, dict, float]:
    """(parse msgs/s, end-to-end msgs/s, rows written, end-to-end msgs per CPU second).

    End to end = first message received -> the journal rows of all ``n`` messages
    committed to the lake (so it includes the last flush interval's wait and the
    last commit); the recorder keeps running meanwhile, as it would live."""
    cfg = RecorderConfig(venues=[VenueConfig(venue="binance", symbols=["BTC-USDT"],
                                             base_url=f"ws://127.0.0.1:{port}",
                                             rest_url=f"http://127.0.0.1:{port}")],
                         name="bench-throughput", lake=lake, flush_interval=0.5, maintain_every=0,
                         status_dir=tempfile.mkdtemp())
    rec = Recorder(cfg)
    task = asyncio.create_task(rec.run())
    runner = rec.runners[0]
    t0 = t_parse = None
    while True:
        await asyncio.sleep(0.005)
        if t0 is None and runner.stats().get("messages", 0):
            t0, c0 = time.perf_counter() - 0.0025, time.process_time()
        if t_parse is None and runner.stats().get("messages", 0) >= n - 1:
            t_parse = time.perf_counter()
        if rec.writer.rows_written.get("raw_messages", 0) >= n:
            t_lake, c_lake = time.perf_counter(), time.process_time()
            break
    cpu_writer = rec.writer.cpu_s
    rec.stop()
    await task
    # CPU of every thread (receive loop and lake writer) until the rows are in the lake
    print(f"  (recorder CPU {c_lake - c0:.2f} s, of which the lake writer thread {cpu_writer:.2f} s)")
    return (n - 1) / (t_parse - t0), (n - 1) / (t_lake - t0), rec.writer.rows_written, (n - 1) / (c_lake - c0)


DEFAULT_VENVS = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hfthot-bench-venvs"


def cryptofeed_python(venvs: Path) -> tuple[Path | None, str]:
    """The python of a venv holding cryptofeed (created on first use with the project's uv),
    or ``(None, why)`` with the installer's own error text."""
    venv = venvs / "cryptofeed"
    py = venv / "bin" / "python"
    probe = [str(py), "-c", "import importlib.metadata as m, cryptofeed; print(m.version('cryptofeed'))"]
    if py.exists():
        r = subprocess.run(probe, capture_output=True, text=True)
        if r.returncode == 0:
            return py, r.stdout.strip()
    uv = Path(sys.executable).parent / "uv"  # the project's uv, beside the interpreter running the bench
    if not uv.exists():
        return None, f"no uv beside {sys.executable} to install it with (make setup puts one in .venv/bin)"
    venvs.mkdir(parents=True, exist_ok=True)
    for cmd in ([str(uv), "venv", "--allow-existing", str(venv), "--python", sys.executable],
                [str(uv), "pip", "install", "--python", str(py), "cryptofeed"]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            return None, f"`{' '.join(cmd)}` failed: {(r.stderr or r.stdout).strip()[-800:]}"
    r = subprocess.run(probe, capture_output=True, text=True)
    if r.returncode != 0:
        return None, f"cryptofeed installed but does not import: {r.stderr.strip()[-800:]}"
    return py, r.stdout.strip()


def run_cryptofeed(py: Path, port: int, n: int) -> tuple[float, float] | str:
    """(msgs per wall second, msgs per CPU second) of cryptofeed, or the reason it failed."""
    r = subprocess.run([str(py), str(ROOT / "bench" / "_cryptofeed_client.py"), "--port", str(port), "-n", str(n)],
                       capture_output=True, text=True, timeout=1200)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        return f"exit {r.returncode}: {(r.stdout + r.stderr).strip()[-800:]}"
    out = json.loads(lines[-1])
    if "error" in out:
        return out["error"]
    return out["wall"], out["cpu"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller run (100k messages)")
    ap.add_argument("-n", type=int, default=None, help="messages per run (default 1M, quick 100k)")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds (bare loops, recorder, "
                    "cryptofeed); medians reported")
    ap.add_argument("--no-cryptofeed", action="store_true", help="skip the peer")
    ap.add_argument("--venvs", type=Path, default=DEFAULT_VENVS,
                    help=f"where the peer's venv is created and reused (default {DEFAULT_VENVS})")
    a = ap.parse_args()
    n = a.n or (100_000 if a.quick else 1_000_000)
    cf_py, cf_why = (None, "skipped (--no-cryptofeed)") if a.no_cryptofeed else cryptofeed_python(a.venvs)
    print(f"cryptofeed: {cf_why if cf_py is None else cf_why + ' from ' + str(cf_py.parent.parent)}", flush=True)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; every loop of ours "
          f"(the recorder and the bare ones) on {eventloop.loop_name()}, as `lab record` runs (lab.eventloop)", flush=True)
    cf_runs: list[tuple[float, float]] = []
    server, port = start_server(n)
    url = f"ws://127.0.0.1:{port}/stream?streams=btcusdt@trade/btcusdt@depth@100ms"
    pairs = []
    try:
        for i in range(a.repeat):  # alternate, so machine load drifts hit both alike
            base, base_cpu = eventloop.run(bare(url + "&bench=bare", n))
            pw, _ = eventloop.run(bare(url + "&bench=bare", n, picows.websockets))
            pn, pn_cpu = eventloop.run(bare_picows_native(url + "&bench=bare", n))
            with tempfile.TemporaryDirectory() as d:
                parse, e2e, rows, e2e_cpu = eventloop.run(recorder(port, n, d + "/lake"))
            pairs.append((base, parse, e2e, base_cpu, e2e_cpu, pw, pn, pn_cpu))
            cf = ""
            if cf_py is not None:
                got = run_cryptofeed(cf_py, port, n)
                if isinstance(got, str):
                    cf_py, cf_why = None, f"failed to run: {got}"
                    cf = f", cryptofeed {cf_why}"
                else:
                    cf_runs.append(got)
                    cf = f", cryptofeed {got[0]:,.0f}/s ({got[1]:,.0f}/CPU-s)"
            print(f"run {i + 1}: bare {base:,.0f}/s ({base_cpu:,.0f}/CPU-s), bare picows {pw:,.0f}/s, "
                  f"bare picows native {pn:,.0f}/s ({pn_cpu:,.0f}/CPU-s), "
                  f"recorder parse {parse:,.0f}/s, "
                  f"end-to-end {e2e:,.0f}/s ({e2e_cpu:,.0f}/CPU-s){cf}", flush=True)
    finally:
        server.kill()
    med = lambda xs: sorted(xs)[len(xs) // 2]
    base, parse, e2e = (med([p[k] for p in pairs]) for k in range(3))
    r_wall = med([p[2] / p[0] for p in pairs])
    r_cpu = med([p[4] / p[3] for p in pairs])
    print(f"messages per run: {n}; medians of {len(pairs)} paired runs")
    print(f"bare websockets receive loop:  {base:,.0f} msgs/s")
    print(f"bare picows (websockets API):  {med([p[5] for p in pairs]):,.0f} msgs/s  (the recorder's client)")
    print(f"bare picows native listener:   {med([p[6] for p in pairs]):,.0f} msgs/s  (the same library's fastest loop)")
    print(f"recorder receive+parse:        {parse:,.0f} msgs/s")
    print(f"recorder end-to-end (in lake): {e2e:,.0f} msgs/s")
    print(f"ratio end-to-end / bare websockets loop, wall clock: {r_wall:.2f}   (target >= 0.70)")
    print(f"ratio end-to-end / bare picows native loop (same client library), wall clock: "
          f"{med([p[2] / p[6] for p in pairs]):.2f}; per CPU-second: {med([p[4] / p[7] for p in pairs]):.2f}")
    print(f"ratio per CPU-second (all recorder threads incl. the lake writer vs the bare loop): "
          f"{r_cpu:.2f}  (robust to other load on the machine; pessimistic on 2 idle cores)")
    if cf_runs and len(cf_runs) == len(pairs):
        print(f"cryptofeed (handling, no storage): {med([c[0] for c in cf_runs]):,.0f} msgs/s, "
              f"{med([c[1] for c in cf_runs]):,.0f} msgs/CPU-s")
        print(f"ratio end-to-end msgs/s, recorder (into the lake) / cryptofeed (handling only), same round: "
              f"{med([p[2] / c[0] for p, c in zip(pairs, cf_runs)]):.2f}  (higher is better)")
        print(f"ratio CPU per message, recorder (all threads, into the lake) / cryptofeed (handling only): "
              f"{med([c[1] / p[4] for p, c in zip(pairs, cf_runs)]):.2f}  (lower is better)")
    else:
        print(f"cryptofeed: not measured: {cf_why}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"rows written: {rows}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
