"""cryptofeed on the bench's loopback Binance stream (run by the cryptofeed venv's python, not ours).

Started by ``bench_recorder_throughput.py`` with the interpreter of a venv that
holds only cryptofeed (it is not a dependency of the lab). cryptofeed's own
``Binance`` feed does all its usual work: JSON decode with Decimal, the REST
snapshot + diff sync, its C order book, ``Trade`` objects, callbacks. The
callbacks keep what a recorder keeps in memory before writing (the top of book
per update, trade objects in a buffer that is cleared every 10,000 rows): no
storage, so this is cryptofeed's *handling* rate, the most favourable figure
for it.

Two changes point it at 127.0.0.1 and nothing else: a subclass whose endpoints
are the loopback server, and, because ``WSAsyncConn`` refuses any address that
is not ``wss://``, the connection's address rewritten to ``ws://`` after
construction. Prints one JSON line: msgs per wall second and per CPU second of
this process, from the first message to the ``n``-th.

    <venv>/bin/python bench/_cryptofeed_client.py --port P -n N
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import logging
import sys
import time

from cryptofeed import FeedHandler
from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint
from cryptofeed.defines import L2_BOOK, TRADES
from cryptofeed.exchanges import Binance


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-n", type=int, required=True)
    a = ap.parse_args()
    n = a.n
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    class LoopbackBinance(Binance):
        websocket_endpoints = [WebsocketEndpoint(f"wss://127.0.0.1:{a.port}")]
        rest_endpoints = [RestEndpoint(f"http://127.0.0.1:{a.port}",
                                       routes=Routes("/api/v3/exchangeInfo",
                                                     l2book="/api/v3/depth?symbol={}&limit={}"))]
        k = 0
        t0 = c0 = 0.0
        result: dict | None = None

        def connect(self):
            out = super().connect()
            for conn, *_ in out:  # WSAsyncConn checks for wss:// in __init__ only
                if hasattr(conn, "address") and isinstance(conn.address, str):
                    conn.address = conn.address.replace("wss://", "ws://", 1)
            return out

        async def message_handler(self, msg: str, conn, timestamp: float) -> None:
            if self.k == 0:
                self.t0, self.c0 = time.perf_counter(), time.process_time()
            await super().message_handler(msg, conn, timestamp)
            self.k += 1
            if self.k == n and self.result is None:
                self.result = {"wall": (n - 1) / (time.perf_counter() - self.t0),
                               "cpu": (n - 1) / (time.process_time() - self.c0),
                               "cryptofeed": importlib.metadata.version("cryptofeed"),
                               "top": [str(x) for x in top], "trades_seen": trades_seen[0]}
                done.set()

    top: list = [None, None]
    trades_buf: list = []
    trades_seen = [0]

    async def on_book(book, receipt_ts: float) -> None:
        bids, asks = book.book.bids, book.book.asks
        top[0] = bids.index(0)[0] if len(bids) else None
        top[1] = asks.index(0)[0] if len(asks) else None

    async def on_trade(t, receipt_ts: float) -> None:
        trades_buf.append(t)
        trades_seen[0] += 1
        if len(trades_buf) >= 10_000:
            trades_buf.clear()

    fh = FeedHandler(config={"log": {"disabled": True}, "uvloop": True})
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    done = asyncio.Event()
    feed = LoopbackBinance(symbols=["BTC-USDT"], channels=[L2_BOOK, TRADES],
                           callbacks={L2_BOOK: on_book, TRADES: on_trade}, timeout=-1,
                           config={"log": {"disabled": True}, "uvloop": True})
    fh.add_feed(feed)
    fh.run(start_loop=False, install_signal_handlers=False)
    try:
        loop.run_until_complete(asyncio.wait_for(done.wait(), 900))
    except TimeoutError:
        print(json.dumps({"error": f"timed out after {feed.k} messages"}), flush=True)
        return 1
    finally:
        try:
            fh.stop(loop=loop)
        except Exception:  # noqa: BLE001 - shutting down after the measurement; nothing to keep
            pass
    print(json.dumps(feed.result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
