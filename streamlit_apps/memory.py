"""Where the dashboard server's memory is, and an optional glibc trim.

Measured with every page open on a live recording (bench/bench_streamlit_memory.py,
its report from :func:`report`): RSS 490-590 MiB, of which ~300 MiB is code
(shared libraries: llvmlite for the numba kernels, Polars, DuckDB, delta-rs,
Arrow), ~120 MiB glibc heap in use (delta-rs and the readers; 130+ tokio
threads of the readers' blocking pools), ~50 MiB Python objects; the
``st.cache_data`` entries (bounded by ``max_entries`` + ``ttl``) hold < 1 MiB
and live Polars frames ~0.1 MiB. RSS is flat over the run (no growth); its
level moves with how many refreshes the machine serves (higher at low load).

:func:`bound` starts one daemon thread that, with ``LAB_STREAMLIT_MEMREPORT``
set, appends :func:`report` to that file every ``every_s``, and with
``LAB_MALLOC_TRIM=1`` returns glibc's free pages to the OS
(``malloc_trim(0)``). The trim is off by default: in an A/B of two servers under
the same load it made no difference (495 vs 496 MiB after 6 minutes).
No-ops where the C library is not glibc.

:func:`bound` also starts a thread that runs a full ``gc.collect()`` every
``LAB_STREAMLIT_GC_EVERY`` seconds (default 30; 0: never). The server runs with
Streamlit's ``runner.postScriptGC`` off (``.streamlit/config.toml``, ``lab demo``):
Streamlit would collect after every script run, and a live page's fragment reruns
every second; that collection was about half of the server's CPU with one Live
market page open (``bench/bench_demo_cpu.py``). Cycles are still freed, by
Python's own collector and at least every 30 s by this thread.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import gc
import json
import logging
import os
import sys
import threading
import time

__all__ = ["bound", "collect_periodically", "report"]

log = logging.getLogger(__name__)
_M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)
_started = threading.Event()


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only: musl and macOS have no malloc_trim
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]


def report() -> dict:
    """Where the server's memory is, in MiB: glibc's heap (in use / free, from ``mallinfo2``),
    Python objects by type (shallow sizes, top 5), live Polars frames, ``st.cache_data``
    entries, threads. For the memory bench (``$LAB_STREAMLIT_MEMREPORT``); it walks every
    object, so it is not for a hot path.
    """
    out: dict = {"threads": threading.active_count() + 0}
    libc = _libc()
    if libc is not None and hasattr(libc, "mallinfo2"):
        libc.mallinfo2.restype = _MallInfo2
        m = libc.mallinfo2()
        out["glibc_in_use"] = (m.uordblks + m.hblkhd) / 2**20
        out["glibc_free"] = m.fordblks / 2**20
    objs = gc.get_objects()
    by: collections.Counter = collections.Counter()
    frames = 0.0
    cache = 0
    import polars as pl

    for o in objs:
        cls = type(o)
        by[cls.__qualname__] += sys.getsizeof(o, 0)
        if cls is pl.DataFrame:
            frames += o.estimated_size()
        elif cls.__name__ == "InMemoryCacheStorageWrapper":
            cache += sum(len(v) for v in getattr(o, "_mem_cache", {}).values() if isinstance(v, bytes))
    out["python_objects"] = sum(by.values()) / 2**20
    out["python_top"] = {k: round(v / 2**20, 1) for k, v in by.most_common(5)}
    out["polars_frames"] = frames / 2**20
    out["st_cache_data"] = cache / 2**20
    out["tokio_threads"] = sum(1 for t in os.listdir("/proc/self/task")
                               if _comm(t).startswith("tokio")) if os.path.isdir("/proc/self/task") else None
    return out


def _comm(tid: str) -> str:
    try:
        with open(f"/proc/self/task/{tid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _trim_loop(libc: ctypes.CDLL, every_s: float, dump: str | None, trim: bool) -> None:
    while True:
        time.sleep(every_s)
        if dump:  # before the trim: what the trim has to work with
            try:
                with open(dump, "a") as f:
                    f.write(json.dumps({"t": time.time(), **report()}) + "\n")
            except Exception as e:  # noqa: BLE001 - a diagnostic; never stops the trim
                log.info("memory report failed: %s", e)
        try:
            if trim:
                libc.malloc_trim(0)
        except Exception as e:  # noqa: BLE001 - memory upkeep must never take the server down
            log.info("malloc_trim failed: %s", e)
            return


GC_EVERY_S = 30.0
_gc_started = threading.Event()


def _gc_every() -> float:
    raw = os.environ.get("LAB_STREAMLIT_GC_EVERY", "")
    try:
        v = float(raw) if raw.strip() else GC_EVERY_S
    except ValueError:
        log.warning("LAB_STREAMLIT_GC_EVERY=%r is not a number of seconds: collecting every %g s", raw, GC_EVERY_S)
        return GC_EVERY_S
    return v if v >= 0 else GC_EVERY_S


def _gc_loop(every_s: float) -> None:
    while True:
        time.sleep(every_s)
        gc.collect()


def collect_periodically(every_s: float | None = None) -> bool:
    """Start (once per process) the thread that runs ``gc.collect()`` every ``every_s`` seconds
    (default ``$LAB_STREAMLIT_GC_EVERY``, else 30; 0: none). Returns whether it runs."""
    every = _gc_every() if every_s is None else every_s
    if not every > 0:
        return False
    if not _gc_started.is_set():
        _gc_started.set()
        threading.Thread(target=_gc_loop, args=(every,), name="lab-gc", daemon=True).start()
    return True


def bound(arenas: int | None = None, every_s: float = 30.0) -> bool:
    """Start the periodic collection (:func:`collect_periodically`), and the report/trim thread
    (once per process) if ``LAB_STREAMLIT_MEMREPORT`` or ``LAB_MALLOC_TRIM=1`` asks for it, and cap
    glibc's arenas at ``arenas`` if given. Returns whether the report/trim thread runs.

    >>> _libc() is None or callable(_libc().malloc_trim)   # glibc here; elsewhere a no-op
    True
    """
    collect_periodically()
    libc = _libc()
    dump = os.environ.get("LAB_STREAMLIT_MEMREPORT") or None
    trim = os.environ.get("LAB_MALLOC_TRIM") == "1"
    if libc is None or not (dump or trim or arenas):
        return False
    if _started.is_set():
        return True
    _started.set()
    if arenas:
        libc.mallopt(_M_ARENA_MAX, arenas)
    threading.Thread(target=_trim_loop, args=(libc, every_s, dump, trim), name="lab-malloc-trim",
                     daemon=True).start()
    return True
