"""Test helper for the object-store lake: an S3 store that ignores conditional puts."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit


class HeaderDroppingProxy:
    """A loopback TCP proxy in front of an S3 server that removes ``If-None-Match`` from requests.

    To a client it is an S3 store without conditional-put support (as some
    S3-compatible stores are): every PUT overwrites. Request heads are parsed
    (to drop the header and find each body by its Content-Length); responses
    pass through byte for byte.
    """

    def __init__(self, upstream: str) -> None:
        up = urlsplit(upstream)
        self._up = (up.hostname or "127.0.0.1", up.port or 80)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.endpoint = ""
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection(*self._up)

        async def responses() -> None:
            while data := await ur.read(65536):
                cw.write(data)
                await cw.drain()
            cw.close()

        pipe = asyncio.ensure_future(responses())
        try:
            while True:
                head = await cr.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                kept = [ln for ln in lines if not ln.lower().startswith(b"if-none-match:")]
                n = next((int(ln.split(b":", 1)[1]) for ln in kept if ln.lower().startswith(b"content-length:")), 0)
                uw.write(b"\r\n".join(kept) + (await cr.readexactly(n) if n else b""))
                await uw.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            uw.close()
            await asyncio.gather(pipe, return_exceptions=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self._server = server
        self.endpoint = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())

    def __enter__(self) -> HeaderDroppingProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._loop.is_running():
            self._loop.close()


class ProxyProcess:
    """:class:`HeaderDroppingProxy` in its own process: deltalake holds the GIL while it
    waits on the network, so a proxy thread in the test process would stall with it."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.endpoint = ""

    def __enter__(self) -> ProxyProcess:
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), self.upstream],
                                     stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
        self.endpoint = self.proc.stdout.readline().strip()
        if not self.endpoint.startswith("http://"):
            raise RuntimeError("proxy did not start")
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(10)


if __name__ == "__main__":
    with HeaderDroppingProxy(sys.argv[1]) as proxy:
        print(proxy.endpoint, flush=True)
        sys.stdin.read()  # until the test closes our stdin or terminates us
