"""Keep the dashboard server's native heap from holding freed memory (glibc ``malloc``).

With every page open on a live recording the server sat at ~560 MiB. About
300 MiB of it is code (shared libraries: llvmlite for the numba kernels,
Polars, DuckDB, delta-rs, Arrow); the Python-side caches are bounded
(``max_entries`` + ``ttl``) and small. The rest was C heap freed but kept:
delta-rs and Polars read files on tokio's blocking pool, which grows past a
hundred threads under the pages' concurrent refreshes, and glibc gives the
threads arenas whose freed pages stay mapped. :func:`bound` starts one daemon
thread that returns them to the OS every ``trim_every_s`` (``malloc_trim(0)``,
a few ms): measured ~490 MiB flat instead of 560-575. Capping the arenas
(``mallopt(M_ARENA_MAX)``, optional) made no further difference here.
:func:`report` says where the memory is, for ``bench/bench_streamlit_memory.py``.
No-ops where the C library is not glibc.
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

__all__ = ["bound", "report"]

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


def _trim_loop(libc: ctypes.CDLL, every_s: float) -> None:
    dump = os.environ.get("LAB_STREAMLIT_MEMREPORT")
    while True:
        time.sleep(every_s)
        if dump:  # before the trim: what the trim has to work with
            try:
                with open(dump, "a") as f:
                    f.write(json.dumps({"t": time.time(), **report()}) + "\n")
            except Exception as e:  # noqa: BLE001 - a diagnostic; never stops the trim
                log.info("memory report failed: %s", e)
        try:
            libc.malloc_trim(0)
        except Exception as e:  # noqa: BLE001 - memory upkeep must never take the server down
            log.info("malloc_trim failed: %s", e)
            return


def bound(arenas: int | None = None, trim_every_s: float = 30.0) -> bool:
    """Trim free pages every ``trim_every_s`` and, if ``arenas`` is given, cap glibc's arenas
    at that many (once per process). Returns whether glibc took the settings.

    >>> _libc() is None or callable(_libc().malloc_trim)   # glibc here; elsewhere a no-op
    True
    """
    libc = _libc()
    if libc is None or os.environ.get("LAB_MALLOC_TRIM") == "0":  # "0": off, for an A/B in the bench
        return False
    if _started.is_set():
        return True
    _started.set()
    ok = bool(libc.mallopt(_M_ARENA_MAX, arenas)) if arenas else True
    threading.Thread(target=_trim_loop, args=(libc, trim_every_s), name="lab-malloc-trim",
                     daemon=True).start()
    return ok
