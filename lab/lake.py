"""The lake: one Delta Lake table per canonical record kind.

Writers (recorders, the simulator's bulk loader, the paper runner) call
:meth:`Lake.append`; readers use :func:`lab.connect` (DuckDB) or
:func:`lab.scan` (Polars). Delta's optimistic commits give atomic appends,
snapshot isolation for readers and safe concurrent writers; :meth:`Lake.maintain`
compacts small files, checkpoints the log and removes files that no
snapshot has referenced for a grace period (so a reader mid-query never
loses a file).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import polars as pl

from lab.errors import DataError
from lab.schema import TABLES, SchemaError, TableSpec, conform, table_spec
from lab.times import to_utc

if TYPE_CHECKING:  # imported where used: the recorder writes without loading pyarrow (~40 MiB RSS)
    import pyarrow as pa
    from deltalake import CommitProperties, DeltaTable, PostCommitHookProperties


class _Delta:
    """delta-rs (``deltalake``), imported on first use.

    A recorder whose tail is committed by ``lab maintain`` (``committer = "maintainer"``,
    :mod:`lab.tail`) uses the lake's paths and never a Delta table: it never loads delta-rs, whose
    library pages (52 MiB of RSS on a freshly installed machine, bench/bench_recorder_memory.py)
    would stay mapped in it all day."""

    def __getattr__(self, name: str) -> Any:
        import deltalake
        from deltalake import exceptions, transaction

        for mod in (deltalake, exceptions, transaction):
            if hasattr(mod, name):
                value = getattr(mod, name)
                setattr(self, name, value)
                return value
        raise AttributeError(f"deltalake has no {name!r}")


_dl = _Delta()

log = logging.getLogger("lab.lake")

__all__ = ["Lake", "data_dir", "default_lake", "LakeError", "DamagedTableError", "Damage",
           "LakeWarning", "scan_filtered"]

# Row groups of 128k rows: rows arrive in time order, so a query over the last
# minutes skips all but the newest row groups of a compacted file by their stats.
_GROUP_ROWS = 131_072
# (_WRITER_PROPS in _PROPS, below)
# Recording commits every flush interval (thousands of commits an hour): keep the
# log short. Every commit and every snapshot update lists ``_delta_log``, so its cost
# grows with the number of log files kept: measured here, a 300-row append cost 6 ms on
# a new table and ~50 ms with 1,500 log files, so with a 2-hour retention a recorder's
# CPU climbed for two hours. Readers need only the newest checkpoint and the entries
# after it (a reader whose snapshot is older catches up from the checkpoint); the removed
# files' tombstones live in the checkpoint, so vacuum still finds them. Only maintenance
# (``Lake.maintain``: ``lab maintain`` or the recorder's own upkeep) drops old entries,
# and not while a lab.distributed lease holds an older version; writers never do
# (:data:`_WRITE_HOOKS`).
LOG_RETENTION = "interval 5 minutes"
CHECKPOINT_EVERY = 100  # commits: the table's checkpointInterval
_TABLE_CONFIG = {
    "delta.logRetentionDuration": LOG_RETENTION,
    "delta.checkpointInterval": str(CHECKPOINT_EVERY),
}
# writers leave the log's clean-up to maintenance, which honours leases (delta-rs' hook would
# not); compaction commits and appends to object storage write the checkpoint every
# ``checkpointInterval`` commits
# (_WRITE_HOOKS in _PROPS, below)
# Appends to a lake on disk write no checkpoint of their own when maintenance keeps one recent
# (:meth:`Lake._checkpoint_if_behind`): ``Lake.maintain`` writes one every pass. A recorder that
# wrote one (~40 minutes into a recording, when its tables reached version 100) kept delta-rs'
# checkpoint code resident from then on: +1.8 MiB (one process, the hook on vs off: +1.8 vs +0.0).
# (_APPEND_HOOKS in _PROPS, below)


# (_CREATE_ONCE in _PROPS, below)

# Marks lab's sorted compaction in the table history (delta-rs logs it as a WRITE).
# (_COMPACT_COMMIT in _PROPS, below)


#: delta-rs settings, made on first use (:class:`_Delta`); read through :func:`_props`
_PROPS: dict[str, Any] = {
    "_WRITER_PROPS": lambda: _dl.WriterProperties(compression="ZSTD", compression_level=1, max_row_group_size=_GROUP_ROWS),
    "_WRITE_HOOKS": lambda: _dl.PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False),
    "_APPEND_HOOKS": lambda: _dl.PostCommitHookProperties(create_checkpoint=False, cleanup_expired_logs=False),
    "_CREATE_ONCE": lambda: _dl.CommitProperties(max_commit_retries=0),
    "_COMPACT_COMMIT": lambda: _dl.CommitProperties(custom_metadata={"lab.operation": "compact-sorted"}),
}


def _props(name: str) -> Any:
    """The delta-rs setting ``name`` of :data:`_PROPS`, made once (a test may set it on the module)."""
    g = globals()
    if name not in g:
        g[name] = _PROPS[name]()
    return g[name]


def __getattr__(name: str) -> Any:  # ``from lab.lake import _WRITE_HOOKS`` (lab.objectstore)
    if name in _PROPS:
        return _props(name)
    raise AttributeError(f"module 'lab.lake' has no attribute {name!r}")


class LakeError(DataError):
    """A lake operation failed for a reason other than a bad batch."""


class Damage(msgspec.Struct, frozen=True):
    """One thing wrong with one lake table, found by :meth:`Lake.inspect`.

    ``file`` is relative to the table directory (``_delta_log/<v>.json`` for the
    log, the Parquet file's name for data); ``kind`` is ``log``, ``file`` or
    ``schema``; ``rows`` is how many rows the log says a data file holds (what a
    repair that drops the file loses), ``None`` when unknown.
    """

    table: str
    file: str
    problem: str
    kind: str = "file"
    rows: int | None = None

    def __str__(self) -> str:
        rows = "" if self.rows is None else f" ({self.rows} rows)"
        return f"{self.table}: {self.file}: {self.problem}{rows}"


class DamagedTableError(LakeError):
    """A table's log or files are damaged: the message names the table, the file and
    the cause; ``damage`` holds every :class:`Damage` found. ``lab doctor`` reports
    it, ``lab doctor --repair`` fixes it."""

    def __init__(self, message: str, damage: list[Damage] | None = None) -> None:
        super().__init__(message)
        self.damage = list(damage or [])


class LakeWarning(UserWarning):
    """Warned by :func:`lab.connect` for each damaged table it could not open."""


_PAR1 = b"PAR1"


def _commit_version(name: str) -> int | None:
    """``00000000000000000012.json`` -> 12; anything else (checkpoints, temp files) -> None."""
    stem, dot, ext = name.partition(".")
    return int(stem) if ext == "json" and dot and stem.isdigit() and len(stem) == 20 else None


def last_checkpoint(table_dir: Path) -> int:
    """The version of the newest checkpoint ``_delta_log/_last_checkpoint`` names, or -1."""
    try:
        return int(json.loads((table_dir / "_delta_log" / "_last_checkpoint").read_bytes())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def log_commits(table_dir: Path) -> tuple[int, dict[int, Path]]:
    """``(last checkpoint version or -1, {version: commit file})`` of the commits a reader
    replays: those after the newest checkpoint named by ``_last_checkpoint``."""
    log = table_dir / "_delta_log"
    cp = last_checkpoint(table_dir)
    commits: dict[int, Path] = {}
    with os.scandir(log) as it:
        for e in it:
            v = _commit_version(e.name)
            if v is not None and v > cp:
                commits[v] = Path(e.path)
    return cp, dict(sorted(commits.items()))


def commit_problem(path: Path) -> str | None:
    """Why a Delta commit file cannot be trusted (empty, truncated, not JSON), or None."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        return f"unreadable commit: {e.strerror or e}"
    if not raw.strip():
        return "empty commit (0 bytes): the rows it added are not in the table"
    for i, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except ValueError as e:
            return f"unreadable commit (line {i}: {e}); the table cannot be opened"
    return None


def _file_problem(path: Path, size: int | None) -> str | None:
    """Cheap checks of one data file: present, the size the log recorded, Parquet magic
    at both ends (what a truncated, overwritten or zeroed file fails)."""
    try:  # raw fd + pread: ~3x cheaper than a Python file object, and connect runs this per file
        fd = os.open(path, os.O_RDONLY)
        try:
            got = os.fstat(fd).st_size
            if size is not None and got != size:
                return f"size {got} bytes, the log says {size}"
            if got < 12:
                return "not a Parquet file (too short)"
            head, tail = os.pread(fd, 4, 0), os.pread(fd, 4, got - 4)
        finally:
            os.close(fd)
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return f"unreadable: {e.strerror or e}"
    if head != _PAR1 or tail != _PAR1:
        return "not a Parquet file (no PAR1 magic)"
    return None


def data_dir() -> Path:
    """``$LAB_DATA`` (default ``./data``): where the lake and journals live."""
    return Path(os.environ.get("LAB_DATA", "data")).expanduser()


def _lease_hours(lake: Lake, table: str) -> int | None:
    """Retention that keeps the versions leased by running jobs (see :class:`lab.distributed.lease`)."""
    from lab.distributed import lease_hours

    return lease_hours(lake, table)


#: Seconds between a maintainer's full vacuums of a table (its first pass is one). A lite vacuum (every
#: pass) removes only the files the log's remove actions name; a file written and never committed - a
#: process killed between writing a data file and its commit, a compaction's upload lost with its
#: maintainer - is named by no log entry, and only a full vacuum (a listing of the table's folder)
#: finds it. ``_``-prefixed folders (the tail, ``_delta_log``) are never touched.
FULL_VACUUM_EVERY = 3600.0
#: The least age (hours) of a file a full vacuum removes, whatever the grace: a file no commit names
#: yet may be one a live writer is about to commit (a bulk import writes its files, then commits).
FULL_VACUUM_MIN_HOURS = 1


def vacuum(lake: Lake, table: str, t: DeltaTable, retention_hours: int) -> int:
    """Vacuum ``table`` (the files compaction removed more than ``retention_hours`` ago); also a full
    vacuum (files no commit names, older than ``max(retention_hours, FULL_VACUUM_MIN_HOURS)``) the
    first time this ``lake`` object vacuums ``table`` and every :data:`FULL_VACUUM_EVERY` s after.
    Returns the files removed. A full vacuum also removes what the lite one would, so the lite one
    runs beside it only when the grace is shorter than the full vacuum's least age."""
    done = lake.__dict__.setdefault("_full_vacuums", {})
    now = time.monotonic()
    full = table not in done or now - done[table] >= FULL_VACUUM_EVERY
    n = 0
    if not full or retention_hours < FULL_VACUUM_MIN_HOURS:
        n += len(t.vacuum(retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False))
    if full:
        n += len(t.vacuum(retention_hours=max(retention_hours, FULL_VACUUM_MIN_HOURS), dry_run=False,
                          enforce_retention_duration=False, full=True))
        done[table] = now
    return n


def retune_log(t: DeltaTable) -> DeltaTable:
    """Give a table written by an older version the current log settings (:data:`_TABLE_CONFIG`):
    one metadata commit, once; returns the table's latest snapshot."""
    conf = t.metadata().configuration
    want = {k: v for k, v in _TABLE_CONFIG.items() if conf.get(k) != v}
    if not want:
        return t
    try:
        t.alter.set_table_properties(want)
    except _dl.DeltaError:  # another maintainer did it first
        pass
    t.update_incremental()
    return t


def default_lake() -> Lake:
    """``$LAB_LAKE`` (a directory or ``s3://bucket/prefix``), else ``$LAB_DATA/lake``."""
    return Lake()


#: Batches of at least this many rows are written by Polars' (multi-threaded) Parquet writer and
#: committed as one add action; smaller ones go through delta-rs' writer (one call, lower latency).
BULK_ROWS = 100_000
#: Row groups of a ``polars_writer=True`` append (a recorder's tail commit, a backfill) hold about
#: this many bytes of rows at most. Polars encodes a whole row group in memory: one 128k-row group
#: of 30 s of raw messages (~3 MiB of text) took ~6 MiB more resident memory for the moment of
#: the commit, the largest spike of a recorder's RSS; groups of ~512 KiB take ~1 MiB. Compaction
#: rewrites these files into full-size groups (:data:`_WRITER_PROPS`).
SMALL_GROUP_BYTES = 512 * 2**10


def _ms_text(us: int, up: bool) -> str:
    """A µs epoch time as Delta stats text (ms precision, as delta-rs writes): floored for a
    minimum, raised to the next ms for a maximum, so file pruning never skips a matching row."""
    ms = -(-us // 1000) if up else us // 1000
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def file_stats(df: pl.DataFrame) -> str:
    """Delta ``add`` stats of ``df``: numRecords, min/max (numbers, times, short strings), nullCount.

    An ``Enum`` column (a string column a bulk writer dictionary-encodes) whose categories
    are sorted gets the min/max of its values from its codes, without comparing strings.

    >>> import json
    >>> s = json.loads(file_stats(pl.DataFrame({"x": [2.0, float("nan"), 1.0], "s": ["b", None, "a"]})))
    >>> s["numRecords"], s["minValues"], s["maxValues"], s["nullCount"]
    (3, {'x': 1.0, 's': 'a'}, {'x': 2.0, 's': 'b'}, {'x': 0, 's': 1})
    >>> e = pl.DataFrame({"side": ["bid", "bid"]}, schema={"side": pl.Enum(["ask", "bid"])})
    >>> s = json.loads(file_stats(e))
    >>> s["minValues"], s["maxValues"]
    ({'side': 'bid'}, {'side': 'bid'})
    """
    exprs: list[pl.Expr] = []
    for name, dtype in df.schema.items():
        c = pl.col(name)
        if dtype.is_float():
            c = c.filter(c.is_finite())
        elif isinstance(dtype, pl.Datetime):
            c = c.dt.cast_time_unit("us").dt.epoch("us")
        elif isinstance(dtype, pl.Enum) and dtype.categories.is_sorted():
            c = c.to_physical()  # codes order as the (sorted) values: no string comparisons
        elif not (dtype.is_integer() or dtype == pl.String()):
            continue
        exprs += [c.min().alias(f"min:{name}"), c.max().alias(f"max:{name}")]
    row = df.select(exprs).row(0, named=True) if exprs else {}
    return _stats_json(df.schema, row, df.null_count().row(0, named=True), df.height)


def _stats_json(schema: pl.Schema, row: dict[str, Any], nulls: dict[str, Any], rows: int) -> str:
    """:func:`file_stats`' text from the aggregates: ``row`` holds ``min:<col>``/``max:<col>``
    (times as epoch µs; Enum columns as codes), ``nulls`` the null count per column."""
    mins: dict[str, object] = {}
    maxs: dict[str, object] = {}
    for name, dtype in schema.items():
        lo, hi = row.get(f"min:{name}"), row.get(f"max:{name}")
        if lo is None or hi is None:
            continue
        if isinstance(dtype, pl.Datetime):
            lo, hi = _ms_text(lo, False), _ms_text(hi, True)
        elif isinstance(dtype, pl.Enum):  # codes back to their values: then checked as any string
            lo, hi = dtype.categories[lo], dtype.categories[hi]
        if isinstance(lo, str) and (len(lo) > 32 or len(hi) > 32 or not (lo + hi).isascii()):
            continue  # Delta truncates long strings; leaving them out keeps pruning exact
        mins[name], maxs[name] = lo, hi
    return json.dumps({"numRecords": rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls},
                      separators=(",", ":"))


_as_datetime = to_utc


def _footer_problem(path: Path, num_records: int | None) -> str | None:
    """The Parquet footer parses and holds the row count the log recorded."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        md = pq.read_metadata(path)
    except (OSError, ValueError, pa.ArrowException) as e:
        return f"unreadable Parquet footer: {str(e).splitlines()[0][:200]}"
    if num_records is not None and md.num_rows != num_records:
        return f"holds {md.num_rows} rows, the log says {num_records}"
    return None


def _schema_damage(table: str, t: DeltaTable) -> list[Damage]:
    """The table's Delta schema against :mod:`lab.schema` (names, order-free, and dtypes)."""
    import pyarrow as pa  # not at module level: the recorder writes without loading pyarrow (~40 MiB)

    got = pl.DataFrame(pa.schema(t.schema().to_arrow()).empty_table()).schema
    spec = table_spec(table)
    want = pl.Schema({c: d for c, d in spec.columns.items()
                      if c not in spec.optional or c in got})  # an optional column may be absent
    out = []
    for c, d in want.items():
        if c not in got:
            out.append(Damage(table, "_delta_log", f"schema: column {c!r} missing", "schema"))
        elif got[c] != d:
            out.append(Damage(table, "_delta_log", f"schema: column {c!r} is {got[c]}, expected {d}",
                              "schema"))
    for c in got:
        if c not in want:
            out.append(Damage(table, "_delta_log", f"schema: unexpected column {c!r}", "schema"))
    return out


# -- compaction policy (Lake.maintain) ------------------------------------
#: Most Parquet bytes one merge reads (it decompresses ~3-10x): bounds the work, the spill to
#: disk and so the longest pause of one maintenance pass; files this big or bigger are never
#: merged again (see :func:`plan_tiered`).
MERGE_INPUT_MAX = 64 * 2**20
#: "tiers" (:func:`plan_tiered`) or "binpack" (the former policy, :func:`_plan_binpack`: every file
#: under ``target_size`` re-merged at each pass). A private switch so that
#: bench/bench_maintain_tiers.py and tests/foundation/test_lake_tiers.py can measure the old cost.
_POLICY = "tiers"
#: DuckDB's memory limit for one merge: past it the sort spills to ``<lake>/.staging``, so a
#: maintenance pass's memory stays flat whatever it merges. Measured, merging 17 / 68 MiB of
#: book_updates Parquet (55 / 216 MiB in memory): peak RSS 470 / 1,218 MiB reading, sorting and
#: writing with Polars + delta-rs (the former way); 287 / 297 MiB this way (~100 of it the
#: libraries), 1.0 / 3.9 CPU-s where Polars took 1.1 / 2.9.
MERGE_MEMORY = "128MB"  # a number of MB
#: Most uncompressed bytes in one row group of a merged file. DuckDB holds a whole row group in
#: memory to write it, and one per thread to read it: raw_messages' 128k-row groups were 34 MiB
#: each (272 bytes a row), and every merge of them failed within :data:`MERGE_MEMORY` ("Out of
#: Memory Error") from 25 minutes into a recording, with the pass, so the table was never compacted
#: or checkpointed again. Narrow tables keep 128k-row groups (:data:`_GROUP_ROWS`).
MERGE_GROUP_BYTES = 8 * 2**20


def _tier(rows: int, fan_in: int) -> int:
    """The size tier of a file of ``rows`` rows: ``floor(log_fan_in(rows))``, in integers.

    >>> [_tier(r, 8) for r in (0, 1, 7, 8, 63, 64, 511, 512)]
    [0, 0, 0, 1, 1, 2, 2, 3]
    """
    t, r = 0, max(rows, 1)
    while r >= fan_in:
        r //= fan_in
        t += 1
    return t


def plan_tiered(files: list[tuple[int, int]], fan_in: int, max_bytes: int) -> list[list[int]]:
    """Which files to merge: lists of consecutive indices into ``files`` = ``(rows, bytes)`` in
    commit order (oldest first). Each list becomes one file.

    A file's tier is ``floor(log_fan_in(rows))``. For each tier ``t``, highest first, take the
    windows of consecutive files of tier ``t`` or less not planned yet; in each, merge the
    longest pieces of at most ``max_bytes`` of input whose rows reach the tier above their
    biggest file's (``fan_in ** (top + 1)``): ``fan_in`` files of one tier always do, and
    smaller files between them go along. So each time a row is rewritten, the file holding it
    moves up at least one tier: no row is rewritten more than ``log_fan_in(rows of the table)``
    times, and fewer than ``fan_in`` files of a tier wait between merges. Files of ``max_bytes``
    or more are never merged. Consecutive files only, so a merged file covers one stretch of
    the table's commits (a query over recent times opens few files) and takes their place in
    the order.

    >>> plan_tiered([(1000, 1)] * 8 + [(10, 1)] * 3, 8, 100)  # 8 of tier 3, three small ones along
    [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]
    >>> plan_tiered([(9000, 1)] + [(1000, 1)] * 3 + [(100, 1)] * 8, 8, 100)  # 3,800 rows < 8 ** 4: not yet
    [[4, 5, 6, 7, 8, 9, 10, 11]]
    >>> plan_tiered([(800, 1), (1100, 1), (900, 1)], 2, 100)  # 2,800 rows reach tier 11 (>= 2,048)
    [[0, 1, 2]]
    >>> plan_tiered([(1000, 30)] * 8, 8, 100)  # 8 of them would read 240 bytes: over max_bytes
    []
    """
    n = len(files)
    tiers = [_tier(r, fan_in) if b < max_bytes else -1 for r, b in files]  # -1: never merged
    taken = [False] * n
    merges: list[list[int]] = []
    for t in sorted({x for x in tiers if x >= 0}, reverse=True):
        i = 0
        while i < n:
            if taken[i] or not 0 <= tiers[i] <= t:
                i += 1
                continue
            j = i
            while j < n and not taken[j] and 0 <= tiers[j] <= t:
                j += 1
            s = i
            while s < j:  # the longest piece from s within max_bytes; if it is short of rows, from s + 1
                e, size, rows, top = s, 0, 0, 0
                while e < j and size + files[e][1] <= max_bytes:
                    size, rows, top = size + files[e][1], rows + files[e][0], max(top, tiers[e])
                    e += 1
                if e - s >= 2 and rows >= fan_in ** (top + 1):
                    merges.append(list(range(s, e)))
                    taken[s:e] = [True] * (e - s)
                    s = e
                else:
                    s += 1
            i = j
    return sorted(merges)


def _sql_name(c: str) -> str:
    return '"' + c.replace('"', '""') + '"'


def _merge_sorted(files: list[Path], out: Path, columns: list[str], spec_columns: dict[str, pl.DataType],
                  tcol: str, spill: Path) -> str:
    """Write the rows of ``files`` to the Parquet file ``out``, stably sorted by ``tcol`` (rows
    with equal times keep the order of ``files`` and their order within each); return its Delta
    stats (:func:`file_stats`' format).

    DuckDB sorts within :data:`MERGE_MEMORY` and spills the rest to ``spill``. A file lacking
    one of ``columns`` (older than an optional column) gives nulls there; a column none of them
    has is left out, as a reader expects of such files. Same layout as the table's other files
    (zstd level 1, the row groups of :data:`_WRITER_PROPS`), except that a row group holds at most
    :data:`MERGE_GROUP_BYTES` (by the inputs' bytes per row). Two threads, or one when an input
    row group is big; a merge out of memory is tried again with one thread, then with two and
    four times :data:`MERGE_MEMORY`, before it fails.
    """
    import duckdb
    import pyarrow.parquet as pq

    names = [str(f) for f in files]
    metas = [pq.read_metadata(f) for f in files]
    have = set().union(*(m.schema.to_arrow_schema().names for m in metas))
    cols = [c for c in columns if c in have]
    groups = [m.row_group(i).total_byte_size for m in metas for i in range(m.num_row_groups)]
    row_bytes = max(sum(groups) / max(sum(m.num_rows for m in metas), 1), 1.0)
    most = _props("_WRITER_PROPS").max_row_group_size or _GROUP_ROWS
    group_rows = int(min(most, max(min(2048, most), MERGE_GROUP_BYTES // row_bytes)))
    # a reading thread holds one input row group: files written before MERGE_GROUP_BYTES (or by
    # another writer) may have bigger ones, read by one thread
    threads = 1 if max(groups, default=0) > 2 * MERGE_GROUP_BYTES else 2
    spill.mkdir(parents=True, exist_ok=True)
    mb = int(MERGE_MEMORY.removesuffix("MB"))
    # DuckDB's sort does not spill everything: rows of ~1 KB (a venue's full depth messages) ran out
    # of 128 MB whatever the threads or row groups. One thread, then twice and four times the
    # limit: a pass's memory grows only for the merge that needs it, and the merge is done.
    tries = [(threads, mb), *([(1, mb)] if threads > 1 else []), (1, 2 * mb), (1, 4 * mb)]
    for k, (n, limit) in enumerate(tries):
        try:
            return _merge_with(duckdb.connect(config={"memory_limit": f"{limit}MB", "threads": n,
                                                      "temp_directory": str(spill)}),
                               names, out, cols, spec_columns, tcol, group_rows)
        except duckdb.OutOfMemoryException:
            out.unlink(missing_ok=True)  # half a file, if any: written again
            if k == len(tries) - 1:
                raise
    raise AssertionError("unreachable")


def _merge_with(con, names: list[str], out: Path, cols: list[str], spec_columns: dict[str, pl.DataType],
                tcol: str, group_rows: int) -> str:
    """:func:`_merge_sorted`'s work on the DuckDB connection ``con`` (closed on return)."""
    from lab.sql import duckdb_path

    try:
        # read_parquet globs its paths (a lake under `run*1` read `run01`'s files too): escaped;
        # its `filename` column names the real file, found in the unescaped list
        src = "read_parquet($paths, filename = true, file_row_number = true, union_by_name = true)"
        target = str(out).replace("'", "''")
        con.execute(f"COPY (SELECT {', '.join(map(_sql_name, cols))} FROM {src} "
                    f"ORDER BY {_sql_name(tcol)} NULLS FIRST, list_position($files, filename), file_row_number) "
                    f"TO '{target}' (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, "
                    f"ROW_GROUP_SIZE {group_rows})",
                    {"paths": [duckdb_path(n) for n in names], "files": names})
        aggs = ["count(*)"]
        keys = ["\0rows"]
        for c in cols:  # the aggregates file_stats takes, in SQL
            q, dtype = _sql_name(c), spec_columns.get(c)
            aggs.append(f"count(*) - count({q})")
            keys.append(f"null:{c}")
            if dtype is None:
                continue
            if dtype.is_float():
                lo, hi = f"min({q}) FILTER (WHERE isfinite({q}))", f"max({q}) FILTER (WHERE isfinite({q}))"
            elif isinstance(dtype, pl.Datetime):
                lo, hi = f"epoch_us(min({q}))", f"epoch_us(max({q}))"
            elif dtype.is_integer() or dtype == pl.String():
                lo, hi = f"min({q})", f"max({q})"
            else:
                continue
            aggs += [lo, hi]
            keys += [f"min:{c}", f"max:{c}"]
        row = dict(zip(keys, con.execute(f"SELECT {', '.join(aggs)} FROM read_parquet($f)",
                                         {"f": duckdb_path(out)}).fetchall()[0]))
    finally:
        con.close()
    schema = pl.Schema({c: spec_columns[c] for c in cols if c in spec_columns})
    return _stats_json(schema, row, {c: row[f"null:{c}"] for c in cols}, int(row["\0rows"]))


def _rows_of(path: Path) -> int:
    """Rows of a Parquet file, from its footer (for an add action logged without stats)."""
    import pyarrow.parquet as pq

    return pq.read_metadata(path).num_rows


def _plan_binpack(files: list[tuple[int, int]], target_size: int) -> list[list[int]]:
    """The former policy (``_POLICY = "binpack"``): every file under ``target_size``, in commit
    order, bin-packed up to ``target_size`` bytes; each bin of two or more files is merged. The
    table's compacted history is read and rewritten at every pass until it reaches
    ``target_size``: O(passes) rewrites per row.

    >>> _plan_binpack([(100, 50), (1, 10), (1, 10), (1, 200)], 64)
    [[0, 1]]
    """
    bins: list[list[int]] = []
    cur: list[int] = []
    cur_size = 0
    for i, (_, size) in enumerate(files):
        if size >= target_size:
            continue
        if cur and cur_size + size > target_size:
            bins.append(cur)
            cur, cur_size = [], 0
        cur.append(i)
        cur_size += size
    bins.append(cur)
    return [b for b in bins if len(b) >= 2]


WRITER_REOPEN_EVERY = 250  # commits per table before a writer re-opens its DeltaTable (bounded memory)
WRITER_REOPEN_AFTER = 600.0  # or seconds since it opened it (a tail commits each table every 30 s)


def scan_filtered(
    table: str,
    source: str | os.PathLike[str] | DeltaTable | None,
    *,
    venue: str | Iterable[str] | None = None,
    symbol: str | Iterable[str] | None = None,
    start: dt.datetime | dt.date | str | None = None,
    end: dt.datetime | dt.date | str | None = None,
    tail: bool = True,
) -> pl.LazyFrame:
    """``pl.scan_delta(source)`` (an empty typed frame for ``None``) with the
    filters of :meth:`Lake.scan`: ``start`` inclusive, ``end`` exclusive on the
    table's time column, naive times as UTC; a str venue/symbol matches one
    value, an iterable any of them. Callers holding an open DeltaTable (the
    dashboards) pass it to skip re-reading the log.

    ``tail`` (local tables): add the table's tail files not committed in this
    snapshot (:mod:`lab.tail`: rows a recorder wrote in the last seconds). Pass
    ``False`` for a pinned older version.
    """
    spec = table_spec(table)
    if source is None:
        lf = pl.LazyFrame(schema=spec.schema)
    else:
        t = source if isinstance(source, _dl.DeltaTable) else None
        if t is None and tail and "://" not in str(source):
            t = _dl.DeltaTable(str(source))
        local = local_dir(t) if t is not None else None
        if local is not None and t is not None and _encoded(t):
            lf = _scan_snapshot(t, spec)
        else:
            lf = pl.scan_delta(t if t is not None else str(source))
        local = local if tail else None
        if local is not None:
            from lab.tail import uncommitted

            files = uncommitted(local, t)
            if files:  # file by file: a tail may straddle a new optional column (trades' `source`)
                lf = pl.concat([lf, *(pl.scan_parquet(f, glob=False) for f in files)], how="diagonal_relaxed")
    t0, t1 = _as_datetime(start), _as_datetime(end)
    preds: list[pl.Expr] = []
    tc = pl.col(spec.time_column)
    if t0 is not None:
        preds.append(tc >= t0)
    if t1 is not None:
        preds.append(tc < t1)
    for col, val in (("venue", venue), ("symbol", symbol)):
        if val is None or col not in spec.columns:
            continue
        preds.append(pl.col(col) == val if isinstance(val, str) else pl.col(col).is_in(list(val)))
    return lf.filter(*preds) if preds else lf


def snapshot_files(t: DeltaTable) -> list[str]:
    """The data files of snapshot ``t``, as paths a reader opens: delta-rs percent-encodes a local
    table's file URIs (``my%20lake``, ``what%3F``); these are the real names."""
    from urllib.parse import unquote

    return [unquote(f) for f in t.file_uris()]


def _encoded(t: DeltaTable) -> bool:
    """A local table whose folder name delta-rs percent-encodes (a space, ``?``, ``{``...)."""
    from urllib.parse import unquote

    uri = t.table_uri
    return unquote(uri) != uri


def _scan_snapshot(t: DeltaTable, spec: TableSpec) -> pl.LazyFrame:
    """A snapshot's files through ``pl.scan_parquet`` (its columns, the table's types).

    ``pl.scan_delta`` opens delta-rs' percent-encoded file paths literally, so it cannot read
    a lake under a folder such as ``my lake`` (pola-rs/polars#20944); the decoded paths can.
    Our tables are append-and-compact only (no deletion vectors, no column mapping, no
    partitions), so the file list is the whole snapshot. Row groups are pruned by the files'
    own statistics."""
    names = [f.name for f in t.schema().fields]
    schema = pl.Schema({c: spec.columns[c] for c in names if c in spec.columns})
    files = snapshot_files(t)
    if not files:
        return pl.LazyFrame(schema=schema)
    return pl.scan_parquet(files, glob=False, schema=schema, missing_columns="insert")


def local_dir(t: DeltaTable) -> str | None:
    """The folder of a table on the local file system (None for an object store)."""
    from urllib.parse import unquote

    uri = t.table_uri
    if uri.startswith("file://"):  # percent-encoded (`my%20lake`, `what%3F`): the folder's real name
        return unquote(uri[len("file://"):])
    return None if "://" in uri else uri


class Lake:
    """A directory of Delta tables, ``<root>/<table>``.

    >>> import tempfile, polars as pl, datetime as dt
    >>> lake = Lake(tempfile.mkdtemp())
    >>> t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    >>> _ = lake.append("feed_events", pl.DataFrame({"ts_local": [t], "venue": ["binance"],
    ...     "symbol": ["BTC-USDT"], "kind": ["gap"], "detail": ["U=5 expected 4"]}))
    >>> lake.scan("feed_events").select("kind").collect().item()
    'gap'
    """

    remote = False  # tables on object storage (lab.objectstore.ObjectLake)

    def __new__(cls, root: str | os.PathLike[str] | None = None) -> Lake:
        # an s3:// root (or $LAB_LAKE) is the object-store lake: lab.objectstore.ObjectLake
        r = root if root is not None else os.environ.get("LAB_LAKE")
        if cls is Lake and isinstance(r, str) and r.lower().startswith(("s3://", "s3a://")):
            from lab.objectstore import ObjectLake

            return super().__new__(ObjectLake)
        return super().__new__(cls)

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        env = os.environ.get("LAB_LAKE")
        self.root = Path(root) if root is not None else Path(env) if env else data_dir() / "lake"
        # One DeltaTable per table, reused across appends: delta-rs then
        # updates its snapshot incrementally instead of re-reading the log
        # (measured: p50 54 -> 14 ms per 1,000-row commit).
        self._writers: dict[str, DeltaTable] = {}
        self._table_cols: dict[str, set[str]] = {}  # column names per table (optional columns come and go)

    def __repr__(self) -> str:
        return f"Lake({str(self.root)!r})"

    # -- layout ---------------------------------------------------------
    def path(self, table: str) -> Path:
        table_spec(table)
        return self.root / table

    def exists(self, table: str) -> bool:
        return (self.path(table) / "_delta_log").is_dir()

    def tables(self) -> list[str]:
        """Canonical tables that have at least one commit."""
        return [t for t in TABLES if self.exists(t)]

    def _ensure(self, table: str) -> None:
        if self.exists(table):
            return
        spec = table_spec(table)
        # a Polars schema exports Arrow itself (__arrow_c_schema__): the same Delta schema as
        # through pyarrow, and the recorder never loads pyarrow
        schema = pl.Schema({c: d for c, d in spec.columns.items() if c not in spec.optional})
        for attempt in range(20):
            try:
                # no retry: delta-rs retries a CREATE that lost the race for version 0 as version 1,
                # a second CREATE replacing the winner's metadata (a new table id) and taking a version
                # another writer's append expected; the loser falls to the branch below instead
                _dl.DeltaTable.create(self.path(table), schema, mode="ignore", configuration=_TABLE_CONFIG,
                                  commit_properties=_props("_CREATE_ONCE"))
                return
            except (_dl.CommitFailedError, _dl.DeltaError, OSError):
                if self.exists(table) and self._loadable(table):
                    return
                time.sleep(0.02 * (attempt + 1))
        raise LakeError(f"could not create table {table!r} at {self.path(table)}")

    def inspect(self, table: str, *, deep: bool = False) -> tuple[DeltaTable | None, list[Damage]]:
        """Open ``table`` and check it; return the table (``None`` if it cannot be
        opened or does not exist) and everything found wrong.

        The quick checks (run by :func:`lab.connect` on every table) cost a
        directory listing, one ``stat`` and two 4-byte reads per data file: every
        commit a reader replays is non-empty and the log opens (an unreadable
        commit is named); every file the snapshot references is present, has the
        size the log recorded and Parquet magic at both ends. ``deep=True`` (``lab
        doctor``) also parses every replayed commit, reads each file's footer,
        compares its row count with the log's and the table's schema with
        :mod:`lab.schema`.
        """
        if not self.exists(table):
            return None, []
        root = self.path(table)
        found: list[Damage] = []
        try:
            _, commits = log_commits(root)
        except OSError as e:
            return None, [Damage(table, "_delta_log", f"unreadable log directory: {e}", "log")]
        for v, f in commits.items():
            if deep:
                why = commit_problem(f)
            else:
                try:
                    why = None if f.stat().st_size else commit_problem(f)
                except OSError as e:
                    why = f"unreadable commit: {e}"
            if why:
                found.append(Damage(table, f"_delta_log/{f.name}", why, "log"))
        try:
            t = _dl.DeltaTable(root)
        except (_dl.DeltaError, OSError, _dl.TableNotFoundError) as e:
            if not any(d.kind == "log" and "unreadable" in d.problem for d in found):
                bad = [(v, w) for v, f in commits.items() if (w := commit_problem(f))]
                for v, why in bad:
                    d = Damage(table, f"_delta_log/{commits[v].name}", why, "log")
                    if d not in found:
                        found.append(d)
                if not bad:
                    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    found.append(Damage(table, "_delta_log", f"log unreadable: {first[:300]}", "log"))
            return None, found
        acts = pl.DataFrame(t.get_add_actions(flatten=True))
        cols = ["path", "size_bytes", "num_records"]
        rows = acts.select(cols).rows() if acts.height else []
        for rel, size, nrec in rows:
            why = _file_problem(root / rel, size)
            if why is None and deep:
                why = _footer_problem(root / rel, nrec)
            if why:
                found.append(Damage(table, rel, why, "file", nrec))
        if deep:
            found.extend(_schema_damage(table, t))
        return t, found

    def _loadable(self, table: str) -> bool:
        try:
            _dl.DeltaTable(self.path(table))
            return True
        except (_dl.TableNotFoundError, _dl.DeltaError, OSError):
            return False

    # -- writing --------------------------------------------------------
    def append(self, table: str, data: pl.DataFrame | pa.Table, *, txn: tuple[str, int] | None = None,
               polars_writer: bool = False) -> int:
        """Append one batch atomically; return the new table version.

        ``txn`` = ``(app_id, version)`` records a Delta application transaction in the same
        commit (:mod:`lab.tail` marks which of its files a commit holds that way).

        Batches of :data:`BULK_ROWS` or more, and every batch with ``polars_writer=True``, are
        written by Polars and added with their Delta stats (:meth:`_append_bulk`); smaller ones
        by delta-rs. The recorder's tail commits ask for Polars: a process that never runs
        delta-rs' write engine keeps ~20 MiB less of its code resident (measured on a recorder
        of 5 venues x 3 symbols: 141 vs 161 MiB RSS), for ~1-3 ms more CPU per commit.

        The batch must carry exactly the table's columns with its dtypes
        (see :mod:`lab.schema`); otherwise :class:`SchemaError` names the
        bad column and nothing is written. Concurrent appends from several
        processes are safe: Delta retries the commit.
        """
        df = data if isinstance(data, pl.DataFrame) else pl.from_arrow(data)
        if not isinstance(df, pl.DataFrame):
            raise SchemaError(f"{table}: expected a table, got {type(data).__name__}")
        spec = table_spec(table)
        want = [(c, d) for c, d in spec.columns.items() if c not in spec.optional or c in df.columns]
        if list(df.schema.items()) != want:  # recorder frames are already canonical: skip the check
            df = conform(table, df, fill_optional=False)
        if df.height == 0:
            return self.version(table)
        self._ensure(table)
        props = None if txn is None else _dl.CommitProperties(app_transactions=[_dl.Transaction(*txn)])
        if polars_writer:
            return self._append_bulk(table, self._align(table, df), props, group_bytes=SMALL_GROUP_BYTES)
        if df.height >= BULK_ROWS or "[" in str(self.root):
            # delta-rs 1.6's write_deltalake panics (a BaseException, past `except Exception`)
            # on a table under a folder named with `[` ("Invalid object store url"); its
            # transaction API, which _append_bulk commits through, works there
            return self._append_bulk(table, self._align(table, df), props)
        last: Exception | None = None
        for attempt in range(10):
            try:
                # the frame itself goes through the Arrow C stream: no pyarrow copy (to_arrow()
                # turned every string column into a new large_string buffer)
                arrow = self._align(table, df)
                t = self._writers.get(table)
                if t is None:
                    self._refuse_damaged_log(table)
                    t = self._writers[table] = _dl.DeltaTable(self.path(table))
                _dl.write_deltalake(t, arrow, mode="append", writer_properties=_props("_WRITER_PROPS"),
                                post_commithook_properties=self._append_hooks(), commit_properties=props)
                v = t.version()
                self._checkpoint_if_behind(table, t)
                self._aged(table)
                return v
            except (_dl.CommitFailedError, _dl.DeltaError) as e:  # rare: too many concurrent commits
                last = e
                self._writers.pop(table, None)
                self.__dict__.get("_table_cols", {}).pop(table, None)  # another process may have added a column
                self._refuse_damaged_log(table)
                time.sleep(0.01 * (attempt + 1))
        raise LakeError(f"{table}: append failed after retries: {last}")

    def _append_hooks(self) -> PostCommitHookProperties:
        """Post-commit hooks of an append: on disk, no checkpoint (:meth:`_checkpoint_if_behind`
        decides); on object storage, delta-rs' own every ``checkpointInterval`` commits."""
        return _props("_WRITE_HOOKS") if self.remote else _props("_APPEND_HOOKS")

    def _checkpoint_if_behind(self, table: str, t: DeltaTable) -> None:
        """After an append that reached a multiple of ``checkpointInterval`` (100): write a
        checkpoint unless one is at most that many commits old. ``Lake.maintain`` (``lab
        maintain``, a recorder's own upkeep) checkpoints every pass, so a maintained lake's
        writers never do; an unmaintained one still gets one every 100 commits, as before."""
        v = t.version()
        if self.remote or v <= 0 or v % CHECKPOINT_EVERY:
            return
        if v - last_checkpoint(Path(self.path(table))) >= CHECKPOINT_EVERY:
            try:
                t.create_checkpoint()
            except _dl.DeltaError as e:  # the commit stands; the next interval or pass retries
                log.warning("%s: checkpoint at version %d failed: %s", table, v, str(e).splitlines()[0][:300])

    def _aged(self, table: str) -> None:
        """Count a commit of this writer; after :data:`WRITER_REOPEN_EVERY` of them, drop the
        writer's DeltaTable so the next append opens it afresh (from the newest checkpoint).

        delta-rs' incremental snapshot keeps growing with every commit it applies (measured:
        ~50 MiB per 1,000 small commits of one table, 338 -> 876 MiB over a 30-minute soak);
        a fresh open reads one checkpoint plus < 100 commits (``checkpointInterval``). A recorder
        committing its tail every 30 s makes 250 commits in two hours, while the snapshot also
        applies the maintainer's commits: it is also re-opened :data:`WRITER_REOPEN_AFTER`
        seconds after it was opened (a few ms of CPU every 10 minutes per table).
        """
        n = self.__dict__.setdefault("_commits", {})
        since = self.__dict__.setdefault("_opened_at", {})
        now = time.monotonic()
        n[table] = n.get(table, 0) + 1
        if n[table] >= WRITER_REOPEN_EVERY or now - since.setdefault(table, now) >= WRITER_REOPEN_AFTER:
            n[table] = 0
            since.pop(table, None)
            self._writers.pop(table, None)

    def _opened(self, table: str) -> DeltaTable:
        """The latest snapshot of a table that must exist (appends create it first)."""
        t = self.delta(table)
        if t is None:
            raise LakeError(f"lake table {table!r} does not exist in {self.root}")
        return t

    def _align(self, table: str, df: pl.DataFrame) -> pl.DataFrame:
        """Match ``df`` to the table's optional columns (e.g. trades' ``source``): a table gains
        an optional column when a batch first carries one (old rows read it as null); a batch
        without a column the table has gets nulls. Tables never given one keep their schema."""
        spec = table_spec(table)
        opt = [c for c in spec.columns if c in spec.optional]
        if not opt:
            return df
        cache = self.__dict__.setdefault("_table_cols", {})  # subclasses (ObjectLake) have their own __init__
        have = cache.get(table)
        if have is None:
            have = cache[table] = set(self._opened(table).schema().to_arrow().names)
        new = [c for c in opt if c in df.columns and c not in have]
        if new:
            from deltalake.schema import Field

            arrow = spec.schema.to_arrow()
            try:
                self._opened(table).alter.add_columns([Field.from_arrow(arrow.field(c)) for c in new])
            except _dl.DeltaError:  # another writer added them first
                pass
            self._writers.pop(table, None)
            have = cache[table] = set(self._opened(table).schema().to_arrow().names)
        fill = [pl.lit(None, spec.columns[c]).alias(c) for c in opt if c in have and c not in df.columns]
        if fill:
            df = df.with_columns(fill)
        return df.select([c for c in spec.columns if c in df.columns])

    def _append_bulk(self, table: str, df: pl.DataFrame, props: CommitProperties | None = None,
                     group_bytes: int | None = None) -> int:
        """One large batch: Polars writes the Parquet file (all cores), one Delta commit adds it.

        The file has the same layout as delta-rs writes (zstd level 1, 128k-row groups,
        column statistics) and its add action carries Delta stats, so readers prune it
        exactly as any other file. ``group_bytes`` bounds a row group's size in memory
        instead (at least 1,024 rows): see :data:`SMALL_GROUP_BYTES`. A failed commit leaves
        an unreferenced file that vacuum removes; no row is ever visible twice or half.
        """
        rows = _GROUP_ROWS
        if group_bytes is not None and df.height:
            rows = min(rows, max(1024, df.height * group_bytes // max(int(df.estimated_size()), 1)))
        path = self.new_file(table)
        df.write_parquet(path, compression="zstd", compression_level=1, row_group_size=rows, statistics=True)
        return self.commit_files(table, [(path, file_stats(df))], props)

    def new_file(self, table: str, codec: str = "zstd") -> Path:
        """A fresh data-file path in ``table``'s directory (the table is created if needed), for
        a caller that writes Parquet itself (compressed with ``codec``, named in the file name as
        delta-rs does) and then adds it with :meth:`commit_files`."""
        import uuid

        self._ensure(table)
        return self.path(table) / f"part-00000-{uuid.uuid4()}-c000{'' if codec == 'none' else '.' + codec}.parquet"

    def commit_files(self, table: str, files: list[tuple[Path, str]],
                     props: CommitProperties | None = None) -> int:
        """Add Parquet files already written in ``table``'s directory, each with its Delta stats
        (:func:`file_stats`), in ONE commit; return the new version.

        The files must hold exactly the table's columns and types (the caller checks, as
        :meth:`append` does). Readers see all of them or none: a failed commit leaves
        unreferenced files that vacuum removes.
        """
        from deltalake.transaction import AddAction, RemoveAction

        now = int(time.time() * 1000)
        adds: list[AddAction | RemoveAction] = [AddAction(p.name, p.stat().st_size, {}, now, True, stats) for p, stats in files]
        last: Exception | None = None
        for attempt in range(10):
            try:
                t = self._writers.get(table)
                if t is None:
                    self._refuse_damaged_log(table)
                    t = self._writers[table] = _dl.DeltaTable(self.path(table))
                else:
                    t.update_incremental()
                t.create_write_transaction(adds, mode="append", schema=t.schema(),
                                           post_commithook_properties=self._append_hooks(), commit_properties=props)
                t.update_incremental()
                v = t.version()
                self._checkpoint_if_behind(table, t)
                self._aged(table)
                return v
            except (_dl.CommitFailedError, _dl.DeltaError) as e:
                last = e
                self._writers.pop(table, None)
                self._refuse_damaged_log(table)
                time.sleep(0.01 * (attempt + 1))
        raise LakeError(f"{table}: append failed after retries: {last}")

    def _refuse_damaged_log(self, table: str) -> None:
        """Raise :class:`DamagedTableError` if ``table``'s log is damaged.

        Checked when a writer first opens a table and after a failed commit:
        appending after an empty commit would bury its loss under newer commits,
        and an unreadable commit makes every append fail with a raw Rust error.
        """
        _, damage = self.inspect(table)
        log = [d for d in damage if d.kind == "log"]
        if log:
            raise DamagedTableError(
                f"cannot append to lake table {table!r}: {log[0].file}: {log[0].problem}; "
                "run `lab doctor --repair`", log)

    def version(self, table: str) -> int:
        t = self.delta(table)
        return -1 if t is None else t.version()

    def _open_or_explain(self, table: str) -> DeltaTable:
        """``DeltaTable(path)``; a log that cannot be read raises
        :class:`DamagedTableError` naming the damaged commit instead of a Rust error."""
        try:
            return _dl.DeltaTable(self.path(table))
        except _dl.DeltaError as e:
            _, damage = self.inspect(table)
            if not damage:
                raise
            raise DamagedTableError(f"lake table {table!r} is damaged: {damage[0].file}: {damage[0].problem}; "
                                    "run `lab doctor`", damage) from e

    # -- reading --------------------------------------------------------
    def delta(self, table: str) -> DeltaTable | None:
        """The table's latest snapshot (``None`` if it does not exist yet)."""
        return self._open_or_explain(table) if self.exists(table) else None

    def scan(
        self,
        table: str,
        *,
        venue: str | Iterable[str] | None = None,
        symbol: str | Iterable[str] | None = None,
        start: dt.datetime | dt.date | str | None = None,
        end: dt.datetime | dt.date | str | None = None,
    ) -> pl.LazyFrame:
        """Lazy scan of ``table`` with venue/symbol/time filters pushed down.

        ``start`` is inclusive and ``end`` exclusive, on the table's time
        column; naive datetimes are taken as UTC. Time filters prune files
        and row groups by their min/max statistics. The table's log is read here,
        so a damaged one raises :class:`DamagedTableError` naming it at once rather
        than a raw engine error at ``collect()``.
        """
        src = self.delta(table)
        return scan_filtered(table, src, venue=venue, symbol=symbol, start=start, end=end)

    def scan_files(self, table: str) -> pl.LazyFrame:
        """``table``'s rows - its Delta snapshot's files and its tail (:mod:`lab.tail`) - through
        one ``pl.scan_parquet``, not ``pl.scan_delta``: a read for a process that must stay
        small. Through ``pl.scan_delta`` delta-rs loads pyarrow when it is installed (~15 MiB
        resident in a recorder that otherwise never needs it). Row groups are pruned by the
        files' own statistics; a file lacking an optional column reads it as null. An empty
        typed frame when the table does not exist."""
        from lab.tail import uncommitted

        spec = table_spec(table)
        t = self.delta(table)
        files = [*snapshot_files(t), *uncommitted(self.path(table), t)] if t is not None else []
        if not files:
            return pl.LazyFrame(schema=spec.columns)
        return pl.scan_parquet(files, glob=False, schema=pl.Schema(spec.columns), missing_columns="insert")

    def read(self, table: str, **filters) -> pl.DataFrame:
        return self.scan(table, **filters).collect()

    # -- upkeep ---------------------------------------------------------
    @contextlib.contextmanager
    def _compaction_lock(self, name: str) -> Iterator[bool]:
        """An exclusive, non-blocking lock per table for compaction, across processes.

        A compaction commit removes the small files and adds the merged one in a
        Delta ``WRITE``; delta-rs checks such a commit against concurrent appends
        but not against a concurrent remove of the same files, so two maintainers
        (``lab maintain`` and a recorder's own upkeep, or two ``lab maintain``)
        that merged the same files would both commit and every row of them would be
        in the table twice (seen in a soak: raw_messages and book_updates doubled).
        Yields False when another process holds it: that round skips the table.
        """
        import fcntl

        d = self.root / ".staging"
        d.mkdir(parents=True, exist_ok=True)
        with open(d / f"{name}.compact.lock", "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # The steps of a compaction that depend on where the table lives; the object-store lake
    # (lab.objectstore.ObjectLake) overrides them, and _compact_sorted is shared by both.
    def _compaction_stage(self) -> Path:
        """Local folder for merge work (inputs, spill, the merged file before it is placed):
        ``<lake>/.staging``, on the table's file system, so placing the file is a rename."""
        return self.root / ".staging"

    def _compaction_rows(self, name: str, path: str) -> int:
        """Rows of data file ``path`` (relative to the table) whose add action has no stats."""
        return _rows_of(self.path(name) / path)

    def _compaction_inputs(self, name: str, paths: list[str], stage: Path) -> list[Path]:
        """Local paths DuckDB reads the files to merge from: the table's own files here."""
        root = self.path(name)
        return [root / p for p in paths]

    def _compaction_place(self, name: str, merged: Path, fname: str) -> None:
        """Move the merged file into the table as ``fname`` (not referenced until committed)."""
        os.replace(merged, self.path(name) / fname)

    def _compaction_unplace(self, name: str, fname: str) -> None:
        """Remove a placed file whose commit failed (no snapshot references it)."""
        (self.path(name) / fname).unlink(missing_ok=True)

    def _compaction_held(self, name: str) -> bool:
        """Whether this process still holds the table's compaction lock (checked before each
        commit). A local ``flock`` lasts as long as the process: always."""
        return True

    def _compact_sorted(self, name: str, t: DeltaTable, target_size: int,
                        min_files: int = 2) -> dict[str, int | str]:
        """Merge runs of small files into files sorted by the table's time column.

        Which files: :func:`plan_tiered` with a fan-in of ``min_files`` (at least 2) over the
        table's files in commit order, no merge reading more than ``min(target_size,``
        :data:`MERGE_INPUT_MAX```)`` bytes; files of ``target_size`` or more are never touched.

        delta-rs' ``optimize.compact`` interleaves the rows of the files it
        merges (delta-rs issue #4724), so a compacted file's row groups each span
        the whole merged period and a query over the last minutes can skip none
        of them. Here each run of files is stably sorted by time (ties keep arrival
        order) into one file in the staging folder (:meth:`_compaction_stage`) by
        :func:`_merge_sorted` (DuckDB, within :data:`MERGE_MEMORY`), placed into the table
        (a rename on disk, an upload on object storage), and swapped in with one commit of
        add + remove actions with ``dataChange=false``, as compaction does. The new
        file's ``modificationTime`` is its newest input's, so it keeps their place in
        the commit order the next pass plans with. A commit that fails (a concurrent
        compaction won) or finds its inputs removed meanwhile leaves the placed file
        unreferenced and deletes it; a concurrent append is never lost (Delta retries
        our commit after it). The caller holds the table's compaction lock.
        """
        import shutil
        import uuid

        import pyarrow as pa
        from deltalake.transaction import AddAction, RemoveAction

        spec = table_spec(name)
        tcol = spec.time_column
        acts = pl.DataFrame(t.get_add_actions(flatten=True))  # Arrow PyCapsule table
        # commit order; the files one commit added (a bulk write) by their first time
        keys = ["modification_time", *([f"min.{tcol}"] if f"min.{tcol}" in acts.columns else []), "path"]
        files = acts.sort(keys).select("path", "size_bytes", "modification_time", "num_records").rows()
        shape = [(self._compaction_rows(name, p) if rows is None else rows, size) for p, size, _, rows in files]
        plan = (_plan_binpack(shape, target_size) if _POLICY == "binpack"
                else plan_tiered(shape, max(min_files, 2), min(target_size, MERGE_INPUT_MAX)))
        added = removed = conflicts = 0
        last_conflict: str | None = None
        cols = pa.schema(t.schema().to_arrow()).names  # files older than an added optional column lack it
        for run in plan:
            b = [files[i] for i in run]
            stage = self._compaction_stage() / f"{name}-{uuid.uuid4().hex}"
            stage.mkdir(parents=True)
            fname = f"part-00000-{uuid.uuid4()}-c000.zstd.parquet"
            placed = False
            try:
                inputs = self._compaction_inputs(name, [p for p, *_ in b], stage)
                stats = _merge_sorted(inputs, stage / fname, cols, spec.columns, spec.time_column, stage / "spill")
                size = (stage / fname).stat().st_size
                self._compaction_place(name, stage / fname, fname)
                placed = True
                newest = max(m for _, _, m, _ in b)
                if not self._compaction_held(name):  # the lock's lease lapsed: another may compact now
                    conflicts += 1
                    last_conflict = "the compaction lock was lost (its lease expired)"
                    break
                # files another writer removed meanwhile (one without the lock: an older version,
                # another host) must not be merged twice
                t.update_incremental()
                live = set(pl.DataFrame(t.get_add_actions(flatten=True))["path"].to_list())
                if not all(p in live for p, *_ in b):
                    conflicts += 1
                    last_conflict = "files of this bin were removed by another writer meanwhile"
                    continue
                now_ms = int(time.time() * 1000)
                removes = [RemoveAction(p, False, now_ms, sz, {}) for p, sz, *_ in b]
                t.create_write_transaction([AddAction(fname, size, {}, newest, False, stats), *removes],
                                           mode="append", schema=t.schema(), commit_properties=_props("_COMPACT_COMMIT"),
                                           post_commithook_properties=_props("_WRITE_HOOKS"))
                placed = False  # committed: it belongs to the table now
                added += 1
                removed += len(removes)
            except (_dl.CommitFailedError, _dl.DeltaError) as e:  # e.g. a concurrent compaction won
                conflicts += 1
                last_conflict = f"{type(e).__name__}: {e}"[:500]
                t = self._compaction_reopen(name)
            finally:
                if placed:  # never committed: not part of any snapshot
                    self._compaction_unplace(name, fname)
                shutil.rmtree(stage, ignore_errors=True)
        out: dict[str, int | str] = {"numFilesAdded": added, "numFilesRemoved": removed}
        if last_conflict is not None:  # the keys appear only when a commit lost a race
            out["conflicts"] = conflicts
            out["last_conflict"] = last_conflict
        return out

    def _compaction_reopen(self, name: str) -> DeltaTable:
        """The table's latest snapshot after a failed compaction commit."""
        return _dl.DeltaTable(self.path(name))

    def maintain(
        self,
        table: str | None = None,
        *,
        grace: dt.timedelta = dt.timedelta(hours=1),
        target_size: int = 128 * 1024 * 1024,
        min_files: int = 8,
    ) -> dict[str, dict]:
        """Compact small files, checkpoint the log and vacuum unreferenced files.

        Compaction is size-tiered (:func:`plan_tiered`), so a table recorded all day costs
        each pass little: a file's tier is ``floor(log_min_files(rows))``, and consecutive
        files (in commit order) whose rows reach the tier above their biggest one's - e.g.
        ``min_files`` files of one tier - are merged into one time-sorted file. Each row is
        rewritten at most ``log_min_files(rows of the table)`` times (the former policy re-read
        and rewrote the whole compacted history at every pass), and fewer than ``min_files``
        files per tier wait between merges: ``min_files`` trades rewriting (fewer rewrites
        when larger) against files a query opens (more when larger). Default 8; at least 2.
        No merge reads more than ``min(target_size, MERGE_INPUT_MAX)`` (64 MiB) of Parquet,
        and one merge sorts within ``MERGE_MEMORY`` (spilling to ``<lake>/.staging`` past it);
        files of ``target_size`` or more are never rewritten. A table with fewer than
        ``min_files`` files is not compacted.

        Files removed by compaction stay on disk for ``grace`` (rounded up to
        whole hours by Delta; ``grace=0`` removes at once and is only safe
        with no reader running) so a query that started before compaction
        still finds every file it planned to read. Files no commit ever named (a writer
        killed before its commit) go after ``grace`` too, at the hourly full vacuum
        (:func:`vacuum`).

        A table whose compaction fails is still checkpointed and vacuumed, its entry's
        ``"compacted"`` being ``{"failed": "<why>"}``; the other tables are maintained as usual.

        A damaged table (:meth:`inspect`) is skipped, its entry ``{"damaged": [...]}``
        naming what is wrong, and the others are maintained: compacting around a
        missing file or vacuuming a table whose log is partly unreadable could
        lose more than the damage did (``lab doctor --repair`` first).
        """
        out: dict[str, dict] = {}
        from lab.tail import settle

        try:  # a killed recorder's tail files: committed before compaction (lab.tail)
            settled = settle(self, [table] if table else None)
        except Exception as e:  # noqa: BLE001 - compaction goes on; the next pass retries
            log.warning("committing tail files left by a stopped recorder "
                                                  "failed: %s", str(e).splitlines()[0][:300])
            settled = {}
        for name in [table] if table else self.tables():
            t, damage = self.inspect(name)
            if damage:
                out[name] = {"damaged": [str(d) for d in damage]}
                continue
            if t is None:
                continue
            info: dict = {"version_before": t.version()}
            nfiles = len(t.file_uris())
            if nfiles >= min_files:
                with self._compaction_lock(name) as locked:
                    if locked:
                        t = _dl.DeltaTable(self.path(name))  # the snapshot after any compaction just done
                        try:
                            info["compacted"] = self._compact_sorted(name, t, target_size, min_files)
                        except Exception as e:  # noqa: BLE001 - the checkpoint and vacuum below still run
                            # a table whose merge fails (out of memory, a full disk) must still be
                            # checkpointed: without, every writer's commit replays a longer log
                            why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
                            log.warning("%s: compaction failed, the next pass retries: %s", name, why)
                            info["compacted"] = {"failed": why}
                    else:
                        info["compacted"] = {"skipped": "another process is compacting this table"}
                t = _dl.DeltaTable(self.path(name))
            t = retune_log(t)
            t.create_checkpoint()
            held = _lease_hours(self, name)  # a running lab.distributed job reads an older version
            if held is None:
                t.cleanup_metadata()
            hours = max(int(-(-grace.total_seconds() // 3600)), held or 0)
            info["vacuumed"] = vacuum(self, name, t, hours)
            info["files"] = len(_dl.DeltaTable(self.path(name)).file_uris())
            if name in settled:
                info["tail"] = settled[name]
            out[name] = info
        return out
