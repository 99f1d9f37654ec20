"""Bad values through a live recorder: a hostile venue on 127.0.0.1 (a real
WebSocket server speaking Bybit v5) sends a NaN price, an overflowing trade price
and a crossing book update to a real ``lab record`` subprocess. The lake keeps
the raw messages in the journal, names each problem in ``feed_events``, stores
none of the bad values, and the recorder asks the venue for a fresh book each time.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import polars as pl

from lab.lake import Lake

ROOT = Path(__file__).resolve().parents[2]
TS = 1_764_000_000_000


def _book(typ: str, u: int, bids, asks) -> str:
    return json.dumps({"topic": "orderbook.50.BTCUSDT", "type": typ, "ts": TS + u, "cts": TS + u,
                       "data": {"s": "BTCUSDT", "b": bids, "a": asks, "u": u, "seq": u}})


def _trade(i: str, p: str, q: str) -> str:
    return json.dumps({"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": TS,
                       "data": [{"T": TS, "s": "BTCUSDT", "S": "Buy", "v": q, "p": p, "i": i}]})


class HostileBybit:
    """Answers each order-book subscription with a good snapshot; after the first,
    plays the script of bad messages."""

    def __init__(self) -> None:
        self.book_subscribes = 0
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Future | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _handler(self, ws) -> None:
        u = 100
        async for text in ws:
            msg = json.loads(text)
            if msg.get("op") != "subscribe":
                continue
            await ws.send(json.dumps({"op": "subscribe", "success": True, "ret_msg": ""}))
            if not any(a.startswith("orderbook.") for a in msg["args"]):
                continue
            self.book_subscribes += 1
            u += 10
            await ws.send(_book("snapshot", u, [["100", "1"]], [["101", "1"]]))
            if self.book_subscribes == 1:
                await ws.send(_book("delta", u + 1, [["NaN", "1"]], []))          # bad price: resync
            elif self.book_subscribes == 2:
                await ws.send(_trade("t1", "1e309", "0.5"))                       # overflowing trade price
                await ws.send(_trade("t2", "100.5", "-2"))                        # negative trade size
                await ws.send(_trade("t3", "100.5", "0.5"))                       # a good trade
                await ws.send(_book("delta", u + 1, [["99.5", "2"]], []))         # good
                await ws.send(_book("delta", u + 2, [["101.5", "3"]], []))        # crosses the ask
            else:
                await ws.send(_book("delta", u + 1, [["99", "4"]], []))           # healthy again

    def run(self) -> None:
        from websockets.asyncio.server import serve

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = self._loop.create_future()
            async with serve(self._handler, "127.0.0.1", 0) as srv:
                self.port = srv.sockets[0].getsockname()[1]
                self._ready.set()
                await self._stop

        asyncio.run(main())

    def __enter__(self) -> HostileBybit:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)


def test_live_recorder_stores_no_bad_value_and_resyncs_on_each(tmp_path):
    lake = tmp_path / "lake"
    with HostileBybit() as venue:
        cfg = tmp_path / "rec.toml"
        cfg.write_text("\n".join([
            "[recorder]", 'name = "hostile"', f'lake = "{lake}"', f'status_dir = "{tmp_path / "run"}"',
            "flush_interval = 0.2", "maintain_every = 0", "",
            "[[venue]]", 'venue = "bybit"', 'symbols = ["BTC-USDT"]', f'base_url = "ws://127.0.0.1:{venue.port}"',
        ]) + "\n")
        r = subprocess.run([sys.executable, "-m", "lab.cli", "record", "--config", str(cfg), "--duration", "5"],
                           cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr[-3000:]
        subscribes = venue.book_subscribes
    assert subscribes == 3  # the first snapshot, then one fresh book per lost one
    lk = Lake(lake)
    raw = lk.read("raw_messages")["payload"].to_list()
    assert any('"NaN"' in p for p in raw) and any("1e309" in p for p in raw)  # the journal keeps them
    ev = lk.read("feed_events").filter(pl.col("venue") == "bybit")
    bad = ev.filter(pl.col("kind") == "bad_value")
    assert sorted(d.split(" | ")[0] for d in bad["detail"]) == ["bid price=nan", "trade price=inf", "trade qty=-2.0"]
    assert set(bad["symbol"]) == {"BTC-USDT"}
    assert ev.filter(pl.col("kind") == "crossed_book").height == 1
    assert ev.filter(pl.col("kind") == "resync").height == 2
    t = lk.read("trades")
    assert t.select("trade_id", "price", "qty").rows() == [("t3", 100.5, 0.5)]
    q = lk.read("quotes")
    assert q.height >= 3 and (q["bid_px"] < q["ask_px"]).all()
    assert all(math.isfinite(x) for x in q["bid_px"]) and 101.5 not in q["bid_px"].to_list()
    bu = lk.read("book_updates")
    assert all(math.isfinite(x) and x > 0 for x in bu["price"]) and 101.5 not in bu["price"].to_list()
