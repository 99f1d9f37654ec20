"""REST snapshots: staggered across callers, 429/5xx answered with backoff."""

from __future__ import annotations

import asyncio
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from recorders.rest import RestClient


class _Venue(BaseHTTPRequestHandler):
    arrivals: list[tuple[float, str]] = []
    script: list[int] = []

    def do_GET(self):  # noqa: N802
        type(self).arrivals.append((time.monotonic(), self.path))
        code = type(self).script.pop(0) if type(self).script else 200
        body = b'{"lastUpdateId":1,"bids":[],"asks":[]}' if code == 200 else b'{"code":-1003}'
        self.send_response(code)
        if code == 429:
            self.send_header("Retry-After", "1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def _serve():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Venue)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_mass_reconnect_snapshots_are_staggered_not_a_storm():
    _Venue.arrivals, _Venue.script = [], []
    srv = _serve()
    url = f"http://127.0.0.1:{srv.server_address[1]}/api/v3/depth?symbol="

    start = 0.0

    async def main():
        nonlocal start
        rc = RestClient(min_interval=0.2)
        start = time.monotonic()
        bodies = await asyncio.gather(*(rc.get(url + f"S{i}") for i in range(6)))
        await rc.aclose()
        return bodies

    bodies = asyncio.run(main())
    srv.shutdown()
    assert len(bodies) == 6 and all("lastUpdateId" in b for b in bodies)
    t = sorted(a for a, _ in _Venue.arrivals)
    assert len(t) == 6
    # the k-th request reaches the venue no sooner than k intervals after the first was asked for
    # (a loaded machine only delays arrivals, so this holds however late any of them comes; a
    # storm, all six at once, fails it)
    assert all(a >= start + k * 0.2 - 0.005 for k, a in enumerate(t)), [round(a - start, 3) for a in t]


def test_429_and_503_are_retried_and_reported():
    _Venue.arrivals, _Venue.script = [], [429, 503]
    srv = _serve()
    url = f"http://127.0.0.1:{srv.server_address[1]}/api/v3/depth?symbol=BTCUSDT"
    errors: list[str] = []

    async def main():
        rc = RestClient(min_interval=0.01)
        body = await rc.get(url, errors.append)
        await rc.aclose()
        return body

    body = asyncio.run(main())
    srv.shutdown()
    assert "lastUpdateId" in body
    assert [e.split(" from")[0] for e in errors] == ["HTTP 429", "HTTP 503"]
    assert len(_Venue.arrivals) == 3
    # the 429 carried Retry-After: 1, so the retry waited at least that long
    assert _Venue.arrivals[1][0] - _Venue.arrivals[0][0] >= 0.9
