"""Keep the dashboard server's native heap bounded (glibc ``malloc`` arenas).

What holds the server's memory with the live pages open is mostly not Python
objects: the caches are bounded (``max_entries`` + ``ttl``) and frames are
small. It is the C heap of the Rust readers. delta-rs and Polars read files on
tokio's blocking pool, which grows to a hundred threads or so under the pages'
concurrent refreshes (measured: 108 ``tokio-rt-worker`` threads), and glibc
gives each new thread its own arena (up to 8 per core), where freed memory
stays mapped. :func:`bound` caps the number of arenas (``mallopt(M_ARENA_MAX)``;
glibc reads ``MALLOC_ARENA_MAX`` only at start, so it is set here at run time,
before the readers' threads exist) and starts one daemon thread that returns
free pages to the OS every ``trim_every_s`` (``malloc_trim(0)``). Both are
no-ops where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time

__all__ = ["bound"]

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


def _trim_loop(libc: ctypes.CDLL, every_s: float) -> None:
    while True:
        time.sleep(every_s)
        try:
            libc.malloc_trim(0)
        except Exception as e:  # noqa: BLE001 - memory upkeep must never take the server down
            log.info("malloc_trim failed: %s", e)
            return


def bound(arenas: int = 2, trim_every_s: float = 30.0) -> bool:
    """Cap glibc's arenas at ``arenas`` and trim free pages every ``trim_every_s`` (once per
    process). Returns whether glibc took the settings.

    >>> _libc() is None or callable(_libc().malloc_trim)   # glibc here; elsewhere a no-op
    True
    """
    libc = _libc()
    if libc is None:
        return False
    if _started.is_set():
        return True
    _started.set()
    ok = bool(libc.mallopt(_M_ARENA_MAX, arenas))
    threading.Thread(target=_trim_loop, args=(libc, trim_every_s), name="lab-malloc-trim",
                     daemon=True).start()
    return ok
