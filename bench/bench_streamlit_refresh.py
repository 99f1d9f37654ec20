"""Live market page: server-side time per refresh, and the Streamlit process's memory.

Starts the simulator and one recorder (3 venues x 3 assets) into a temp
lake, a real Streamlit server on a free loopback port, and headless
Chromium (Debian's, via Playwright) on the Live market page, whose fragment
refreshes every second. The page appends the server-side time of each
refresh (wall clock, and the server process's CPU time over it) to a file
($LAB_STREAMLIT_TIMINGS); this script prints their distribution (target:
p50 <= 300 ms) and the server's RSS at the start and the end of the run
(target: stable). On a shared 2-core machine the wall time includes waiting
for the CPU behind the simulator, the recorder and the browser; the CPU time
is what a refresh costs.

    .venv/bin/python bench/bench_streamlit_refresh.py            # 10 minutes
    .venv/bin/python bench/bench_streamlit_refresh.py --quick    # 1 minute
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import start_streamlit  # noqa: E402  (this folder)

from recorders.sim.harness import Recording, free_port  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic"]


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(url)


def _rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a 1-minute run instead of 10 minutes")
    ap.add_argument("--seconds", type=float, default=None, help="run length in seconds (overrides --quick)")
    ap.add_argument("--warmup", type=float, default=20.0, help="seconds recorded before the page opens")
    a = ap.parse_args()
    seconds = a.seconds or (60.0 if a.quick else 600.0)

    from playwright.sync_api import sync_playwright
    from tqdm import tqdm

    with tempfile.TemporaryDirectory(prefix="bench_st_") as tmp:
        base = Path(tmp)
        timings = base / "timings.txt"
        with Recording(base / "data") as rec:
            rec.wait_rows("quotes")
            print(f"recording 3 venues x 3 assets from the simulator (ports {rec.port_base}+); "
                  f"warming up {a.warmup:.0f} s", flush=True)
            time.sleep(a.warmup)
            port = free_port()
            env = os.environ | {"LAB_DATA": str(base / "data"), "LAB_STREAMLIT_TIMINGS": str(timings)}
            log = open(base / "streamlit.log", "w")
            st = start_streamlit(ROOT, port, env, log)
            try:
                _wait_http(f"http://127.0.0.1:{port}/_stcore/health", 90)
                with sync_playwright() as pw:
                    b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                    page = b.new_page(viewport={"width": 1600, "height": 1000})
                    page.goto(f"http://127.0.0.1:{port}/", timeout=90_000)
                    page.wait_for_selector(".st-key-bid_ask .js-plotly-plot", timeout=90_000)
                    time.sleep(30)  # first refreshes, imports and the background warm-up (streamlit_apps.warm) settle
                    rss0, load0 = _rss_mb(st.pid), os.getloadavg()[0]
                    n0 = len(timings.read_text().splitlines()) if timings.exists() else 0
                    t_end = time.monotonic() + seconds
                    series, next_sample = [], time.monotonic() + 60
                    with tqdm(total=int(seconds), unit="s", desc="live page open") as bar:
                        while time.monotonic() < t_end:
                            time.sleep(1)
                            bar.update(1)
                            if time.monotonic() >= next_sample:
                                series.append(_rss_mb(st.pid))
                                next_sample += 60
                    rss1, load1 = _rss_mb(st.pid), os.getloadavg()[0]
                    b.close()
            finally:
                os.killpg(st.pid, signal.SIGTERM)
                st.wait(timeout=30)
            rows = [ln.split() for ln in timings.read_text().splitlines()[n0:]] if timings.exists() else []
    ms = np.array([float(r[1]) for r in rows])
    cpu = np.array([float(r[2]) for r in rows if len(r) > 2])
    if ms.size == 0:
        print("no refresh timings recorded (see streamlit.log)")
        return 1
    span = float(rows[-1][0]) - float(rows[0][0])
    print(f"\nLive market page, 3 venues x 3 assets recording, {seconds:.0f} s with the page open")
    print(f"  refreshes: {ms.size} ({ms.size / max(span, 1e-9):.2f}/s)")
    print(f"  server-side time per refresh: p50 {np.percentile(ms, 50):.0f} ms, "
          f"p90 {np.percentile(ms, 90):.0f} ms, p99 {np.percentile(ms, 99):.0f} ms, max {ms.max():.0f} ms "
          f"(target p50 <= 300 ms: {'ok' if np.percentile(ms, 50) <= 300 else 'MISSED'})")
    if cpu.size:
        print(f"  CPU time of the server process per refresh (all its threads; what the refresh costs "
              f"without contention): p50 {np.percentile(cpu, 50):.0f} ms, p90 {np.percentile(cpu, 90):.0f} ms")
    print(f"  streamlit RSS: start {rss0:.0f} MB, end {rss1:.0f} MB ({rss1 - rss0:+.0f} MB); "
          f"each minute: {' '.join(f'{x:.0f}' for x in series)}")
    print(f"  machine load average (1 min) at start / end: {load0:.1f} / {load1:.1f} on {os.cpu_count()} cores "
          "(the simulator, recorder, browser and server share them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
