"""The recorder process: connection loops per venue, one flusher, one writer.

Per venue a :class:`VenueRunner` keeps one WebSocket open (two, briefly, on
a planned rotation), feeds every message to a fresh adapter per connection,
journals it, answers the adapter's requests (REST snapshots, resubscribes)
and reconnects with exponential backoff and jitter. Every flush interval the
rows parsed so far are handed to the :class:`~recorders.writer.Writer`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import random
import signal
import sys
import time

import msgspec

# picows' websockets-compatible client: the same asyncio API as `websockets`,
# with a Cython frame parser that receives ~8x more messages per CPU-second
# (bench/bench_recorder_throughput.py prints both bare loops).
from picows.websockets import ConnectionClosed
from picows.websockets import connect as ws_connect

from lab import eventloop
from lab.lake import Lake, data_dir
from lab.recorder import RecorderStatus, SymbolStatus, VenueStatus, WriteOutage, encode_status, status_path
from lab.tail import ORDER
from recorders.backfill import Backfiller
from recorders.config import RecorderConfig, VenueConfig
from recorders.lakework import seed_ids, settle_tail
from recorders.rest import RestClient
from recorders.venues import adapter_for
from recorders.venues.base import Adapter, Rows, TradeIds, to_text
from recorders.writer import Writer

__all__ = ["Recorder", "run_recorder"]

log = logging.getLogger("recorders")
_STATUS_SLACK = 8192  # bytes of padding in the status file (room to grow when rewritten in place)
#: one maintenance pass of the lake, run by the recorder as a child process (see Recorder._maintainer)
# a pass whose compaction of a table failed (the table is still checkpointed) exits 1 naming it, so the
# recorder says so once (:meth:`Recorder._maintain_once`)
MAINTAIN_PASS = ("import sys; from lab.lake import Lake; from lab.apps.maintain import compaction_failures; "
                 "bad = compaction_failures(Lake(sys.argv[1]).maintain(min_files=16)); "
                 "sys.exit('compaction failed: ' + '; '.join(bad) if bad else None)")
MAINTAIN_STOP_WAIT = 60.0  # seconds a stopping recorder lets a running pass finish before ending it


def _now_us() -> int:
    return time.time_ns() // 1000


class Session:
    """One WebSocket connection and its adapter."""

    def __init__(self, runner: VenueRunner, conn_id: str) -> None:
        self.runner = runner
        self.conn_id = conn_id
        rec = runner.rec
        self.adapter: Adapter = runner.cls(runner.vc.symbols, rec.rows, trade_ids=runner.trade_ids,
                                           **({"depth": runner.vc.depth} if runner.vc.depth else {}))
        self.ws = None
        self.first_message = asyncio.Event()
        self.opened_at = time.monotonic()
        self.last_recv_us = time.time_ns() // 1000
        self.closing = False
        self._tasks: set[asyncio.Task] = set()

    def _spawn(self, coro) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        r = self.runner
        rec = r.rec
        url = self.adapter.url(r.ws_url)
        venue = r.venue
        async with ws_connect(url, open_timeout=15, ping_interval=20, ping_timeout=30,
                              close_timeout=2, max_size=2**24, max_queue=4096,
                              compression=None) as ws:
            self.ws = ws
            self.opened_at = time.monotonic()
            self.last_recv_us = time.time_ns() // 1000
            r.on_open(self)
            self.adapter.on_open(self.last_recv_us)
            for m in self.adapter.subscribe_messages():
                await ws.send(m)
            self._spawn(self._watchdog())
            if self.adapter.keepalive_every:
                self._spawn(self._keepalive())
            adapter = self.adapter
            feed = adapter.feed
            cid = self.conn_id
            time_ns = time.time_ns
            first = True
            rows = rec.rows
            j0, j1, j2, j3, j4 = rows.raw_messages
            try:
                async for raw in ws:
                    ts = time_ns() // 1000
                    self.last_recv_us = ts
                    if first:
                        first = False
                        r.on_first_message(self)
                        self.first_message.set()
                    if rec.rows is not rows:  # the flusher handed the batch to the writer
                        rows = rec.rows
                        j0, j1, j2, j3, j4 = rows.raw_messages
                    if adapter.out is not rows:
                        adapter.out = rows
                    seq = rec.seq = rec.seq + 1
                    text = raw if raw.__class__ is str else to_text(raw)
                    j0.append(ts); j1.append(venue); j2.append(cid); j3.append(seq); j4.append(text)
                    feed(text, ts)
                    if adapter.actions:
                        self._act(ts)
            finally:
                for t in list(self._tasks):
                    t.cancel()
                adapter.out = rec.rows
                adapter.on_close(time_ns() // 1000)

    def _act(self, ts: int) -> None:
        acts, self.adapter.actions = self.adapter.actions, []
        for kind, arg in acts:
            if kind == "snapshot":
                self._spawn(self._snapshot(arg))
            elif kind == "send":
                self.runner.resubscribes += 1
                self._spawn(self._send(arg))

    async def _send(self, text: str) -> None:
        try:
            await self.ws.send(text)
        except ConnectionClosed:
            pass

    async def _snapshot(self, symbol: str) -> None:
        r = self.runner
        rec = r.rec
        url = self.adapter.snapshot_url(r.rest_url, symbol)

        def on_error(detail: str) -> None:
            rec.rows.event(_now_us(), r.venue, symbol, "rest_error", detail)

        body = await rec.rest.get(url, on_error)
        if self.closing:
            return
        ts = _now_us()
        rec.seq += 1
        rows = rec.rows
        self.adapter.out = rows
        rows.raw(ts, r.venue, f"rest/{self.conn_id}/{symbol}", rec.seq, body)
        try:
            self.adapter.on_snapshot(symbol, body, ts)
        except Exception as e:  # noqa: BLE001
            self.adapter.reject(body, ts, e, symbol)
            self.adapter.actions.append(("snapshot", symbol))
        if self.adapter.actions:
            self._act(ts)

    async def _watchdog(self) -> None:
        timeout = self.runner.silence_timeout
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            idle = (time.time_ns() // 1000 - self.last_recv_us) / 1e6
            if idle > timeout:
                self.runner.rec.rows.event(_now_us(), self.runner.venue, None, "stale",
                                           f"{self.conn_id}: no message for {idle:.1f}s")
                self.runner.stale += 1
                await self.ws.close(1000, "stale")
                return

    async def _keepalive(self) -> None:
        msg = self.adapter.keepalive_message()
        while msg:
            await asyncio.sleep(self.adapter.keepalive_every)
            await self._send(msg)

    async def close(self) -> None:
        self.closing = True
        if self.ws is not None:
            await self.ws.close()


class VenueRunner:
    def __init__(self, rec: Recorder, vc: VenueConfig) -> None:
        self.rec = rec
        self.vc = vc
        self.venue = vc.venue
        self.cls = adapter_for(vc.venue)
        self.ws_url, self.rest_url = vc.urls()
        self.silence_timeout = vc.silence_timeout or self.cls.silence_timeout
        self.trade_ids = TradeIds()
        self.sessions: list[Session] = []
        self.n = 0
        self.reconnects = 0
        self.rotations = 0
        self.resubscribes = 0
        self.stale = 0
        self.connected = False
        self.last_error = ""
        self._closed_stats: dict[str, int] = {}
        self.last_seen: dict[str, int] = {}  # symbol -> last message (µs) of retired sessions
        self.duplicates_reported = 0

    def _conn_id(self) -> str:
        self.n += 1
        return f"{self.rec.run_id}/{self.venue}/{self.n}"

    def on_open(self, s: Session) -> None:
        self.connected = True
        self.rec.rows.event(_now_us(), self.venue, None, "connect", f"{s.conn_id} {self.ws_url}")
        if self.rec.backfiller is not None:  # fill the trades missed while away (recorders/backfill.py)
            self.rec.backfiller.on_open(self)

    def on_first_message(self, s: Session) -> None:
        # The newest connection owns the books; older ones only add trades (deduped).
        for old in self.sessions:
            if old is not s and old.adapter.book_enabled:
                old.adapter.book_enabled = False

    def stats(self) -> dict:
        out = dict(self._closed_stats)
        for s in self.sessions:
            for k, v in s.adapter.stats.items():
                out[k] = out.get(k, 0) + v
        return out

    def _retire(self, s: Session) -> None:
        if s in self.sessions:
            self.sessions.remove(s)
        for k, v in s.adapter.stats.items():
            self._closed_stats[k] = self._closed_stats.get(k, 0) + v
        for k, v in s.adapter.last_msg_us.items():
            self.last_seen[k] = max(v, self.last_seen.get(k, 0))

    async def run(self) -> None:
        cfg = self.rec.cfg
        backoff = cfg.backoff_base
        while not self.rec.stopping.is_set():
            s = Session(self, self._conn_id())
            self.sessions.append(s)
            task = asyncio.create_task(s.run())
            err = ""
            try:
                while True:
                    rotate_in = cfg.rotate_after - (time.monotonic() - s.opened_at)
                    done, _ = await asyncio.wait({task}, timeout=max(0.05, min(rotate_in, 1.0)))
                    if done:
                        break
                    if self.rec.stopping.is_set():
                        await s.close()
                        await asyncio.wait({task}, timeout=5)
                        break
                    if s.ws is not None and time.monotonic() - s.opened_at >= cfg.rotate_after:
                        s, task = await self._rotate(s, task)
                if task.done() and not task.cancelled() and task.exception() is not None:
                    e = task.exception()
                    err = f"{type(e).__name__}: {e}"
            except asyncio.CancelledError:
                task.cancel()
                raise
            finally:
                self._retire(s)
            self.connected = bool(self.sessions)
            if self.rec.stopping.is_set():
                break
            lived = time.monotonic() - s.opened_at if s.ws is not None else 0.0
            if lived >= cfg.healthy_after:
                backoff = cfg.backoff_base
            self.reconnects += 1
            self.last_error = err
            pause = backoff * (0.5 + random.random())
            ws = s.ws
            why = err or (f"closed code={ws.close_code} reason={ws.close_reason!r}" if ws else "closed")
            self.rec.rows.event(_now_us(), self.venue, None, "reconnect",
                                f"{s.conn_id} ended after {lived:.1f}s ({why}); retry in {pause:.2f}s")
            try:
                await asyncio.wait_for(self.rec.stopping.wait(), timeout=pause)
            except TimeoutError:
                pass
            backoff = min(backoff * 2, cfg.backoff_max)

    async def _rotate(self, old: Session, old_task: asyncio.Task):
        """Planned reconnect: open the new socket before closing the old one."""
        new = Session(self, self._conn_id())
        self.sessions.append(new)
        new_task = asyncio.create_task(new.run())
        first = asyncio.create_task(new.first_message.wait())
        await asyncio.wait({first, new_task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if not new.first_message.is_set():
            first.cancel()
            new_task.cancel()
            self._retire(new)
            old.opened_at = time.monotonic()  # try again later
            return old, old_task
        await asyncio.sleep(self.rec.cfg.overlap)
        self.rotations += 1
        self.rec.rows.event(_now_us(), self.venue, None, "rotate",
                            f"{old.conn_id} -> {new.conn_id} (planned, overlapped)")
        await old.close()
        await asyncio.wait({old_task}, timeout=5)
        self._retire(old)
        return new, new_task


class Recorder:
    """Record the configured venues into the lake until stopped."""

    def __init__(self, cfg: RecorderConfig, *, writer_delay: float = 0.0) -> None:
        self.cfg = cfg
        self.lake = Lake(cfg.lake) if cfg.lake else Lake(data_dir() / "lake")
        self.run_id = f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{os.getpid()}"
        self.rows = Rows()
        self.seq = 0
        self.stopping = asyncio.Event()
        # maintain_every=0: the lake is compacted by a child process (_maintainer), not the writer
        self.writer = Writer(self.lake, max_batches=cfg.queue_batches,
                             maintain_every=0.0, delay=writer_delay,
                             max_pending_bytes=int(cfg.write_buffer_mb * 2**20),
                             slow_every=cfg.slow_flush_interval, commit_every=cfg.commit_interval,
                             commits=cfg.committer == "recorder")
        self.rest = RestClient(cfg.rest_min_interval)
        # trade-id ranges earlier recorders asked for (read by the start-up child when the
        # maintainer commits the tail; the backfiller reads them itself otherwise)
        self.asked_before: list[tuple[str, str, int, int]] = []
        self.backfiller = Backfiller(self) if cfg.backfill else None
        self.runners = [VenueRunner(self, vc) for vc in cfg.venues]
        self.status_file = status_path(cfg.name, cfg.status_dir)
        self.started = time.time()
        self.publisher = None
        self._bus_marks: dict[str, int] = {}
        self._msg_hist: dict[str, tuple[float, int]] = {}
        self.lost_batches_reported = 0
        self._silent: set[tuple[str, str]] = set()  # (venue, symbol) reported as no_data, until it speaks
        self.maintain_proc: asyncio.subprocess.Process | None = None  # a maintenance pass in flight
        self.maintain_passes = 0  # passes started (tests, status)
        self._maintain_failed = False  # the last pass failed (logged once until one succeeds)

    # -- startup ------------------------------------------------------------
    def seed_trade_ids(self) -> None:
        """Remember the newest trade ids the lake holds (:attr:`TradeIds.capacity` per symbol, in
        the order they were received) so a restart duplicates none (:func:`recorders.lakework.seed_ids`)."""
        self._seed(seed_ids(self.lake, self._seed_wants(), self.cfg.seed_hours))

    def _seed_wants(self) -> list[tuple[str, list[str], int]]:
        return [(r.venue, list(r.vc.symbols), r.trade_ids.capacity) for r in self.runners]

    def _seed(self, seeds: dict[str, dict[str, list]]) -> None:
        for r in self.runners:
            for sym, ids in seeds.get(r.venue, {}).items():
                r.trade_ids.seed(sym, ids)

    def _adopted(self, adopted: dict[str, int]) -> None:
        if adopted:
            log.info("committed the tail a previous recorder left: %s rows", adopted)
            self.rows.event(_now_us(), "recorder", None, "tail_adopted",
                            f"rows a stopped recorder wrote to the tail, now committed: {adopted}")

    @property
    def tail_by_maintainer(self) -> bool:
        """The tail's Delta commits are left to the maintainer (committer = "maintainer" on a lake
        on disk): this process writes tail files only and never loads delta-rs."""
        return self.cfg.committer == "maintainer" and not getattr(self.lake, "remote", False)

    def lake_child_sync(self, what: str, req: dict, timeout: float | None = 120.0, own_session: bool = False) -> dict:
        """Run ``python -m recorders.lakework what`` on ``req`` and return its answer (blocking: from
        a worker thread); raises, with the child's last line, when it fails or outlives ``timeout``.
        A recorder that leaves its commits to the maintainer does its few Delta reads and commits
        there, and never loads delta-rs. ``own_session``: a second Ctrl-C does not cut it short."""
        import json
        import subprocess

        r = subprocess.run([sys.executable, "-m", "recorders.lakework", what], input=json.dumps(req),
                           capture_output=True, text=True, timeout=timeout, start_new_session=own_session)
        if r.returncode != 0:
            lines = r.stderr.strip().splitlines()
            raise RuntimeError(f"exit code {r.returncode}: {lines[-1] if lines else 'no message'}")
        return json.loads(r.stdout)

    async def _lake_child(self, what: str, req: dict, wait: float | None = None) -> dict | None:
        """:meth:`lake_child_sync` off the event loop; None, said in a warning, when it failed.
        ``wait``: seconds before it is ended (then it runs in its own session)."""
        try:
            return await asyncio.to_thread(self.lake_child_sync, what, req, wait, wait is not None)
        except Exception as e:  # noqa: BLE001 - recording goes on; lab maintain commits what is left
            log.warning("lake %s in a child process failed (%s); lab maintain commits what is left",
                        what, str(e).splitlines()[0][:300] if str(e) else type(e).__name__)
            return None

    async def _start_lake(self) -> None:
        """Before recording: commit what stopped recorders left in the tail, then read the trade
        ids to seed - in this process, or in a child when the maintainer commits the tail."""
        if self.tail_by_maintainer:
            if self.cfg.maintain_every <= 0:
                log.info("the tail's Delta commits are left to `lab maintain` (committer = \"maintainer\", "
                         "maintain_every = 0): run it beside this recorder, as lab demo does")
            got = await self._lake_child("start", {
                "lake": str(self.lake.root), "ensure": list(ORDER), "seed": self._seed_wants(),
                "seed_hours": self.cfg.seed_hours,
                **({"asked_since_hours": self.cfg.seed_hours + 1} if self.backfiller is not None else {})})
            if got is not None:
                self._adopted(got.get("adopted", {}))
                self._seed(got.get("seeds", {}))
                self.asked_before = [tuple(a) for a in got.get("asked", [])]
            return
        await asyncio.to_thread(self._settle_tail)
        await asyncio.to_thread(self.seed_trade_ids)  # a lake read: off the loop (signals stay live)

    # -- periodic work --------------------------------------------------------
    def flush(self) -> None:
        if self.writer.restate:  # book rows were lost: the lake's books restart from a known state
            self.writer.restate = False
            now = _now_us()
            for r in self.runners:
                for s in r.sessions:
                    s.adapter.out = self.rows
                    s.adapter.restate_books(now)
        self.report_duplicates()
        self.publish_bus()
        batch, self.rows = self.rows, Rows()
        self._bus_marks = {}
        for r in self.runners:
            for s in r.sessions:
                s.adapter.out = self.rows
        if len(batch) >= 0 and len(batch):
            if not self.writer.submit(batch):  # the writer notes the loss (a feed event)
                now = _now_us()
                for r in self.runners:  # the lake's books restart from a known state
                    for s in r.sessions:
                        s.adapter.restate_books(now)

    def report_duplicates(self) -> None:
        """One ``duplicates`` event per venue and flush in which the venue repeated
        messages (counted by the adapters, not applied twice)."""
        now = None
        for r in self.runners:
            n = r.stats().get("duplicate_messages", 0)
            if n > r.duplicates_reported:
                now = now or _now_us()
                self.rows.event(now, r.venue, None, "duplicates",
                                f"{n - r.duplicates_reported} duplicate messages ignored (total {n})")
                r.duplicates_reported = n

    def publish_bus(self) -> None:
        pub = self.publisher
        if pub is None:
            return
        for table in ("quotes", "trades", "book_updates"):
            start = self._bus_marks.get(table, 0)
            n = self.rows.count(table)
            if n > start:
                pub.publish_nowait(table, self.rows.dicts(table, start))
                self._bus_marks[table] = n

    def _bus_control(self, row: dict) -> None:
        """A new bus subscriber wants the books: restate every synced one, to it only."""
        if row.get("op") != "restate" or self.publisher is None:
            return
        self.publish_bus()  # rows the books already reflect go out first
        now = _now_us()
        rows = [x for r in self.runners for s in r.sessions for x in s.adapter.book_rows(now)]
        self.publisher.publish_nowait("book_updates", rows, to=row.get("to"))

    def check_silent_symbols(self) -> None:
        """A subscribed symbol with no message for ``no_data_after`` seconds (since its last one,
        or since the recorder started) is one ``no_data`` feed event and a warning, until it speaks
        again: a symbol the venue does not list, a halted market, a subscription that went nowhere."""
        limit = self.cfg.no_data_after
        if not limit or limit <= 0:
            return
        now_us = _now_us()
        start_us = int(self.started * 1e6)
        for r in self.runners:
            for sym in (x.upper() for x in r.vc.symbols):
                last = max([s.adapter.last_msg_us.get(sym, 0) for s in r.sessions] + [r.last_seen.get(sym, 0)])
                key = (r.venue, sym)
                if now_us - max(last, start_us) <= limit * 1e6:
                    self._silent.discard(key)
                    continue
                if key in self._silent:
                    continue
                self._silent.add(key)
                why = ("venue not connected" if not r.connected else
                       "nothing since the recorder started: is it listed on the venue?" if not last else
                       "silent since its last message")
                detail = f"no message for {sym} in {limit:g} s ({why})"
                self.rows.event(now_us, r.venue, sym, "no_data", detail)
                log.warning("%s %s: %s", r.venue, sym, detail)

    def status(self) -> RecorderStatus:
        """This recorder's :class:`lab.recorder.RecorderStatus` (what the status file holds)."""
        now = time.time()
        now_us = _now_us()
        venues = {}
        for r in self.runners:
            st = r.stats()
            prev_t, prev_n = self._msg_hist.get(r.venue, (self.started, 0))
            rate = (st.get("messages", 0) - prev_n) / max(now - prev_t, 1e-6)
            self._msg_hist[r.venue] = (now, st.get("messages", 0))
            syms = {}
            for sym in r.vc.symbols:
                sym = sym.upper()
                last = max([s.adapter.last_msg_us.get(sym, 0) for s in r.sessions]
                           + [r.last_seen.get(sym, 0)])
                synced = any(s.adapter.synced.get(sym) and s.adapter.book_enabled for s in r.sessions)
                syms[sym] = SymbolStatus(last_msg_age_s=round((now_us - last) / 1e6, 3) if last else None,
                                         book_synced=bool(synced))
            venues[r.venue] = VenueStatus(
                lag_s=self._lag(r.venue),
                connected=r.connected, connections=len(r.sessions), url=r.ws_url,
                msgs_per_s=round(rate, 1), messages=st.get("messages", 0),
                gaps=st.get("gaps", 0), resyncs=st.get("resyncs", 0),
                checksum_failures=st.get("checksum_failures", 0),
                rejected=st.get("rejected", 0), duplicate_trades=st.get("duplicates", 0),
                duplicate_messages=st.get("duplicate_messages", 0),
                bad_values=st.get("bad_values", 0), crossed_books=st.get("crossed_books", 0),
                reconnects=r.reconnects, rotations=r.rotations, stale=r.stale,
                last_error=r.last_error, symbols=syms,
            )
        lag = None
        q = self.rows.quotes
        if q[0]:
            lag = round((q[1][-1] - q[0][-1]) / 1e6, 3)
        w = self.writer
        outage = w.outage()
        return RecorderStatus(
            name=self.cfg.name, pid=os.getpid(), run_id=self.run_id,
            started=dt.datetime.fromtimestamp(self.started, dt.timezone.utc),
            updated=dt.datetime.fromtimestamp(now, dt.timezone.utc),
            lake=str(self.lake.root), bus=self.cfg.bus, lag_s=lag,
            queue_depth=w.depth(), queue_bound=self.cfg.queue_batches,
            rows_written=dict(w.rows_written), commits=w.commits, lost_rows=w.lost_rows,
            lost_batches=w.lost_batches, lost_by_table=dict(w.lost_by_table),
            write_errors=w.errors, pending_rows=w.pending_rows(),
            tail_uncommitted=w.tail_uncommitted(), tail_commit_error=w.commit_error,
            write_outage=None if outage is None else msgspec.convert(outage, WriteOutage),
            last_write_age_s=round(now - w.last_write, 3) if w.last_write else None,
            rest_calls=self.rest.calls, rest_errors=self.rest.errors,
            bus_dropped=getattr(self.publisher, "dropped", 0) if self.publisher else 0,
            venues=venues,
        )

    def _lag(self, venue: str) -> float | None:
        """Receive time minus exchange time of the venue's newest trade or quote in this batch."""
        best = None
        for table in ("trades", "quotes"):
            c = self.rows.cols[table]
            te, tl, vs = c[0], c[1], c[2]
            for i in range(len(vs) - 1, max(len(vs) - 20_000, 0) - 1, -1):
                if vs[i] == venue:
                    if best is None or tl[i] > best[0]:
                        best = (tl[i], te[i])
                    break
        return None if best is None else round((best[0] - best[1]) / 1e6, 3)

    def write_status(self) -> None:
        """Write the status file atomically; padded with spaces (valid JSON) so that on
        a full disk it can still be rewritten in place, in blocks it already owns."""
        p = self.status_file
        p.parent.mkdir(parents=True, exist_ok=True)
        text = encode_status(self.status())
        pad = -(-(len(text) + _STATUS_SLACK) // 4096) * 4096
        data = text + b" " * (pad - len(text))
        tmp = p.with_suffix(f".tmp{os.getpid()}")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, p)
            return
        except OSError:
            tmp.unlink(missing_ok=True)
            try:
                size = p.stat().st_size
            except OSError:
                raise
            if len(text) > size:
                raise
        with open(p, "r+b") as f:  # disk full: overwrite the old file's own blocks
            f.write(text + b" " * (size - len(text)))

    async def _ticker(self) -> None:
        next_status = 0.0
        bus_every = 0.05
        next_flush = time.monotonic() + self.cfg.flush_interval
        while not self.stopping.is_set():
            await asyncio.sleep(bus_every if self.publisher else min(0.1, self.cfg.flush_interval))
            now = time.monotonic()
            if now >= next_flush or len(self.rows) >= self.cfg.max_batch_rows:
                self.flush()
                next_flush = now + self.cfg.flush_interval
            else:
                self.publish_bus()
            if now >= next_status:
                next_status = now + 1.0
                self.check_silent_symbols()
                try:
                    self.write_status()
                except OSError as e:
                    log.warning("status file: %s", e)

    async def _maintainer(self) -> None:
        """Compact, checkpoint and vacuum the lake every ``maintain_every`` seconds, each pass in
        a child process (``Lake.maintain`` once), never in the recorder's own.

        Compaction reads whole files into memory and rewrites them sorted: files under the target
        size (128 MiB) are merged again at every pass, so a pass reads the table's whole recent
        history, and its memory grows with the lake (measured in a 16-minute soak: the recorder's
        peak RSS, always at a pass, went 294 -> 449 MiB while its RSS between passes stayed at
        230-245 MiB; the allocator kept much of it afterwards). In a child that memory is given
        back to the system when the pass ends, and the recorder's own memory does not depend on
        how much history the lake holds. A pass is skipped while the writer cannot append (a full
        disk: compaction would fail too); passes never overlap.
        """
        every = self.cfg.maintain_every
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self.stopping.wait(), timeout=every)
                return
            except TimeoutError:
                pass
            if self.writer.failing:
                continue
            await self._maintain_once()

    async def _maintain_once(self) -> None:
        self.maintain_passes += 1
        try:
            proc = self.maintain_proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", MAINTAIN_PASS, str(self.lake.root),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True)  # a Ctrl-C to the recorder's group must not cut a pass short
            _, err = await proc.communicate()
        except OSError as e:  # no process could be started (out of memory, pids): try next time
            proc, err = None, f"could not start: {e}".encode()
        finally:
            self.maintain_proc = None
        if proc is not None and proc.returncode == 0:
            if self._maintain_failed:
                log.info("lake maintenance works again")
            self._maintain_failed = False
            return
        lines = err.decode(errors="replace").strip().splitlines()
        why = lines[-1][:300] if lines else f"exit code {proc.returncode if proc else '?'}"
        if not self._maintain_failed:  # upkeep must never stop recording: said once, not per pass
            log.warning("lake maintenance failed: %s", why)
        self._maintain_failed = True

    async def _stop_maintainer(self, task: asyncio.Task | None) -> None:
        """Let a running pass finish (a compaction commit is atomic, but its staging files are
        removed at its end); end it after :data:`MAINTAIN_STOP_WAIT` seconds."""
        if task is None:
            return
        proc = self.maintain_proc
        if proc is not None and proc.returncode is None:
            try:
                await asyncio.wait_for(asyncio.shield(task), MAINTAIN_STOP_WAIT)
            except (TimeoutError, asyncio.CancelledError):
                proc.terminate()
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping
            pass

    # -- main -----------------------------------------------------------------
    def _settle_tail(self) -> None:
        """Commit the tail files a killed recorder left (:func:`recorders.lakework.settle_tail`)."""
        self._adopted(settle_tail(self.lake))

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.stop)
            except (NotImplementedError, RuntimeError):
                pass
        await self._start_lake()
        self.rows.event(_now_us(), "recorder", None, "start",
                        f"{self.cfg.name} pid {os.getpid()} run {self.run_id}: "
                        + ", ".join(f"{r.venue}[{','.join(r.vc.symbols)}]" for r in self.runners))
        self.writer.start()
        if self.cfg.bus:
            from lab.bus import Publisher
            self.publisher = Publisher(self.cfg.bus)
            self.publisher.on_control = self._bus_control
            await self.publisher.start()
        tasks = [asyncio.create_task(r.run()) for r in self.runners]
        ticker = asyncio.create_task(self._ticker())
        maintainer = asyncio.create_task(self._maintainer()) if self.cfg.maintain_every > 0 else None
        try:
            if self.cfg.duration:
                try:
                    await asyncio.wait_for(self.stopping.wait(), self.cfg.duration)
                except TimeoutError:
                    self.stop()
            await self.stopping.wait()
            await asyncio.wait(tasks, timeout=10)
        finally:
            for t in tasks:
                t.cancel()
            if self.backfiller is not None:  # fill the trade-id gaps seen last (bounded wait)
                await self.backfiller.close()
            ticker.cancel()
            self.flush()
            await asyncio.to_thread(self.writer.close)
            if self.writer.tail is not None and not self.writer.tail.commits:
                # the maintainer commits the tail; what this run wrote since its last pass, now
                await self._lake_child("settle", {"lake": str(self.lake.root)}, wait=MAINTAIN_STOP_WAIT)
            await self._stop_maintainer(maintainer)
            await self.rest.aclose()
            if self.publisher is not None:
                await self.publisher.close()
            try:
                self.write_status()
            except OSError:
                pass
        return 0

    def stop(self) -> None:
        if not self.stopping.is_set():
            self.rows.event(_now_us(), "recorder", None, "stop", f"{self.cfg.name} pid {os.getpid()}")
        self.stopping.set()


def run_recorder(cfg: RecorderConfig, **kw) -> int:
    """Run a recorder in this thread until SIGINT/SIGTERM (or ``cfg.duration``)."""
    # A failing lake append (disk full) makes the storage library's Rust threads panic;
    # the writer reports the failure once per interval, so keep their backtraces out
    # of the log (the one-line panic message stays).
    os.environ["RUST_BACKTRACE"] = "0"
    return eventloop.run(Recorder(cfg, **kw).run())
