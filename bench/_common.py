"""Helpers shared by the bench scripts (imported as ``_common``: a bench script's own folder
is first on ``sys.path``). Benches import the library, the recorders and this; never tests/."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# Freshness poller (bench_recorder_freshness.py, bench_recorder_cost.py): a fresh lab.connect() +
# query in a loop, noting for each trade id the moment the first connection that saw it was opened
# (and its recorded receive time); ``pause`` seconds between polls keeps it from taking a whole core
# from the processes being measured.
POLLER = r'''
import json, sys, time
import lab
lake, seconds, out_path, pause = sys.argv[1], float(sys.argv[2]), sys.argv[3], float(sys.argv[4])
seen, costs = {}, []
end = time.time() + seconds
while time.time() < end:
    t0 = time.time()
    try:
        con = lab.connect(lake)
        rows = con.execute("SELECT venue, symbol, trade_id, epoch_us(ts_local) FROM trades "
                           "WHERE ts_local > now() - INTERVAL 20 SECOND").fetchall()
        con.close()
    except Exception as e:
        print("poll error:", e, file=sys.stderr); time.sleep(0.2); continue
    costs.append(time.time() - t0)
    for r in rows:
        seen.setdefault("|".join(r[:3]), (t0, r[3] / 1e6))
    if pause:
        time.sleep(pause)
open(out_path, "w").write(json.dumps({"seen": seen, "costs": costs}))
'''


class Poll(NamedTuple):
    """What :func:`poll_freshness` saw."""

    seen: dict[str, list[float]]  # "venue|symbol|trade_id" -> [first seen (wall s), recorder receive (s)]
    costs: list[float]  # seconds of each fresh lab.connect() + query
    offsets: list[int]  # samples of wall clock minus the simulator's clock, ns
    offset: float  # their median, s (the simulator may start behind, and falls behind under load)


def poll_freshness(sim: Any, lake: Path, secs: float, out_path: Path, env: dict[str, str],
                   pause: float = 0.0) -> Poll:
    """Run :data:`POLLER` on ``lake`` for ``secs`` while sampling the simulator's clock offset."""
    poll = subprocess.Popen([sys.executable, "-c", POLLER, str(lake), str(secs), str(out_path), str(pause)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    offsets = []
    while poll.poll() is None:
        offsets.append(time.time_ns() - sim.now_ns())
        time.sleep(0.25)
    out = json.loads(Path(out_path).read_text())
    offset = float(np.median(offsets)) / 1e9 if offsets else 0.0
    return Poll(out["seen"], out["costs"], offsets, offset)


def send_to_visible(trades: list[dict], symbols: dict[str, list[str]], seen: dict, offset: float,
                    t_start: float, secs: float) -> list[tuple[float, float | None]]:
    """For each simulated trade the poller had time to see (sent from 1 s after ``t_start`` to
    3 s before the end): (seconds from the simulator's send, mapped to the wall clock by
    ``offset``, to the first fresh connection that saw it, ``inf`` if none did; seconds from the
    recorder's receive to that, None if unseen)."""
    out: list[tuple[float, float | None]] = []
    for t in trades:
        if t["symbol"] not in symbols.get(t["venue"], ()):
            continue
        te = dt.datetime.fromisoformat(t["ts_exchange"].replace("Z", "+00:00")).timestamp() + offset
        if te < t_start + 1.0 or te > t_start + secs - 3.0:
            continue  # trades the poller had time to see
        s = seen.get(f"{t['venue']}|{t['symbol']}|{t['trade_id']}")
        out.append((np.inf, None) if s is None else (s[0] - te, s[0] - s[1]))
    return out


def rss_samples(proc: subprocess.Popen, every: float) -> list[tuple[float, float]]:
    """(seconds since the start, RSS in MiB) of ``proc`` every ``every`` seconds until it exits."""
    import psutil

    p = psutil.Process(proc.pid)
    samples: list[tuple[float, float]] = []
    t0 = time.time()
    while proc.poll() is None:
        try:
            samples.append((time.time() - t0, p.memory_info().rss / 2**20))
        except psutil.NoSuchProcess:
            break
        time.sleep(every)
    return samples


def start_streamlit(root: Path, port: int, env: dict[str, str], log: Any) -> subprocess.Popen:
    """``streamlit run streamlit_apps/app.py`` on 127.0.0.1:``port`` (headless, no file watcher) in its
    own session, as the dashboard benches run it; ``log`` takes its output."""
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "streamlit"), "run", str(root / "streamlit_apps" / "app.py"),
         "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
         "--runner.postScriptGC", "false"],  # as lab demo runs it (.streamlit/config.toml)
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
