"""The single lake writer: a thread that appends batches of rows.

Receiving and parsing hand a :class:`~recorders.venues.base.Rows` batch over
every flush interval through a bounded queue. The writer merges whatever has
queued up (so a slow lake means fewer, larger commits, not a growing backlog
until the bound), appends each table, and compacts the lake now and then.
When the bound is reached the batch is dropped and the loss is itself written
as a ``feed_events`` row: losses are never silent.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from lab.lake import Lake
from recorders.venues.base import Rows

__all__ = ["Writer"]

log = logging.getLogger("recorders.writer")

# raw_messages last: a batch whose journal landed has landed whole.
_ORDER = ("trades", "book_updates", "quotes", "book_snapshots", "feed_events", "raw_messages")


class Writer:
    def __init__(self, lake: Lake, *, max_batches: int = 16, maintain_every: float = 0.0,
                 delay: float = 0.0) -> None:
        self.lake = lake
        self.q: queue.Queue[Rows | None] = queue.Queue(maxsize=max_batches)
        self.maintain_every = maintain_every
        self.delay = delay  # artificial slowness per write (benchmarks of back-pressure)
        self.rows_written: dict[str, int] = {}
        self.commits = 0
        self.lost_rows = 0
        self.lost_batches = 0
        self.errors = 0
        self.last_write = 0.0
        self.last_error = ""
        self.cpu_s = 0.0  # CPU time of this thread spent writing
        self.events: list[tuple[int, str, str]] = []  # (ts µs, kind, detail) for feed_events
        self._thread = threading.Thread(target=self._run, name="lake-writer", daemon=True)
        self._last_maintain = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def depth(self) -> int:
        return self.q.qsize()

    def submit(self, batch: Rows) -> bool:
        """Queue ``batch``; False (and nothing queued) if the queue is full."""
        if not len(batch):
            return True
        try:
            self.q.put_nowait(batch)
            return True
        except queue.Full:
            self.lost_batches += 1
            self.lost_rows += len(batch)
            return False

    def close(self, timeout: float = 60.0) -> None:
        """Write everything queued, then stop."""
        self.q.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        stop = False
        while not stop:
            batch = self.q.get()
            if batch is None:
                break
            while True:  # merge whatever else is waiting
                try:
                    more = self.q.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.extend(more)
            self._write(batch)
            if self.maintain_every and time.monotonic() - self._last_maintain > self.maintain_every:
                self._last_maintain = time.monotonic()
                try:
                    self.lake.maintain(min_files=16)
                except Exception as e:  # noqa: BLE001 - upkeep must never stop recording
                    log.warning("lake maintenance failed: %s", e)

    def _write(self, batch: Rows) -> None:
        c0 = time.thread_time()
        try:
            self._write_tables(batch)
        finally:
            self.cpu_s += time.thread_time() - c0

    def _write_tables(self, batch: Rows) -> None:
        if self.delay:
            time.sleep(self.delay)
        for table in _ORDER:
            if not batch.count(table):
                continue
            df = batch.frame(table)
            for attempt in range(5):
                try:
                    self.lake.append(table, df)
                    self.rows_written[table] = self.rows_written.get(table, 0) + df.height
                    self.commits += 1
                    break
                except Exception as e:  # noqa: BLE001
                    self.errors += 1
                    self.last_error = f"{table}: {e}"
                    log.warning("append to %s failed (attempt %d): %s", table, attempt + 1, e)
                    time.sleep(0.2 * (attempt + 1))
            else:
                self.lost_rows += df.height
                self.events.append((time.time_ns() // 1000, "loss",
                                    f"{df.height} {table} rows not written after 5 attempts: "
                                    f"{self.last_error[:500]}"))
        self.last_write = time.time()
