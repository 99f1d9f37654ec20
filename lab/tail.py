"""The lake's hot tail: rows on disk and visible before their Delta commit.

A Delta commit costs the recorder ~10 ms of CPU however few rows it adds
(bench/bench_recorder_cost.py), and a research lake wants rows visible within
a second. So a recorder in *tail mode* writes each flush's rows of a table as
a small Parquet file in ``<table>/_tail/`` (~1 ms, no commit), and commits
them to the Delta table every ``commit_every`` seconds, in one commit per
table. :func:`lab.connect` and :meth:`lab.lake.Lake.scan` read a table's Delta
snapshot plus its tail files not yet committed: a fresh connection sees rows
as soon as their file is written.

How a row is never seen twice nor lost:

- A tail file is named ``<writer>-<seq>.parquet``: the writer's id and a
  sequence number that grows with each file the writer writes in that table.
  It is written under a hidden temporary name and renamed into place, so a
  reader never sees half a file.
- The Delta commit that adds a writer's tail rows carries a Delta
  *application transaction* ``(lab-tail:<writer>, seq)``: the highest sequence
  it contains. A reader takes the snapshot first, then lists the tail and keeps
  only files whose sequence is above the snapshot's transaction version for
  their writer. A file committed before the snapshot is skipped; one committed
  after it is read from the tail once.
- Committed tail files are deleted only after :data:`GRACE` (a connection that
  listed them keeps reading them), by their writer or by :func:`settle`
  (``lab maintain`` and the recorder's upkeep run it).
- A live writer holds an exclusive ``flock`` on ``_tail/<writer>.lock``. After a
  ``kill -9`` the lock is free: :func:`settle` *adopts* the dead writer's files
  that are not committed (one commit with the same transaction id, so doing it
  twice adds nothing) - the recorder does it when it starts.
- The journal leads: a writer writes the ``raw_messages`` file of a flush before
  the other tables' files, commits ``raw_messages`` first, and :func:`settle`
  adopts in the same order.
- A writer made with ``commits=False`` (a recorder with ``committer =
  "maintainer"``) never commits and holds no lock: :func:`settle` (``lab
  maintain``, the recorder's maintenance pass, and the recorder itself at start
  and stop, each in a child process) commits its files as it does a dead
  writer's, while it writes more. That recorder never loads delta-rs.

Delta readers that do not know the tail (Spark, ``deltalake``, ``pl.scan_delta``)
see rows up to ``commit_every`` seconds later; nothing else differs.
``_``-prefixed folders are ignored by Delta, including ``VACUUM FULL``.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from lab.schema import table_spec

if TYPE_CHECKING:
    from deltalake import DeltaTable

    from lab.lake import Lake

__all__ = ["TAIL", "GRACE", "APP", "ORDER", "TailWriter", "uncommitted", "settle", "app_id"]

TAIL = "_tail"
APP = "lab-tail:"  # prefix of the Delta application-transaction ids of tail commits
GRACE = 600.0  # seconds a committed tail file stays readable (a connection may have listed it)
_NAME = re.compile(r"^([0-9a-f]{12,32})-(\d{12})\.parquet$")
# raw_messages first: the journal leads (recorders/writer.py)
ORDER = ("raw_messages", "trades", "book_updates", "quotes", "book_snapshots", "feed_events")


def app_id(writer: str) -> str:
    return APP + writer


def _listing(table_dir: Path) -> dict[str, list[tuple[int, Path]]]:
    """Tail files by writer, each list sorted by sequence."""
    out: dict[str, list[tuple[int, Path]]] = {}
    try:
        entries = list(os.scandir(table_dir / TAIL))
    except (FileNotFoundError, NotADirectoryError):
        return out
    for e in entries:
        m = _NAME.match(e.name)
        if m:
            out.setdefault(m.group(1), []).append((int(m.group(2)), Path(e.path)))
    for files in out.values():
        files.sort()
    return out


def _committed(t: DeltaTable | None, writer: str) -> int:
    if t is None:
        return -1
    v = t.transaction_version(app_id(writer))
    return -1 if v is None else int(v)


def uncommitted(table_dir: str | os.PathLike[str], t: DeltaTable | None) -> list[str]:
    """Paths of ``table_dir``'s tail files not in snapshot ``t``, oldest first per writer.

    Take the snapshot *before* calling this (see the module docstring)."""
    out: list[str] = []
    for writer, files in _listing(Path(table_dir)).items():
        done = _committed(t, writer)
        out.extend(str(p) for s, p in files if s > done)
    return out


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[int | None]:
    """An exclusive, non-blocking flock on ``path`` (created if missing): the fd, or None
    when another process (a live writer, another adopter) holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield None
            return
        yield fd
    finally:
        os.close(fd)


def _commit(lake: Lake, table: str, writer: str, files: list[tuple[int, Path]],
            fresh: bool = True, frames: dict[int, pl.DataFrame] | None = None) -> tuple[int, int]:
    """One Delta commit of ``files`` (one writer's, in sequence order) with the transaction
    marker of the last one; returns (rows added, highest sequence now committed).

    The files already committed (by the table's newest snapshot) are left out, so a retry after
    a commit that landed but raised (its checkpoint failed on a full disk, say) adds nothing.
    ``fresh=False`` trusts the lake's open writer snapshot (only this process commits for
    ``writer``, so it is exact unless a commit raised). ``frames`` holds rows of some files
    already in memory (by sequence): those are not read back."""
    t = None if fresh else lake._writers.get(table)
    done = _committed(t if t is not None else lake.delta(table), writer)
    todo = [(s, p) for s, p in files if s > done]
    if not todo:
        return 0, done
    frames = frames or {}
    df = pl.concat([frames[s] if s in frames else pl.read_parquet(p, glob=False) for s, p in todo], how="diagonal_relaxed")
    lake.append(table, df, txn=(app_id(writer), todo[-1][0]), polars_writer=True)
    return df.height, todo[-1][0]


def settle(lake: Lake, tables: list[str] | None = None, grace: float = GRACE) -> dict[str, dict[str, int]]:
    """Adopt the tail files of writers that are gone (commit them) and delete committed tail
    files older than ``grace`` seconds; returns ``{table: {"adopted": rows, "deleted": files}}``
    for the tables where something was done. Safe to run from several processes at once."""
    out: dict[str, dict[str, int]] = {}
    now = time.time()
    order = _journal_first(tables or lake.tables())
    # listed in the reverse of the journal order, committed in it: a live writer that leaves its
    # commits to maintenance (TailWriter(commits=False)) writes a flush's journal file before the
    # flush's other files, so every file listed here has its journal file in the journal's
    # listing, taken after it - the Delta tables never get ahead of the journal
    listings = {table: _listing(lake.path(table)) for table in reversed(order)}
    for table in order:
        tdir = lake.path(table)
        listing = listings[table]
        if not listing and not (tdir / TAIL).is_dir():
            continue
        adopted = deleted = 0
        for writer, files in listing.items():
            with _locked(tdir / TAIL / f"{writer}.lock") as fd:
                if fd is None:
                    continue  # its writer is alive and commits (or another process is settling it)
                rows, done = _commit(lake, table, writer, files)
                adopted += rows
                for s, p in files:
                    if s <= done and now - _mtime(p) >= grace:
                        with contextlib.suppress(FileNotFoundError):
                            p.unlink()
                            deleted += 1  # not a file another process removed first
        # lock files of writers with no file left, unless held
        left = _listing(tdir)
        for lock in (tdir / TAIL).glob("*.lock") if (tdir / TAIL).is_dir() else ():
            if lock.stem in left:
                continue
            with _locked(lock) as fd:
                if fd is not None:
                    with contextlib.suppress(FileNotFoundError):
                        lock.unlink()
        if adopted or deleted:
            out[table] = {"adopted": adopted, "deleted": deleted}
    return out


def _journal_first(tables: list[str]) -> list[str]:
    """``tables`` in :data:`ORDER` (the journal first), any others after them."""
    return [t for t in ORDER if t in tables] + [t for t in tables if t not in ORDER]


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except FileNotFoundError:
        return 0.0


class TailWriter:
    """One recorder's tail in a lake: :meth:`write` puts rows in a table's tail (visible to
    readers at once), :meth:`commit` adds them to the Delta table. Not thread-safe: the
    recorder's lake-writer thread owns it."""

    def __init__(self, lake: Lake, grace: float = GRACE, commits: bool = True) -> None:
        self.lake = lake
        self.grace = grace
        # False: the files are committed by whoever runs settle (lab maintain): no lock, no
        # commit, no Delta table opened here - a process that writes only its tail
        self.commits = commits
        self.id = uuid.uuid4().hex[:16]
        self._seq: dict[str, int] = {}
        self._locks: dict[str, int] = {}  # table -> fd holding our flock
        self._files: dict[str, list[tuple[int, Path, float]]] = {}  # table -> (seq, path, written)
        self._done: dict[str, int] = {}  # table -> highest sequence committed
        self._unsure: set[str] = set()  # tables whose last commit raised: it may have landed
        # rows of the files not yet committed, kept so a commit need not read them back; over
        # ``max_memory`` bytes (commits failing for a while) the files are read back instead
        self._mem: dict[str, dict[int, pl.DataFrame]] = {}
        self._mem_bytes = 0.0
        self.max_memory = 32.0 * 2**20

    def _lock(self, table: str) -> Path:
        d = self.lake.path(table) / TAIL
        if not self.commits:
            if table not in self._locks:
                d.mkdir(parents=True, exist_ok=True)
                self._locks[table] = -1  # no lock: settle commits our files as we write them
            return d
        if table not in self._locks:
            d.mkdir(parents=True, exist_ok=True)
            fd = os.open(d / f"{self.id}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)  # ours alone: the id is new
            self._locks[table] = fd
        return d

    def write(self, table: str, df: pl.DataFrame) -> Path:
        """Write ``df`` (the table's canonical columns) as the next tail file of ``table``."""
        if self.commits:
            self.lake._ensure(table)
            d = self._lock(table)
            df = self.lake._align(table, df)
        else:  # the table's own columns in its order; the committer aligns optional ones
            d = self._lock(table)
            df = df.select([c for c in table_spec(table).columns if c in df.columns])
        seq = self._seq.get(table, 0) + 1
        path = d / f"{self.id}-{seq:012d}.parquet"
        tmp = d / f".{path.name}.tmp"
        try:
            df.write_parquet(tmp, compression="uncompressed", statistics=True)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._seq[table] = seq
        if not self.commits:
            return path  # settle commits it and deletes it after the grace
        self._files.setdefault(table, []).append((seq, path, time.time()))
        size = df.estimated_size()
        if self._mem_bytes + size <= self.max_memory:
            self._mem.setdefault(table, {})[seq] = df
            self._mem_bytes += size
        return path

    def pending(self, table: str) -> int:
        """Tail files of ``table`` written and not committed."""
        files = self._files.get(table, [])  # in sequence order; committed ones stay for the grace
        return len(files) - bisect.bisect_right(files, self._done.get(table, 0), key=lambda f: f[0])

    def uncommitted(self) -> int:
        """Tail files written and not committed, in every table."""
        return sum(self.pending(t) for t in list(self._files))

    def tables(self) -> list[str]:
        """Tables with files not committed, the journal first."""
        return _journal_first([t for t in self._files if self.pending(t)])

    def commit(self, table: str) -> int:
        """Add ``table``'s uncommitted tail files to its Delta table in one commit (idempotent:
        the commit carries the last sequence); delete committed files past the grace. Returns
        the rows committed. Raises what the append raises; the files stay for the next try."""
        done = self._done.get(table, 0)
        files = self._files.get(table, [])
        todo = [(s, p) for s, p, _ in files if s > done]
        rows = 0
        if todo:
            unsure = table in self._unsure
            self._unsure.add(table)
            rows, done = _commit(self.lake, table, self.id, todo, fresh=unsure, frames=self._mem.get(table))
            self._unsure.discard(table)
            self._done[table] = done
            mem = self._mem.get(table, {})
            for s in [s for s in mem if s <= done]:
                self._mem_bytes -= mem.pop(s).estimated_size()
        now = time.time()
        keep = []
        for s, p, at in files:
            if s <= done and now - at >= self.grace:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            else:
                keep.append((s, p, at))
        self._files[table] = keep
        return rows

    def close(self) -> None:
        """Release the locks (files not committed are then adopted by :func:`settle`)."""
        for fd in self._locks.values():
            if fd < 0:
                continue
            with contextlib.suppress(OSError):
                os.close(fd)
        self._locks.clear()
