"""Recorder memory: RSS at the demo's rates (the target line), and under pressure.

Part 1 (steady): the simulator (5 venues x 3 assets, ~370 msgs/s), ``lab record``
(with ``--baseline-root DIR``, another checkout's recorder and maintainer beside it on the same stream)
with the default commit cadence and ``lab maintain --every 30`` (as ``lab demo``) for ``--minutes`` (default 3; the target says flat
over an hour: ``--minutes 60``); RSS sampled every 5 s. Prints RSS after start-up,
the peak, the growth rate over the run's second half (MiB/hour) and the target line
(<= 150 MiB for 5 venues x 3 symbols; baseline 393-570 MiB, cryptofeed 48-122 MiB).

Part 2 (burst): peak RSS of ``lab record`` during 10x bursts with a
deliberately slowed lake writer.

A Binance-shaped stream runs at ``--rate`` msgs/s with 1 s bursts at 10x every
5 s; the recorder's writer sleeps ``--writer-delay`` s per batch and its queue
holds ``--queue-batches`` batches. Bounded means: RSS stops growing (the
second half of the run peaks no higher than the first, within noise) and the
rows that could not be queued are recorded as ``loss`` feed events, not
silently dropped. Prints RSS figures and the recorded losses.

    .venv/bin/python bench/bench_recorder_memory.py [--quick] [--minutes M] [--part steady|burst|all]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _common import rss_samples  # noqa: E402
from bench_recorder_throughput import start_server  # noqa: E402

STEADY_VENUES = ("binance", "coinbase", "kraken", "okx", "bybit")
TARGET_MIB = 150.0


def _rss(pid: int) -> tuple[float, float, float, int]:
    """(RSS, of it anonymous, of it file-backed or shmem) in MiB, and the thread count, from /proc/PID/status
    (summing smaps' per-mapping ``Rss:`` lines undercounts; status agrees with smaps_rollup)."""
    st = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    kib = {k: int(st[k].split()[0]) for k in ("VmRSS", "RssAnon", "RssFile", "RssShmem")}
    # file-backed includes shmem: the libraries of a --small-pages recorder are tmpfs pages
    return (kib["VmRSS"] / 1024, kib["RssAnon"] / 1024, (kib["RssFile"] + kib["RssShmem"]) / 1024,
            int(st["Threads"]))


def _by_file(pid: int, top: int = 6) -> list[tuple[str, float]]:
    """The mappings holding most of a process's RSS: (file name or [anon]/[heap], MiB), largest first."""
    agg: dict[str, int] = {}
    cur = "[anon]"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(maxsplit=6)
        if head and "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
            cur = Path(head[5]).name if len(head) > 5 and head[5].startswith("/") else (head[5] if len(head) > 5 else "[anon]")
        elif line.startswith("Rss:"):
            agg[cur] = agg.get(cur, 0) + int(line.split()[1])
    return [(k, v / 1024) for k, v in sorted(agg.items(), key=lambda kv: -kv[1])[:top]]


#: the compiled packages that hold most of a recorder's file-backed pages (Polars, delta-rs, arro3)
_BIG_LIBS = ("polars", "_polars_runtime_32", "_polars_runtime_64", "_polars_runtime_compat", "deltalake", "arro3")


def _lib_dirs() -> list[Path]:
    """The package folders of :data:`_BIG_LIBS` this interpreter imports."""
    import importlib.util

    specs = [importlib.util.find_spec(name) for name in _BIG_LIBS]
    return [Path(list(s.submodule_search_locations)[0]) for s in specs if s is not None and s.submodule_search_locations]


def small_page_libs() -> Path:
    """A copy of :data:`_BIG_LIBS` on tmpfs (``/dev/shm``), to put first on ``PYTHONPATH``.

    Why: Linux 6.16+ caches ext4 files in large folios, and the kernel here (6.18) maps a whole
    cached folio into a process on a page fault. A shared library's untouched neighbours then count
    in the process's RSS: the same work mapped 45 MiB of delta-rs and 43 MiB of Polars loaded from
    the venv, 25 and 24 MiB from tmpfs copies (shmem in 4 KiB pages), with the same anonymous
    memory. A recorder started from this copy measures RSS as a kernel mapping 4 KiB pages would,
    beside the one started as installed: the difference is the kernel's, not the recorder's."""
    import shutil

    dst = Path(tempfile.mkdtemp(prefix="bench-mem-libs-", dir="/dev/shm"))
    for src in _lib_dirs():
        shutil.copytree(src, dst / src.name, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def evict_libs() -> int:
    """Drop the page cache of :data:`_BIG_LIBS`' files (``POSIX_FADV_DONTNEED``; pages another process
    maps stay), so the next process reads them back through its own page faults; return the files' MiB.

    Why: how Linux 6.16+ caches an ext4 file decides a process's RSS. Files freshly written by an
    installer sit in the page cache in large folios, and a page fault maps a whole cached folio, so
    untouched code beside the touched code counts. Read back by page faults (after a reboot, or once
    the kernel has reclaimed them), the same files are cached in small folios. Measured on this
    machine, the same recorder after 90 s: 119 MiB file-backed from a venv installed a minute
    before, 75 MiB from the same files read back, with the same 52 MiB anonymous."""
    total = 0
    for f in (f for d in _lib_dirs() for f in d.rglob("*") if f.is_file()):
        with open(f, "rb") as fh:
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        total += f.stat().st_size
    return total >> 20


def fresh_venv(where: Path) -> Path:
    """A venv installed now from ``requirements.lock`` with the project's uv and a cache of its own
    (every wheel unpacked afresh, as `make setup` does on a new machine); return its site-packages.
    ``where`` must be on a disk filesystem, as a user's checkout is (on tmpfs the libraries would be
    shmem pages, the case :func:`small_page_libs` measures).
    A recorder run by its interpreter loads the libraries as a user's first `make demo` does: from
    the installer's page cache (see :func:`evict_libs`)."""
    uv = Path(sys.executable).parent / "uv"  # the project's uv, beside the interpreter running the bench
    venv = where / "venv"
    env = dict(os.environ, UV_CACHE_DIR=str(where / "uv-cache"))
    for cmd in ([str(uv), "venv", "-q", str(venv), "--python", sys.executable],
                [str(uv), "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
                 "-r", str(ROOT / "requirements.lock")]):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"bench: could not install a fresh venv ({' '.join(cmd[:3])}): {r.stderr[-800:]}")
    return next((venv / "lib").glob("python3*/site-packages"))


def steady(minutes: float, baseline_root: Path | None = None, small_pages: bool = False,
           fresh: bool = False, committer: str = "maintainer") -> None:
    """Part 1: RSS of a recorder of 5 venues x 3 symbols at the simulator's rates, each with its
    ``lab maintain --every 30``; with ``baseline_root`` (another checkout) its recorder and
    maintainer run beside ours on the same simulator stream, sampled in the same loop; with
    ``small_pages``, also ours with its big libraries on tmpfs (:func:`small_page_libs`); with ``fresh``,
    "lab" reads its libraries back (:func:`evict_libs` first) and "lab-fresh" runs from a venv
    installed at the start of the run (:func:`fresh_venv`): RSS in both page-cache states, same stream."""
    import shutil
    import time

    from recorders.config import write_config
    from recorders.sim import SimConfig, Simulator

    roots = {"lab": ROOT, **({"lab-fresh": ROOT} if fresh else {}), **({"lab-4k": ROOT} if small_pages else {}),
             **({"baseline": baseline_root} if baseline_root else {})}
    libs = small_page_libs() if small_pages else None
    # beside the checkout, on its filesystem (TMPDIR may be tmpfs); data/ is git-ignored
    fresh_dir = Path(tempfile.mkdtemp(prefix="bench-mem-venv-", dir=ROOT / "data")) if fresh else None
    fresh_site = fresh_venv(fresh_dir) if fresh_dir is not None else None
    if fresh:
        print(f"lab-fresh: libraries from a venv installed just now ({fresh_site}); lab: the page cache of "
              f"{evict_libs()} MiB of Polars, delta-rs and arro3 files dropped, read back by the recorder", flush=True)
    sim = Simulator(SimConfig(venues=STEADY_VENUES, assets=("BTC", "ETH", "SOL"), cross=False, port_base=0,
                              seed=4))
    symbols = {v: [f"{a}-{'USD' if v in ('coinbase', 'kraken') else 'USDT'}" for a in ("BTC", "ETH", "SOL")]
               for v in STEADY_VENUES}
    samples: dict[str, list[tuple[float, float, float, float, int, float]]] = {n: [] for n in roots}
    procs: dict[str, tuple[subprocess.Popen, subprocess.Popen]] = {}
    by_file: dict[str, list[tuple[str, float]]] = {}  # the last breakdown of each recorder's RSS
    with sim.running_in_thread():
        try:
            for name, root in roots.items():
                tmp = Path(tempfile.mkdtemp(prefix=f"bench-mem-steady-{name}-"))
                # maintain_every=0: as in lab demo, where a separate `lab maintain --every 30` compacts
                # ours as lab demo runs it: `lab maintain` commits the tail (committer = "maintainer"); the
                # baseline's tree predates that setting (its recorder commits its own tail)
                extra = {} if name == "baseline" else {"committer": committer}
                cfg = write_config(tmp / "rec.toml", sim.urls(), symbols, tmp / "lake", "mem", maintain_every=0.0,
                                   **extra)
                path = f"{libs}{os.pathsep}{root}" if name == "lab-4k" else str(root)
                env = dict(os.environ, PYTHONPATH=path, LAB_DATA=str(tmp))
                # lab-fresh: the fresh venv's own interpreter, so every package comes from that install
                py = str(fresh_site.parents[2] / "bin" / "python") if name == "lab-fresh" and fresh_site else sys.executable
                rec = subprocess.Popen([py, "-m", "lab.cli", "record", "--config", str(cfg),
                                        "--no-symbol-check", "--duration", str(minutes * 60)], cwd=root, env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                mnt = subprocess.Popen([py, "-m", "lab.cli", "maintain", "--lake", str(tmp / "lake"),
                                        "--every", "30"], cwd=root, env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                procs[name] = (rec, mnt)
            t0 = time.time()
            while any(r.poll() is None for r, _ in procs.values()):
                for name, (rec, mnt) in procs.items():
                    if rec.poll() is None:
                        try:
                            samples[name].append((time.time() - t0, *_rss(rec.pid), _rss(mnt.pid)[0]))
                            if len(samples[name]) % 12 == 0:  # once a minute
                                by_file[name] = _by_file(rec.pid)
                        except (FileNotFoundError, KeyError, ProcessLookupError):
                            pass
                time.sleep(5.0)
        finally:
            for rec, mnt in procs.values():
                for p in (rec, mnt):
                    if p.poll() is None:
                        p.terminate()
                    p.wait(120)
            for d in (libs, fresh_dir):
                if d is not None:
                    shutil.rmtree(d, ignore_errors=True)
    print(f"steady: 5 venues x 3 symbols from the simulator for {minutes:g} min, each recorder with its own "
          f"`lab maintain --every 30`; ours with committer = {committer!r}" + (f"; baseline = {baseline_root}, same stream, sampled in the same loop"
                                          if baseline_root else ""))
    peaks: dict[str, float] = {}
    csv = Path(tempfile.mkdtemp(prefix="bench-mem-samples-")) / "rss.csv"
    csv.write_text("who,seconds,rss_mib,anon_mib,file_mib,threads,maintainer_rss_mib\n" + "".join(
        f"{name},{t:.0f},{r:.1f},{an:.1f},{fi:.1f},{th},{m:.1f}\n"
        for name, smp in samples.items() for t, r, an, fi, th, m in smp))
    print(f"samples (every 5 s): {csv}")
    for name, smp in samples.items():
        st = [x for x in smp if x[0] >= 15]  # after start-up (connect, first commits)
        if len(st) < 2:
            print(f"{name}: too short a run")
            continue
        half = [x for x in smp if x[0] >= smp[-1][0] / 2]
        ts, rs = np.array([x[0] for x in half]), np.array([x[1] for x in half])
        slope = float(np.polyfit(ts, rs, 1)[0]) * 3600 if len(half) >= 3 else float("nan")
        peak = max(x[1] for x in st)
        peaks[name] = peak
        first_half = max((x[1] for x in st if x[0] < smp[-1][0] / 2), default=float("nan"))
        end = st[-1]
        print(f"{name:9s} recorder RSS after start-up {st[0][1]:.0f} MiB, at the end {end[1]:.0f} MiB "
              f"(anon {end[2]:.0f} + file-backed {end[3]:.0f}), peak {peak:.0f} (first half {first_half:.0f}); "
              f"second-half growth {slope:+.1f} MiB/hour; threads median {float(np.median([x[4] for x in st])):.0f}, "
              f"max {max(x[4] for x in st)}; its maintainer: peak {max(x[5] for x in st):.0f} MiB, "
              f"median {float(np.median([x[5] for x in st])):.0f}")
        if name in by_file:
            print(f"{name:9s} recorder RSS by mapping, last minute (MiB): "
                  + ", ".join(f"{f} {m:.1f}" for f, m in by_file[name]))
        if smp[-1][0] >= 600:  # a long run: its shape, one median per 5 minutes (a peak is one moment)
            windows = [[x for x in smp if k * 300 <= x[0] < (k + 1) * 300] for k in range(int(smp[-1][0] // 300))]
            for col, what in ((1, "RSS"), (2, "anonymous"), (3, "file-backed")):
                meds = [float(np.median([x[col] for x in w])) for w in windows if w]
                print(f"{name:9s} recorder {what} median per 5 min (MiB): " + ", ".join(f"{m:.1f}" for m in meds))
    for name, state in (("lab", "libraries read back by the kernel" if fresh else "as installed"),
                        ("lab-fresh", "libraries freshly installed, the installer's page cache")):
        if name in peaks:
            peak = peaks[name]
            print(f"TARGET recorder RSS (MiB), {state}: peak {peak:.0f} vs target <= {TARGET_MIB:g}: ratio "
                  f"{peak / TARGET_MIB:.2f} ({'met' if peak <= TARGET_MIB else 'NOT met'}); baseline 393-570 MiB: "
                  f"ratio {peak / 393:.2f}; cryptofeed 48-122 MiB")
    if "lab" in peaks and "baseline" in peaks:
        print(f"recorder peak RSS lab / baseline (same run): {peaks['lab']:.0f} / {peaks['baseline']:.0f} = "
              f"{peaks['lab'] / peaks['baseline']:.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("steady", "burst", "all"), default="all")
    ap.add_argument("--minutes", type=float, default=3.0, help="steady part: minutes to record")
    ap.add_argument("--baseline-root", type=Path, default=None,
                    help="steady part: also run another checkout's recorder and maintainer on the same stream")
    ap.add_argument("--small-pages", action="store_true",
                    help="steady part: also run our recorder with Polars and delta-rs loaded from a tmpfs copy "
                         "(4 KiB pages): how much of its RSS is the kernel mapping whole large folios of the "
                         "libraries' page cache")
    ap.add_argument("--fresh-venv", action="store_true",
                    help="steady part: run our recorder twice, from a venv installed at the start of the run "
                         "(lab-fresh: a user's first `make demo`) and with the libraries' page cache dropped and "
                         "read back (lab): Linux 6.16+ maps freshly written files' large folios whole")
    ap.add_argument("--committer", choices=("maintainer", "recorder"), default="maintainer",
                    help="steady part: who commits our recorder's tail (recorders' `committer`; lab demo: maintainer)")
    ap.add_argument("--quick", action="store_true", help="burst part: 20 s instead of 40 s; steady: 1 min")
    ap.add_argument("--rate", type=float, default=4000.0, help="base msgs/s (bursts are 10x)")
    ap.add_argument("--writer-delay", type=float, default=1.5, help="seconds the writer sleeps per batch")
    ap.add_argument("--queue-batches", type=int, default=4)
    a = ap.parse_args()
    if a.part in ("steady", "all"):
        steady(1.0 if a.quick else a.minutes, a.baseline_root, a.small_pages, a.fresh_venv, a.committer)
    if a.part == "steady":
        return 0
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
    try:
        samples = rss_samples(rec, every=0.1)
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
