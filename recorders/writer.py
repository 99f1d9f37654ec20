"""The single lake writer: a thread that appends batches of rows.

Receiving and parsing hand a :class:`~recorders.venues.base.Rows` batch over
every flush interval through a bounded queue. The writer merges whatever has
queued up (so a slow lake means fewer, larger commits, not a growing backlog
until the bound), appends each table, and compacts the lake now and then.

Rules that keep the record honest:

- **The journal leads.** A batch's ``raw_messages`` are committed before any
  of its other tables, and nothing of a batch is written while its journal is
  not: after a ``kill -9`` at any moment the journal holds every message whose
  rows are in the tables (``lab rebuild --from-journal`` can restore them).
- **A failing append keeps its rows.** Disk full, a read-only mount, a table
  whose Delta log is damaged: the rows stay in memory (oldest batches first)
  and the table is retried with backoff; the other tables go on being written.
  Only when the kept rows pass ``max_pending_bytes`` are the oldest batches
  dropped, each drop a counted loss written to ``feed_events`` (``loss``) once
  the lake takes rows again: the writer keeps those events itself and never
  drops them. No table is ever given up.
- **Quiet logs.** A failure is logged when it starts, then once per
  ``log_every`` seconds while it lasts, and once when appends work again. When
  the disk is visibly full the append is not even tried (``statvfs``), so the
  storage library does not print a panic per attempt.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable

import polars as pl

from lab.lake import Lake
from lab.tail import ORDER, TAIL, TailWriter
from recorders.venues.base import Rows

__all__ = ["Writer"]

log = logging.getLogger("recorders.writer")

# raw_messages first: the journal is the record (see the module docstring); lab.tail commits
# and adopts in the same order.
_ORDER = ORDER
_JOURNAL = "raw_messages"
_MIN_FREE = 4 * 2**20  # bytes: below this free space (plus the batch) an append is not tried
# Tables nobody waits for within a second: sampled top-N books (one sample per second
# per symbol) and feed events. Committing them every ``slow_every`` seconds instead of
# every flush saves a lake commit per flush (the recorder's cost is mostly commits:
# bench/bench_recorder_cost.py); live consumers get rows from the bus, not the lake.
SLOW_TABLES = frozenset({"book_snapshots", "feed_events"})


def _find_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): no trim, nothing else differs
        return None


_TRIM = _find_trim()


def _malloc_trim() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``; nothing elsewhere).

    A commit round's transient memory (delta-rs' log replay and commit, Polars' encoding) is
    freed when the round ends, but glibc keeps freed pages of its heaps mapped: a recorder's RSS
    crept up by the fragments. Trimming after each round held it 3-4 MiB lower for the same CPU
    (side by side on one simulator, 5 venues x 3 symbols; bench/bench_recorder_memory.py).
    """
    if _TRIM is not None:
        _TRIM(0)


def _first_line(e: BaseException, n: int = 300) -> str:
    text = f"{type(e).__name__}: {e}".strip().splitlines()
    return (text[0] if text else type(e).__name__)[:n]


class _Pending:
    """One batch's tables not yet in the lake."""

    __slots__ = ("frames", "nbytes", "rows", "t", "keep")

    def __init__(self, frames: dict[str, pl.DataFrame], keep: bool = False) -> None:
        self.frames = frames
        self.keep = keep  # the writer's own loss events: never dropped
        self.nbytes = sum(f.estimated_size() for f in frames.values())
        self.rows = sum(f.height for f in frames.values())
        self.t = time.time()

    def drop(self, table: str) -> None:
        f = self.frames.pop(table)
        self.nbytes -= f.estimated_size()
        self.rows -= f.height


class Writer:
    def __init__(self, lake: Lake, *, max_batches: int = 16, maintain_every: float = 0.0,
                 delay: float = 0.0, max_pending_bytes: int = 256 * 2**20, log_every: float = 30.0,
                 retry_max: float = 5.0, slow_every: float = 0.0, commit_every: float = 0.0,
                 commits: bool = True) -> None:
        self.lake = lake
        # commit_every > 0: tail mode (lab.tail): each flush's rows become tail files, visible to
        # readers at once, and Delta commits happen every commit_every seconds (one per table)
        self.commit_every = commit_every
        # commits=False (committer = "maintainer"): the tail's files are committed by lab.tail.settle
        # in another process; this one never opens a Delta table (nor loads delta-rs)
        self.tail = (TailWriter(lake, commits=commits) if commit_every > 0 and not getattr(lake, "remote", False)
                     else None)
        self._commit_due = time.monotonic() + commit_every
        self.tail_commits = 0
        self.commit_error = ""  # first line of the last failed tail commit ("" once one works)
        self._commit_logged = 0.0
        self.slow_every = slow_every  # seconds between commits of SLOW_TABLES (0 = every batch)
        self._slow_due: dict[str, float] = {}
        self.q: queue.Queue[Rows | None] = queue.Queue(maxsize=max_batches)
        self.maintain_every = maintain_every
        self.delay = delay  # artificial slowness per write (benchmarks of back-pressure)
        self.max_pending_bytes = max_pending_bytes
        self.log_every = log_every
        self.retry_max = retry_max
        self.rows_written: dict[str, int] = {}
        self.commits = 0
        self.lost_rows = 0
        self.lost_batches = 0
        self.lost_by_table: dict[str, int] = {}
        self.errors = 0
        self.last_write = 0.0
        self.last_error = ""
        self.cpu_s = 0.0  # CPU time of this thread spent writing
        # (ts µs, kind, detail) of the writer's own feed events (loss, write_recovered): every
        # one noted (bounded history, for tests and the status), and queued to be written
        self.events: deque[tuple[int, str, str]] = deque(maxlen=1000)
        self._notes: list[tuple[int, str, str]] = []
        self.restate = False  # book rows were lost: the recorder should restate its books
        self.pending: deque[_Pending] = deque()
        self.failing: dict[str, str] = {}  # table -> first line of its last error
        self.outage_since: float | None = None
        self._retry_at: dict[str, float] = {}
        self._backoff: dict[str, float] = {}
        self._failures_since_log = 0
        self._last_log = 0.0
        self._lock = threading.Lock()  # guards the counters the status reads
        self._thread = threading.Thread(target=self._run, name="lake-writer", daemon=True)
        self._last_maintain = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def depth(self) -> int:
        return self.q.qsize()

    def pending_rows(self) -> int:
        return sum(p.rows for p in list(self.pending))

    def pending_bytes(self) -> int:
        return sum(p.nbytes for p in list(self.pending))

    def tail_uncommitted(self) -> int:
        """Tail files written and not yet committed to Delta (0 without a tail)."""
        return 0 if self.tail is None else self.tail.uncommitted()

    def outage(self) -> dict | None:
        """What the status file says while appends fail (None when all is well)."""
        if self.outage_since is None:
            return None
        return {"since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.outage_since)),
                "for_s": round(time.time() - self.outage_since, 1),
                "failing_tables": dict(self.failing), "pending_rows": self.pending_rows(),
                "pending_bytes": self.pending_bytes(), "lost_rows": self.lost_rows}

    def submit(self, batch: Rows) -> bool:
        """Queue ``batch``; False (and nothing queued) if the queue is full."""
        if not len(batch):
            return True
        try:
            self.q.put_nowait(batch)
            return True
        except queue.Full:
            counts = {t: n for t, n in batch.counts().items() if n}
            with self._lock:
                self.lost_batches += 1
                self.lost_rows += len(batch)
                for t, n in counts.items():
                    self.lost_by_table[t] = self.lost_by_table.get(t, 0) + n
            self._note("loss", f"writer queue full ({self.q.maxsize} batches): batch dropped; rows lost {counts}")
            return False

    def close(self, timeout: float = 60.0) -> None:
        """Write everything queued (one last try for rows kept from failed appends), then stop."""
        self.q.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        stop = False
        while not stop:
            try:
                batch = self.q.get(timeout=self._idle_wait())
            except queue.Empty:
                batch = Rows()  # nothing new: retry what failed
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
            self._write(batch, final=stop)
            if self.maintain_every and time.monotonic() - self._last_maintain > self.maintain_every \
                    and not self.failing:
                self._last_maintain = time.monotonic()
                try:
                    self.lake.maintain(min_files=16)
                except Exception as e:  # noqa: BLE001 - upkeep must never stop recording
                    log.warning("lake maintenance failed: %s", _first_line(e))
        if self.pending:
            self._drain(force=True)
            self._give_up_pending("the recorder stopped")
        if self.tail is not None:
            self._commit_tail(force=True)
            self.tail.close()

    def _idle_wait(self) -> float:
        if not self.pending:
            return 1.0
        now = time.monotonic()
        due = min((self._due(t, now) for t in self._pending_tables()), default=now + 1.0)
        return min(max(due - now, 0.05), 1.0)

    def _due(self, table: str, now: float) -> float:
        """When ``table``'s kept rows are next tried: its retry time while it fails,
        its slow cadence for the tables written less often, else now."""
        if table in self._retry_at:
            return self._retry_at[table]
        if self.slow_every and table in SLOW_TABLES:
            return self._slow_due.get(table, now)
        return now

    def _write(self, batch: Rows, final: bool = False) -> None:
        c0 = time.thread_time()
        try:
            if self.delay:
                time.sleep(self.delay)
            if len(batch):
                self.pending.append(_Pending(batch.frames()))
            with self._lock:
                notes, self._notes = self._notes, []
            if notes:
                r = Rows()
                for ts, kind, detail in notes:
                    r.event(ts, "recorder", None, kind, detail)
                self.pending.append(_Pending(r.frames(), keep=True))
            self._drain(force=final)
            self._bound()
            self._commit_tail(force=final)
        finally:
            self.cpu_s += time.thread_time() - c0

    # -- writing ----------------------------------------------------------------
    def _pending_tables(self) -> set[str]:
        return {t for p in self.pending for t in p.frames}

    def _drain(self, force: bool = False) -> None:
        """Append every table's kept rows (oldest first, one commit per table); the
        journal first, and a batch's other tables only once its journal is in."""
        now = time.monotonic()
        for table in _ORDER:
            # batches whose journal is written (or never had one) may write this table
            ready = [p for p in self.pending if table in p.frames
                     and (table == _JOURNAL or _JOURNAL not in p.frames)]
            if not ready:
                if table in self.failing and (force or now >= self._retry_at.get(table, 0.0)):
                    self._probe(table)  # every kept row became a counted loss: is the table back?
                continue
            if not force and now < self._retry_at.get(table, 0.0):
                continue
            if (not force and self.slow_every and table in SLOW_TABLES
                    and not any(p.keep for p in ready)):
                due = self._slow_due.get(table, now)  # a fresh writer's first rows go at once
                if now < due:
                    continue  # kept in `pending` until due: one commit for several batches
                self._slow_due[table] = now + self.slow_every
            if table in self.failing:
                ready = ready[:1]  # probe with the oldest batch, not everything kept
            frames = [p.frames[table] for p in ready]
            try:
                self._space_check(sum(f.estimated_size() for f in frames))
                df = frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical")
                if self.tail is not None:
                    self.tail.write(table, df)
                else:
                    self.lake.append(table, df)
            except Exception as e:  # noqa: BLE001 - any failure keeps the rows
                self._failed(table, e)
                continue
            for p in ready:
                p.drop(table)
            with self._lock:
                self.rows_written[table] = self.rows_written.get(table, 0) + df.height
                if self.tail is None:
                    self.commits += 1
            self.last_write = time.time()
            self._ok(table)
        while self.pending and not self.pending[0].frames:
            self.pending.popleft()
        if self.outage_since is not None and not self.failing:
            self._recovered()

    def _commit_tail(self, force: bool = False) -> None:
        """Tail mode: every ``commit_every`` seconds (and at the end), add each table's tail
        files to its Delta table, one commit per table, the journal first. A failed commit
        keeps the files (on disk and readable) for the next round; a failed journal commit
        holds back the other tables', so the Delta tables never get ahead of the journal."""
        if self.tail is None or not self.tail.commits:
            return
        now = time.monotonic()
        if not force and now < self._commit_due:
            return
        self._commit_due = now + self.commit_every
        for table in self.tail.tables():
            try:
                self.tail.commit(table)
            except Exception as e:  # noqa: BLE001 - the files stay; retried next round
                msg = f"{table}: {_first_line(e)}"
                if not self.commit_error or now - self._commit_logged >= self.log_every:
                    self._commit_logged = now
                    log.warning("committing the tail of %s failed: %s; its rows stay readable in "
                                "the tail and the commit is retried every %g s", table, msg, self.commit_every)
                self.commit_error = msg
                if table == _JOURNAL:
                    return
                continue
            with self._lock:
                self.commits += 1
                self.tail_commits += 1
            if self.commit_error.startswith(table + ":"):
                log.warning("tail commits work again (%s)", table)
                self.commit_error = ""
        _malloc_trim()

    def _probe(self, table: str) -> None:
        """A failing table with no rows left to retry (all dropped past the memory bound) is
        checked on its retry schedule without writing, with the check an append makes before
        writing (the log is readable): healthy again ends its outage."""
        try:
            if self.tail is not None and not self.tail.commits:  # only the tail's folder is written here
                d = self.lake.path(table) / TAIL
                d.mkdir(parents=True, exist_ok=True)
                if not os.access(d, os.W_OK):
                    raise PermissionError(13, f"cannot write to {d}")
                self._space_check(0)
            else:
                self.lake._refuse_damaged_log(table)
        except Exception as e:  # noqa: BLE001 - the probe fails as an append would
            self._failed(table, e)
            return
        self._ok(table)

    def _space_check(self, nbytes: int) -> None:
        """Refuse early when the disk is visibly full (less than a few MB plus half the
        rows' in-memory size free): the storage library would fail anyway, printing
        a panic per attempt."""
        try:
            st = os.statvfs(self.lake.root)
        except OSError:
            return  # cannot tell (no such dir yet, say): let the append decide
        free = st.f_bavail * st.f_frsize
        need = _MIN_FREE + nbytes // 2
        if free < need:
            raise OSError(28, f"No space left on device: {free} bytes free under {self.lake.root}, "
                              f"need about {need}")

    def _failed(self, table: str, e: BaseException) -> None:
        msg = _first_line(e)
        now = time.monotonic()
        back = min(self._backoff.get(table, 0.1) * 2, self.retry_max)
        self._backoff[table] = back
        self._retry_at[table] = now + back
        with self._lock:
            self.errors += 1
            self.last_error = f"{table}: {msg}"
            self.failing[table] = msg
        self._failures_since_log += 1
        if self.outage_since is None:
            self.outage_since = time.time()
            self._last_log = now
            self._failures_since_log = 0
            log.warning("lake append to %s failed: %s; keeping the rows in memory (up to %g MB) "
                        "and retrying", table, msg, self.max_pending_bytes / 2**20)
        elif now - self._last_log >= self.log_every:
            self._last_log = now
            log.warning("lake appends still failing after %.0f s (%d failures since the last report; "
                        "tables %s): %s; %d rows kept, %d rows lost so far",
                        time.time() - self.outage_since, self._failures_since_log,
                        ",".join(sorted(self.failing)), msg, self.pending_rows(), self.lost_rows)
            self._failures_since_log = 0

    def _ok(self, table: str) -> None:
        self._backoff.pop(table, None)
        self._retry_at.pop(table, None)
        with self._lock:
            self.failing.pop(table, None)

    def _recovered(self) -> None:
        secs = time.time() - (self.outage_since or time.time())
        log.warning("lake appends work again after %.1f s; %d rows lost in the outage (feed_events 'loss')",
                    secs, self.lost_rows)
        self._note("write_recovered", f"lake appends work again after {secs:.1f} s; lost rows so far "
                                      f"{self.lost_rows} ({self.lost_by_table})")
        self.outage_since = None

    def _note(self, kind: str, detail: str) -> None:
        ev = (time.time_ns() // 1000, kind, detail)
        with self._lock:
            self.events.append(ev)
            self._notes.append(ev)

    def _bound(self) -> None:
        """Drop the oldest kept batches while they hold more than the bound: counted losses."""
        total = sum(p.nbytes for p in self.pending if not p.keep)
        while total > self.max_pending_bytes:
            p = next((x for x in self.pending if not x.keep), None)
            if p is None or p is self.pending[-1]:
                break  # the newest batch stays
            self.pending.remove(p)
            total -= p.nbytes
            self._lose(p, f"kept rows over the {self.max_pending_bytes / 2**20:g} MB bound while appends "
                          f"failed ({self.last_error[:200]})")

    def _give_up_pending(self, why: str) -> None:
        while self.pending:
            self._lose(self.pending.popleft(), why)

    def _lose(self, p: _Pending, why: str) -> None:
        counts = {t: f.height for t, f in p.frames.items()}
        if not counts:
            return
        with self._lock:
            self.lost_batches += 1
            self.lost_rows += sum(counts.values())
            for t, n in counts.items():
                self.lost_by_table[t] = self.lost_by_table.get(t, 0) + n
        if "book_updates" in counts:
            self.restate = True
        self._note("loss", f"batch of {time.strftime('%H:%M:%S', time.gmtime(p.t))} UTC not written: "
                           f"{why}; rows lost {counts}")
