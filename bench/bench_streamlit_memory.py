"""Streamlit server memory with every dashboard page open on a live recording.

Starts the simulator and one recorder (3 venues x 3 assets by default) into a
temp lake, ``streamlit run streamlit_apps/app.py`` on a free loopback port, and
headless Chromium (Debian's, via Playwright) with one tab per page of the app
(desk pages and promoted notebooks), all left open: the live pages refresh
every second as they would on a desk. Samples the server's RSS every
``--sample`` seconds over ``--minutes`` and prints the series, the start/end/
peak figures, the growth per 10 minutes over the second half of the run (after
caches and imports have filled), and the load average. The issue's figure:
520-630 MiB with the live pages open; target: bounded (flat) over an hour.

    .venv/bin/python bench/bench_streamlit_memory.py                 # 5 minutes
    .venv/bin/python bench/bench_streamlit_memory.py --minutes 15
    .venv/bin/python bench/bench_streamlit_memory.py --hour          # the issue's hour

``LAB_MALLOC_TRIM=1`` in the environment turns the server's glibc trim on
(``streamlit_apps/memory.py``): run one bench with it and one without at the
same time for an A/B under the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import start_streamlit  # noqa: E402  (this folder)
from bench_streamlit_refresh import CHROMIUM_ARGS, _rss_mb, _wait_http  # noqa: E402  (this folder)

from recorders.sim.harness import Recording, free_port  # noqa: E402

PAGES_DIR = ROOT / "streamlit_apps" / "pages"


def page_paths() -> list[str]:
    """URL paths of every page the app serves: the first desk page is ``/``, the others their file stem.

    The desk pages' order is read from ``app.py``'s ``DESK_PAGES`` literal (importing the
    app would run it)."""
    import ast

    tree = ast.parse((ROOT / "streamlit_apps" / "app.py").read_text())
    pages = next(ast.literal_eval(n.value) for n in ast.walk(tree)
                 if isinstance(n, ast.AnnAssign) and getattr(n.target, "id", "") == "DESK_PAGES")
    desk = [f for f, _, _ in pages if (PAGES_DIR / f).exists()]
    promoted = sorted(p.name for p in PAGES_DIR.glob("nb_*.py"))
    return ["/"] + [f"/{Path(f).stem}" for f in desk[1:] + promoted]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0, help="minutes with every page open (default 5)")
    ap.add_argument("--hour", action="store_true", help="the issue's hour (--minutes 60)")
    ap.add_argument("--sample", type=float, default=30.0, help="seconds between RSS samples")
    ap.add_argument("--warmup", type=float, default=20.0, help="seconds recorded before the pages open")
    ap.add_argument("--venues", default="binance,coinbase,kraken")
    a = ap.parse_args()
    minutes = 60.0 if a.hour else a.minutes

    from playwright.sync_api import sync_playwright

    paths = page_paths()
    with tempfile.TemporaryDirectory(prefix="bench_stmem_") as tmp:
        base = Path(tmp)
        with Recording(base / "data", venues=tuple(a.venues.split(","))) as rec:
            rec.wait_rows("quotes")
            print(f"recording {a.venues} x BTC,ETH,SOL from the simulator; warming up {a.warmup:.0f} s",
                  flush=True)
            time.sleep(a.warmup)
            port = free_port()
            memreport = base / "memreport.jsonl"  # streamlit_apps.memory.report() before each trim
            env = os.environ | {"LAB_DATA": str(base / "data"), "LAB_STREAMLIT_MEMREPORT": str(memreport)}
            log = open(base / "streamlit.log", "w")
            st = start_streamlit(ROOT, port, env, log)
            series: list[tuple[float, float]] = []
            try:
                _wait_http(f"http://127.0.0.1:{port}/_stcore/health", 90)
                rss_idle = _rss_mb(st.pid)
                with sync_playwright() as pw:
                    b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                    ctx = b.new_context(viewport={"width": 1400, "height": 900})
                    tabs = []
                    for path in paths:  # one tab per page, all left open
                        page = ctx.new_page()
                        page.goto(f"http://127.0.0.1:{port}{path}", timeout=120_000)
                        tabs.append(page)
                    for page, path in zip(tabs, paths):  # every page rendered something
                        page.locator("h1").first.wait_for(timeout=180_000)
                    print(f"{len(tabs)} pages open: {' '.join(paths)}; streamlit RSS before the first page "
                          f"{rss_idle:.0f} MiB", flush=True)
                    t0 = time.monotonic()
                    t_end = t0 + minutes * 60
                    while True:
                        el = time.monotonic() - t0
                        rss = _rss_mb(st.pid)
                        series.append((el, rss))
                        print(f"  {el / 60:5.1f} min  RSS {rss:6.0f} MiB  load {os.getloadavg()[0]:.1f}", flush=True)
                        if time.monotonic() >= t_end:
                            break
                        time.sleep(min(a.sample, max(0.0, t_end - time.monotonic())))
                    errors = [p for p, page in zip(paths, tabs)
                              if page.locator("[data-testid='stException']").count()]
                    b.close()
            finally:
                os.killpg(st.pid, signal.SIGTERM)
                try:
                    st.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(st.pid, signal.SIGKILL)
                    st.wait(timeout=30)
            reports = ([json.loads(x) for x in memreport.read_text().splitlines() if x.strip()]
                       if memreport.exists() else [])
    rss = [r for _, r in series]
    half = [(t, r) for t, r in series if t >= series[-1][0] / 2]
    slope = 0.0
    if len(half) >= 2:  # least squares over the second half, MiB per 10 minutes
        n = len(half)
        mt = sum(t for t, _ in half) / n
        mr = sum(r for _, r in half) / n
        den = sum((t - mt) ** 2 for t, _ in half)
        slope = (sum((t - mt) * (r - mr) for t, r in half) / den * 600) if den else 0.0
    print(f"\nstreamlit server, {len(paths)} pages open for {minutes:.0f} min on a live recording")
    print(f"  RSS: first sample {rss[0]:.0f} MiB, end {rss[-1]:.0f} MiB, peak {max(rss):.0f} MiB, "
          f"median of the second half {sorted(r for _, r in half)[len(half) // 2]:.0f} MiB")
    print(f"  growth over the second half: {slope:+.1f} MiB per 10 min (issue's figure: 520-630 MiB; target flat)")
    if reports:
        r = reports[-1]
        print(f"  what holds it (the server's own report, last of {len(reports)}, before a trim; MiB): "
              f"glibc heap in use {r.get('glibc_in_use', float('nan')):.0f}, free {r.get('glibc_free', float('nan')):.0f}; "
              f"gc-tracked Python objects {r['python_objects']:.0f} (top {r['python_top']}); "
              f"live Polars frames {r['polars_frames']:.1f}; st.cache_data {r['st_cache_data']:.1f}; "
              f"threads {r['threads']}, tokio workers {r['tokio_threads']}")
    print(f"  pages showing an exception at the end: {errors or 'none'}")
    print(f"  load average (1/5/15 min) at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
