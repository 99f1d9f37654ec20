"""Replay a recorded journal (``raw_messages``) through the venues' WebSocket paths.

Like tardis-machine: each client that connects to a venue's port gets that
venue's recorded WebSocket messages (every non-REST ``conn_id``, merged in
``ts_local`` order), exactly as recorded, paced by the recorded receive times
divided by ``speed``, from the start of the journal (or ``start``); the
connection is closed normally after the last message. Subscribe messages
from the client are accepted and ignored (the journal already holds the
venue's answers). Binance REST ``/api/v3/depth`` answers with the recorded
REST snapshot bodies (``conn_id`` starting ``rest``): the one whose
``conn_id`` names the requested symbol if the journal says, else the next
recorded one in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import urllib.parse
from http import HTTPStatus
from pathlib import Path

import numpy as np
import polars as pl
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Response
from websockets.protocol import State

from lab.venues import VENUES as REGISTRY
from recorders.sim.config import PORT_OFFSET
from recorders.sim.wire import close_servers, frame

__all__ = ["Replayer", "load_journal"]

_PATHS = {n: v.sim_ws_paths for n, v in REGISTRY.items()}


def load_journal(path: str | Path, start: str | None = None, end: str | None = None) -> pl.DataFrame:
    """``raw_messages`` rows of the lake (or table directory) at ``path``, by ``ts_local``."""
    p = Path(path)
    table = p if (p / "_delta_log").is_dir() else p / "raw_messages"
    if not (table / "_delta_log").is_dir():
        raise FileNotFoundError(f"no raw_messages Delta table at {p} (looked for {table}/_delta_log)")
    lf = pl.scan_delta(str(table))
    for bound, op in ((start, "ge"), (end, "lt")):
        if bound:
            t = dt.datetime.fromisoformat(bound)
            if t.tzinfo is None:
                t = t.replace(tzinfo=dt.timezone.utc)
            lf = lf.filter(getattr(pl.col("ts_local"), op)(t))
    return lf.sort("ts_local", "venue", "conn_id", "recv_seq").collect()


class Replayer:
    """Serve a journal; same ``start()``/``stop()``/``urls()`` shape as the Simulator."""

    def __init__(self, path: str | Path, *, host: str = "127.0.0.1", port_base: int = 9443,
                 speed: float = 1.0, start: str | None = None, end: str | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        df = load_journal(path, start, end)
        if df.height == 0:
            raise ValueError(f"the journal at {path} has no messages in the requested range")
        self.host, self.port_base, self.speed = host, port_base, speed
        self.ws: dict[str, tuple[np.ndarray, list[str]]] = {}
        self.rest: dict[str, list[tuple[str, str]]] = {}
        self.rest_pos: dict[str, int] = {}
        for (venue,), g in df.group_by("venue", maintain_order=True):
            if venue not in PORT_OFFSET:
                continue
            is_rest = g["conn_id"].str.starts_with("rest")
            w = g.filter(~is_rest)
            t = w["ts_local"].dt.epoch("us").to_numpy()
            self.ws[venue] = (t - (t[0] if len(t) else 0), w["payload"].to_list())
            r = g.filter(is_rest)
            self.rest[venue] = list(zip(r["conn_id"].to_list(), r["payload"].to_list()))
            self.rest_pos[venue] = 0
        self.ports: dict[str, int] = {}
        self._servers: list = []
        self.sent: dict[str, int] = {v: 0 for v in self.ws}

    def urls(self) -> dict[str, str]:
        out = {}
        for v, p in self.ports.items():
            base = f"ws://{self.host}:{p}"
            out[v] = base + {"kraken": "/v2", "okx": "/ws/v5/public", "bybit": "/v5/public/spot"}.get(v, "")
            if v == "binance":
                out["binance_rest"] = f"http://{self.host}:{p}"
        return out

    async def start(self) -> None:
        for v in self.ws:
            port = 0 if self.port_base == 0 else self.port_base + PORT_OFFSET[v]
            srv = await serve(self._handler(v), self.host, port, process_request=self._process(v),
                              compression=None, ping_interval=None, server_header=None)
            self._servers.append(srv)
            self.ports[v] = srv.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await close_servers(self._servers)

    def _process(self, venue: str):
        def process(conn: ServerConnection, request) -> Response | None:
            u = urllib.parse.urlsplit(request.path)
            if venue == "binance" and u.path == "/api/v3/depth":
                return self._depth(conn, u.query)
            ok = any(u.path == p or u.path.startswith(p.rstrip("/") + "/") for p in _PATHS[venue])
            if not ok:
                return conn.respond(HTTPStatus.NOT_FOUND, f"no such path {u.path!r}\n")
            return None
        return process

    def _depth(self, conn: ServerConnection, query: str) -> Response:
        sym = (urllib.parse.parse_qs(query).get("symbol") or [""])[0]
        rows = self.rest.get("binance", [])
        body = None
        named = [p for c, p in rows if sym and sym.lower() in c.lower()]
        if named:
            body = named[min(self.rest_pos["binance"], len(named) - 1)]
            self.rest_pos["binance"] += 1
        elif rows:
            body = rows[self.rest_pos["binance"] % len(rows)][1]
            self.rest_pos["binance"] += 1
        if body is None:
            r = conn.respond(404, '{"code":-1,"msg":"no REST snapshot in the journal"}')
        else:
            r = conn.respond(200, body)
        r.headers["Content-Type"] = "application/json;charset=UTF-8"
        return r

    def _handler(self, venue: str):
        t_us, payloads = self.ws[venue]

        async def drain_incoming(ws: ServerConnection) -> None:
            with contextlib.suppress(Exception):
                async for _ in ws:
                    pass

        async def handler(ws: ServerConnection) -> None:
            reader = asyncio.get_running_loop().create_task(drain_incoming(ws))
            t0 = time.perf_counter()
            i, n = 0, len(payloads)
            try:
                while i < n and ws.state is State.OPEN:
                    now_us = (time.perf_counter() - t0) * self.speed * 1e6
                    j = int(np.searchsorted(t_us, now_us, side="right"))
                    if j > i:
                        ws.transport.write(b"".join(frame(p.encode()) for p in payloads[i:j]))
                        self.sent[venue] += j - i
                        i = j
                        while ws.transport.get_write_buffer_size() > 4 * 2**20 and ws.state is State.OPEN:
                            await asyncio.sleep(0.001)
                    if i < n:
                        wait = (t_us[i] - now_us) / self.speed / 1e6
                        await asyncio.sleep(min(max(wait, 0.0), 0.05))
                if ws.state is State.OPEN:
                    await ws.close(1000, "end of journal")
            finally:
                reader.cancel()
        return handler
