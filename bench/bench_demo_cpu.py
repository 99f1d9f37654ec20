"""CPU of the whole ``lab demo`` on this machine: every service running, one number.

Starts ``lab demo --no-jupyter`` on free loopback ports with a private ``$LAB_DATA``
and a small seeded history, waits until it says it is running, lets it settle,
then samples psutil CPU (user+sys) of the supervisor's whole process tree for
``--seconds`` (default 60) and prints the total in cores with one line per
service (a service's children count as the service's). No browser page is opened
(``--page`` opens one Streamlit page with the headless chromium of
/work/shared/ARCHITECTURE.md, if playwright and /usr/bin/chromium are present).

Target (issue 17): total <= 0.5 core with every service running and one dashboard
open (baseline ~0.85).

    .venv/bin/python bench/bench_demo_cpu.py [--seconds 60] [--history-minutes 2] [--page live_market]
        [--rounds 3] [--compare-loop]

``--compare-loop`` runs each round twice, alternating: on the loop the services use
(uvloop, lab.eventloop) and on asyncio's own (``LAB_EVENT_LOOP=asyncio``), and prints
both medians and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

from recorders.sim.harness import free_port, free_port_base  # noqa: E402


def _tree_cpu(root: psutil.Process, names: dict[int, str]) -> dict[str, float]:
    """CPU seconds per service (the supervisor's own under 'supervisor')."""
    out: dict[str, float] = {}
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return out
    for p in procs:
        try:
            t = p.cpu_times()
            chain = [p.pid] + [a.pid for a in p.parents()]
        except psutil.NoSuchProcess:
            continue
        name = next((names[x] for x in chain if x in names), "supervisor")
        out[name] = out.get(name, 0.0) + t.user + t.system
    return out


def _open_page(url: str, seconds: float) -> subprocess.Popen | None:
    """A headless chromium on ``url`` for ``seconds`` (None when unavailable)."""
    if not Path("/usr/bin/chromium").exists():
        return None
    code = (
        "import sys, time\n"
        "from playwright.sync_api import sync_playwright\n"
        "with sync_playwright() as p:\n"
        "    b = p.chromium.launch(executable_path='/usr/bin/chromium', args=['--no-sandbox',"
        " '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic'])\n"
        "    pg = b.new_page(); pg.goto(sys.argv[1]); time.sleep(float(sys.argv[2])); b.close()\n")
    try:
        import playwright  # noqa: F401
    except ImportError:
        return None
    return subprocess.Popen([sys.executable, "-c", code, url, str(seconds)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _run_demo(a: argparse.Namespace, extra_env: dict[str, str]) -> tuple[dict[str, float], float] | None:
    """One ``lab demo``: CPU per service in cores over ``--seconds`` (after ``--settle``), and the
    load average at the end; None when the demo did not come up (its log printed)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    env = dict(os.environ, LAB_DATA=str(tmp), PYTHONUNBUFFERED="1", **extra_env)
    ports = {"--bus-port": free_port(), "--service-port": free_port(), "--streamlit-port": free_port(),
             "--sim-port-base": free_port_base(3)}
    argv = [str(BIN / "lab"), "demo", "--no-jupyter", "--history-minutes", str(a.history_minutes),
            "--seed", "7", *[x for k, v in ports.items() for x in (k, str(v))]]
    log = open(tmp / "bench-demo.log", "wb")
    demo = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    page = None
    try:
        ready = tmp / "run" / "demo.ready"
        deadline = time.monotonic() + 600
        while not ready.exists():
            if demo.poll() is not None or time.monotonic() > deadline:
                print((tmp / "bench-demo.log").read_text()[-3000:])
                return None
            time.sleep(0.5)
        state = json.loads((tmp / "run" / "demo.json").read_text())
        names = {pid: name for name, pid in state["services"].items()}
        if a.page:
            page = _open_page(f"http://127.0.0.1:{ports['--streamlit-port']}/{a.page}", a.settle + a.seconds + 10)
            if page is None:
                print(f"page: {a.page}: no headless chromium here, measured without a page")
        time.sleep(a.settle)
        root = psutil.Process(demo.pid)
        c0, t0 = _tree_cpu(root, names), time.monotonic()
        time.sleep(a.seconds)
        c1, t1 = _tree_cpu(root, names), time.monotonic()
        load = os.getloadavg()[0]
    finally:
        if page is not None:
            page.kill()
            page.wait()
        try:
            os.killpg(demo.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            demo.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    wall = t1 - t0
    return {k: (c1.get(k, 0.0) - c0.get(k, 0.0)) / wall for k in c1}, load


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--settle", type=float, default=20.0, help="seconds after 'running' before sampling")
    ap.add_argument("--history-minutes", type=int, default=2)
    ap.add_argument("--page", default=None, help="open this Streamlit page (e.g. live_market) in chromium")
    ap.add_argument("--rounds", type=int, default=1, help="demos run one after another; medians are printed")
    ap.add_argument("--compare-loop", action="store_true",
                    help="each round also runs the demo on asyncio's own loop (LAB_EVENT_LOOP=asyncio), "
                         "alternating with the default loop: the baseline of lab.eventloop, same run")
    a = ap.parse_args()
    from lab.eventloop import loop_name

    variants = {loop_name(): {}}
    if a.compare_loop:
        variants["asyncio"] = {"LAB_EVENT_LOOP": "asyncio"}
    runs: dict[str, list[tuple[dict[str, float], float]]] = {k: [] for k in variants}
    for r in range(a.rounds):
        order = list(variants) if r % 2 == 0 else list(variants)[::-1]  # interleaved, neither always first
        for name in order:
            got = _run_demo(a, variants[name])
            if got is None:
                return 1
            runs[name].append(got)
            print(f"round {r + 1}/{a.rounds}, {name} loop: {sum(got[0].values()):.3f} cores, load {got[1]:.2f}",
                  flush=True)
    page = f", {a.page} open in headless chromium" if a.page else ""
    totals = {}
    for name, rs in runs.items():
        keys = sorted({k for per, _ in rs for k in per})
        med = {k: float(np.median([per.get(k, 0.0) for per, _ in rs])) for k in keys}
        totals[name] = float(np.median([sum(per.values()) for per, _ in rs]))
        print(f"lab demo --no-jupyter on the {name} loop{page}: history {a.history_minutes} min, "
              f"{a.seconds:g} s sampled after {a.settle:g} s settling, median of {len(rs)}; "
              f"load {', '.join(f'{ld:.2f}' for _, ld in rs)}")
        for k, v in sorted(med.items(), key=lambda kv: -kv[1]):
            print(f"  {k:<11} {v:.3f} cores")
    total = totals[loop_name()]
    if "asyncio" in totals and loop_name() != "asyncio":
        print(f"{loop_name()} / asyncio loop, same run: {total:.3f} / {totals['asyncio']:.3f} = "
              f"{total / totals['asyncio']:.2f}")
    print(f"TARGET demo total CPU (cores): {total:.3f} vs target <= 0.5: ratio {total / 0.5:.2f} "
          f"({'met' if total <= 0.5 else 'NOT met'}); baseline ~0.85: ratio {total / 0.85:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
