"""REST snapshot fetching, rate-limited and staggered across every venue of a
process, so a mass reconnect never turns into a snapshot storm; HTTP 429/418
and 5xx answers back off (honouring ``Retry-After``)."""

from __future__ import annotations

import asyncio
import random
import sys
import time


def _import_httpx():
    """``import httpx`` without its command-line client.

    httpx imports ``httpx._main`` when it loads, which imports click (installed here for
    Streamlit and Ray) and would go on to pygments and rich. A recorder never runs that CLI;
    click alone kept ~3.7 MiB resident in every recorder (measured: import of
    ``recorders.runtime``, 46.1 vs 42.4 MiB anonymous). So click is hidden while httpx loads
    (httpx then defines its stub ``main``) and visible again right after; a process that already
    loaded click keeps it."""
    if "httpx" in sys.modules or "click" in sys.modules:
        import httpx
        return httpx
    sys.modules["click"] = None  # type: ignore[assignment]  # `import click` raises ImportError
    try:
        import httpx
    finally:
        if sys.modules.get("click", 0) is None:
            del sys.modules["click"]
    return httpx


httpx = _import_httpx()

__all__ = ["RestClient"]


class RestClient:
    def __init__(self, min_interval: float = 0.25, max_backoff: float = 30.0) -> None:
        self.min_interval = min_interval
        self.max_backoff = max_backoff
        self._lock = asyncio.Lock()
        self._next_at = 0.0
        self._client: httpx.AsyncClient | None = None
        self.calls = 0
        self.errors = 0

    async def _slot(self) -> None:
        async with self._lock:
            now = time.monotonic()
            wait = self._next_at - now
            self._next_at = max(now, self._next_at) + self.min_interval * (1 + 0.2 * random.random())
        if wait > 0:
            await asyncio.sleep(wait)

    def _penalise(self, seconds: float) -> None:
        self._next_at = max(self._next_at, time.monotonic() + seconds)

    async def get(self, url: str, on_error=None) -> str:
        """GET ``url`` until it answers 200; ``on_error(detail)`` is told each failure."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=10.0)
        backoff = 0.5
        while True:
            await self._slot()
            self.calls += 1
            try:
                r = await self._client.get(url)
                if r.status_code == 200:
                    return r.text
                detail = f"HTTP {r.status_code} from {url}: {r.text[:200]}"
                retry = r.headers.get("Retry-After")
                if r.status_code in (418, 429):
                    pause = float(retry) if retry and retry.replace(".", "").isdigit() else backoff * 2
                    self._penalise(pause)  # every venue waits: the limit is per IP
            except httpx.HTTPError as e:
                detail = f"{type(e).__name__} on {url}: {e}"
            self.errors += 1
            if on_error is not None:
                on_error(detail)
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, self.max_backoff)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
