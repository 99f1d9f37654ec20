"""Warm the server process in the background: import and JIT-load the heavy ``lab`` helpers once.

The first visit of the Arbitrage monitor or Microstructure page otherwise pays
for importing numba, loading the compiled kernels of ``lab.arbitrage`` and
``lab.leadlag`` from their cache and planning the first Polars queries
(seconds on a busy machine). :func:`start` runs that once per process, in a
daemon thread, a few seconds after the first page has rendered, while the user
looks at it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

__all__ = ["start"]

_started = threading.Event()
log = logging.getLogger(__name__)


def _tiny_quotes():
    import polars as pl

    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    n = 40
    ts = [t0 + dt.timedelta(milliseconds=100 * i) for i in range(n)]
    frames = []
    for k, venue in enumerate(("a", "b")):
        mid = [100.0 + 0.01 * ((i * 7 + k) % 5) for i in range(n)]
        frames.append(pl.DataFrame({
            "ts_exchange": ts, "ts_local": ts, "venue": venue, "symbol": "BTC-USD",
            "bid_px": [m - 0.01 for m in mid], "bid_qty": 1.0, "ask_px": [m + 0.01 for m in mid], "ask_qty": 1.0,
        }))
    return pl.concat(frames).lazy()


def _warm(delay_s: float) -> None:
    if delay_s > 0:
        time.sleep(delay_s)  # let the first page render before competing with it for the GIL
    try:
        from lab import arbitrage, leadlag, micro

        q = _tiny_quotes()
        micro.ofi(q, "1s", by=("venue",)).collect()
        leadlag.venue_leadership(q, max_lag_ms=500.0, step_ms=50.0).collect()
        arbitrage.episodes(arbitrage.cross_venue(q, size=0.1, keep="episodes")).collect()
    except Exception as e:  # noqa: BLE001 - warming is best effort; the page reports real errors
        log.info("warm-up skipped: %s", e)


def start(delay_s: float = 8.0) -> None:
    """Start the warm-up thread (once per process), ``delay_s`` after the first page run."""
    if _started.is_set():
        return
    _started.set()
    threading.Thread(target=_warm, args=(delay_s,), name="lab-warm-up", daemon=True).start()
