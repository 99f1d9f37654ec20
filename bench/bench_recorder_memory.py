"""Memory under pressure: peak RSS of ``lab record`` during 10x bursts with a
deliberately slowed lake writer.

A Binance-shaped stream runs at ``--rate`` msgs/s with 1 s bursts at 10x every
5 s; the recorder's writer sleeps ``--writer-delay`` s per batch and its queue
holds ``--queue-batches`` batches. Bounded means: RSS stops growing (the
second half of the run peaks no higher than the first, within noise) and the
rows that could not be queued are recorded as ``loss`` feed events, not
silently dropped. Prints RSS figures and the recorded losses.

    .venv/bin/python bench/bench_recorder_memory.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_recorder_throughput import start_server  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20 s instead of 40 s")
    ap.add_argument("--rate", type=float, default=4000.0, help="base msgs/s (bursts are 10x)")
    ap.add_argument("--writer-delay", type=float, default=1.5, help="seconds the writer sleeps per batch")
    ap.add_argument("--queue-batches", type=int, default=4)
    a = ap.parse_args()
    secs = 20.0 if a.quick else 40.0
    n = int(secs * a.rate * 2.8) + 10_000  # base + 10x for 1 s in 5
    server, port = start_server(n, rate=a.rate, burst=1.0)
    tmp = Path(tempfile.mkdtemp(prefix="bench-mem-"))
    env = dict(os.environ, PYTHONPATH=str(ROOT), LAB_DATA=str(tmp))
    rec = subprocess.Popen([sys.executable, "-m", "lab.cli", "record", "--venue", "binance",
                            "--symbols", "BTC-USDT", "--base-url", f"ws://127.0.0.1:{port}",
                            "--rest-url", f"http://127.0.0.1:{port}", "--lake", str(tmp / "lake"),
                            "--flush-interval", "0.25", "--queue-batches", str(a.queue_batches),
                            "--writer-delay", str(a.writer_delay), "--maintain-every", "0",
                            "--duration", str(secs)], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    p = psutil.Process(rec.pid)
    samples: list[tuple[float, float]] = []
    t0 = time.time()
    try:
        while rec.poll() is None:
            try:
                samples.append((time.time() - t0, p.memory_info().rss / 2**20))
            except psutil.NoSuchProcess:
                break
            time.sleep(0.1)
    finally:
        server.kill()
    rec.wait(120)
    from lab.lake import Lake

    lk = Lake(tmp / "lake")
    ev = lk.read("feed_events").filter(pl.col("kind") == "loss")
    raw = lk.read("raw_messages").height
    win = 5.0
    peaks = [max((r for t, r in samples if k * win < t <= (k + 1) * win), default=0.0)
             for k in range(int(secs // win) + 1)]
    print("peak RSS per 5 s window (MiB): " + " ".join(f"{p:.0f}" for p in peaks if p))
    half = secs / 2
    first = max((r for t, r in samples if 3 < t <= half), default=0.0)
    second = max((r for t, r in samples if t > half), default=0.0)
    print(f"{secs:.0f} s at {a.rate:.0f} msgs/s with 10x bursts; writer delay {a.writer_delay}s/batch, "
          f"queue bound {a.queue_batches} batches")
    print(f"peak RSS: first half {first:.0f} MiB, second half {second:.0f} MiB, "
          f"overall {max(r for _, r in samples):.0f} MiB (growth {second - first:+.0f} MiB)")
    print(f"messages journaled: {raw}; loss events recorded: {ev.height}")
    for d in ev["detail"].head(3):
        print("  loss:", d[:160])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
