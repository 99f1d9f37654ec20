"""Check and repair lake tables: what ``lab doctor`` runs.

:func:`check` finds what is wrong with each table (:meth:`lab.lake.Lake.inspect`
with ``deep=True``: log commits parse, every referenced file is present, has
the recorded size, Parquet magic, a readable footer holding the recorded row
count, the schema of :mod:`lab.schema`; ``full=True`` also reads every row).

:func:`repair` brings a damaged table back to a readable state with new Delta
commits and never deletes data silently:

1. **Log.** From the first damaged commit (empty or unreadable) on, every
   commit file is moved into the quarantine directory, so the table opens at
   the last good version. What the moved commits did is then redone: the
   readable ones are replayed as one commit (their adds and removes); the data
   files a damaged commit added (named by its readable lines, or, for an empty
   commit, the table's unreferenced files written after the last good commit)
   are read, and their rows that the table does not already hold are appended
   (a new commit with fresh statistics); the original files go to quarantine.
   If every such file is readable, nothing is lost, and the report says so.
2. **Files.** Each referenced data file that is missing, truncated or not
   Parquet is moved into quarantine (if present) and its reference removed by
   delta-rs' own ``DeltaTable.repair`` (an FSCK commit); the report names each
   file and the rows the log says it held.

The report lists every step, each lost file with its rows, the rows recovered
and what was moved to quarantine (``quarantine/<ts>/<table>/``, with a
``repair.json`` of the report, written for every table repaired). Schema mismatches are reported, not "fixed".
Best run with recorders stopped (appends to a damaged log are refused anyway).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import time
from pathlib import Path

import msgspec
import polars as pl
from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import DeltaError
from deltalake.transaction import AddAction, RemoveAction

from lab.lake import Damage, Lake, commit_problem, log_commits
from lab.schema import SchemaError, conform, table_spec

__all__ = ["check", "repair", "RepairReport", "default_quarantine"]

_ADD_PATH = re.compile(rb'"add"\s*:\s*\{\s*"path"\s*:\s*"([^"\\]+)"')


class RepairReport(msgspec.Struct):
    """What :func:`repair` did to one table.

    ``lost_files`` are ``(file, rows or None)`` whose rows are no longer in the
    table (``rows_lost`` sums the known counts; ``rows_unknown`` says some count
    is not known); ``rows_recovered`` were re-added from files a damaged commit
    named; ``quarantined`` are the paths of the copies set aside.
    """

    table: str
    version_before: int | None = None
    version_after: int | None = None
    steps: list[str] = msgspec.field(default_factory=list)
    lost_files: list[tuple[str, int | None]] = msgspec.field(default_factory=list)
    rows_lost: int = 0
    rows_unknown: bool = False
    rows_recovered: int = 0
    quarantined: list[str] = msgspec.field(default_factory=list)
    remaining: list[str] = msgspec.field(default_factory=list)

    @property
    def lossless(self) -> bool:
        return not self.lost_files and not self.rows_unknown

    def lose(self, file: str, rows: int | None) -> None:
        self.lost_files.append((file, rows))
        if rows is None:
            self.rows_unknown = True
        else:
            self.rows_lost += rows


def default_quarantine(lake: Lake) -> Path:
    """``$LAB_DATA/quarantine/<UTC timestamp>`` for the default lake (a lake at
    ``<dir>/lake`` gets ``<dir>/quarantine/<ts>``)."""
    ts = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return lake.root.parent / "quarantine" / ts


def _full_read_problem(path: Path) -> str | None:
    import pyarrow.parquet as pq

    try:
        pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - any decoder failure is the finding
        return f"unreadable data: {str(e).splitlines()[0][:200]}"
    return None


def check(lake: Lake, tables: list[str] | None = None, *, full: bool = False) -> dict[str, list[Damage]]:
    """Everything wrong with each table (``{table: [Damage, ...]}``, empty lists
    for healthy tables); ``full=True`` also decodes every row of every file."""
    out: dict[str, list[Damage]] = {}
    for name in tables or lake.tables():
        t, damage = lake.inspect(name, deep=True)
        if full and t is not None:
            bad = {d.file for d in damage}
            acts = pl.DataFrame(t.get_add_actions(flatten=True))
            for rel, nrec in (acts.select("path", "num_records").rows() if acts.height else []):
                if rel not in bad and (why := _full_read_problem(lake.path(name) / rel)):
                    damage.append(Damage(name, rel, why, "file", nrec))
        out[name] = damage
    return out


def _move(src: Path, qdir: Path, report: RepairReport, sub: str = "") -> None:
    """Copy ``src`` into quarantine (metadata kept), then remove the original."""
    dest_dir = qdir / sub if sub else qdir
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    shutil.copy2(src, dest)
    os.unlink(src)
    report.quarantined.append(str(dest))


def _parse_commit(raw: bytes) -> tuple[list[dict], list[str]]:
    """A commit's readable actions, and the add paths found in its unreadable lines
    (a commit truncated mid-line usually still names the file it added)."""
    actions: list[dict] = []
    salvaged: list[str] = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            actions.append(json.loads(line))
        except ValueError:
            salvaged += [m.decode() for m in _ADD_PATH.findall(line)]
    return actions, salvaged


def _rows_in(add: dict) -> int | None:
    try:
        return int(json.loads(add.get("stats") or "{}")["numRecords"])
    except (ValueError, KeyError, TypeError):
        return None


def _missing_rows(lake: Lake, table: str, df: pl.DataFrame) -> pl.DataFrame:
    """Rows of ``df`` the table does not hold yet (all columns equal, nulls equal),
    looked up only in the time range ``df`` covers."""
    tcol = table_spec(table).time_column
    lo, hi = df[tcol].min(), df[tcol].max()
    have = lake.scan(table)
    if lo is not None and hi is not None:
        have = have.filter(pl.col(tcol).is_between(lo, hi))
    return df.join(have.collect(), on=df.columns, how="anti", nulls_equal=True)


def _recover_file(lake: Lake, table: str, path: Path, rows_hint: int | None, qdir: Path,
                  report: RepairReport, why: str) -> None:
    rel = path.name
    if not path.exists():
        report.steps.append(f"{why}: file {rel} is gone: its rows are lost")
        report.lose(rel, rows_hint)
        return
    try:
        df = conform(table, pl.read_parquet(path, glob=False), fill_optional=False)
    except (SchemaError, OSError, pl.exceptions.PolarsError) as e:
        report.steps.append(f"{why}: file {rel} cannot be read ({str(e).splitlines()[0][:200]}): "
                            "its rows are lost (copy in quarantine)")
        report.lose(rel, rows_hint)
        _move(path, qdir, report, "data")
        return
    new = _missing_rows(lake, table, df)
    if not new.height:  # e.g. the inputs of a compaction, still on disk for readers: leave it
        report.steps.append(f"{why}: {rel}: all its {df.height} rows are already in the table "
                            "(nothing to recover; file left in place)")
        return
    Lake(lake.root).append(table, new)
    dup = df.height - new.height
    report.rows_recovered += new.height
    report.steps.append(f"{why}: re-added {new.height} rows from {rel} by a new commit"
                        + (f" ({dup} already in the table)" if dup else ""))
    _move(path, qdir, report, "data")


def _repair_log(lake: Lake, table: str, qdir: Path, report: RepairReport) -> None:
    root = lake.path(table)
    _, commits = log_commits(root)
    bad = [v for v, f in commits.items() if commit_problem(f)]
    if not bad:
        try:
            DeltaTable(root)
        except DeltaError as e:
            report.steps.append(f"log unreadable and no damaged commit found ({str(e).splitlines()[0][:200]}): "
                                "not repaired")
        return
    k, n = bad[0], max(commits)
    if k == 0:  # k - 1 is the newest checkpoint or a good commit, unless k is the first
        report.steps.append(f"commit {k} is damaged and no earlier version exists: not repaired")
        return
    parsed: dict[int, tuple[list[dict], list[str]]] = {}
    for v in range(k, n + 1):
        f = commits.get(v)
        raw = f.read_bytes() if f is not None else b""
        acts, salvaged = _parse_commit(raw)
        parsed[v] = (acts, salvaged)
    for v in range(n, k - 1, -1):  # newest first: a reader never sees a gap in the log
        if (f := commits.get(v)) is not None:
            _move(f, qdir, report, "_delta_log")
    names = ", ".join(str(v) for v in range(k, n + 1))
    report.steps.append(f"moved commit(s) {names} to quarantine: the table opens at version {k - 1}")
    t = DeltaTable(root)
    acts0 = pl.DataFrame(t.get_add_actions(flatten=True))
    active = set(acts0["path"].to_list()) if acts0.height else set()
    try:  # when the last good commit: orphan files older than that (minus slack) are not its
        prev_ts_ms = int(t.history(1)[0]["timestamp"])
    except (DeltaError, IndexError, KeyError, TypeError, ValueError):
        prev_ts_ms = 0

    adds: dict[str, dict] = {}
    removes: dict[str, dict] = {}
    salvage: dict[str, tuple[int | None, int]] = {}  # path -> (rows, commit)
    need_orphans: list[int] = []
    for v in range(k, n + 1):
        acts, salvaged = parsed[v]
        damaged = v in bad
        found_add = False
        for a in acts:
            if "add" in a:
                found_add = True
                p = a["add"]["path"]
                if damaged:
                    salvage[p] = (_rows_in(a["add"]), v)
                else:
                    adds[p] = a["add"]
                    removes.pop(p, None)
            elif "remove" in a and not damaged:
                p = a["remove"]["path"]
                if p in adds:
                    adds.pop(p)
                elif p in salvage:
                    salvage.pop(p)
                elif p in active:
                    removes[p] = a["remove"]
        for p in salvaged:
            found_add = True
            salvage.setdefault(p, (None, v))
        if damaged and not found_add:
            need_orphans.append(v)
    if adds or removes:
        now_ms = int(time.time() * 1000)
        actions: list[AddAction | RemoveAction] = [
            AddAction(a["path"], int(a["size"]), a.get("partitionValues") or {}, int(a["modificationTime"]),
                      bool(a.get("dataChange", True)), a.get("stats") or "") for a in adds.values()]
        actions += [RemoveAction(r["path"], bool(r.get("dataChange", True)), now_ms, r.get("size"), {})
                    for r in removes.values()]
        t.create_write_transaction(actions, mode="append", schema=t.schema(), commit_properties=CommitProperties(
            custom_metadata={"lab.operation": "doctor-replay", "lab.replayed": names}))
        report.steps.append(f"replayed the readable moved commit(s) as one commit: {len(adds)} file(s) "
                            f"added, {len(removes)} removed")
    if need_orphans:
        known = active | set(adds) | set(removes) | set(salvage)
        since = prev_ts_ms / 1000 - 60
        for entry in sorted(os.scandir(root), key=lambda d: d.name):
            if (entry.is_file() and entry.name.endswith(".parquet") and entry.name not in known
                    and entry.stat().st_mtime >= since):
                salvage[entry.name] = (None, need_orphans[0])
        report.steps.append(f"commit(s) {', '.join(map(str, need_orphans))} named no file: looked for data files "
                            f"no commit references, written after version {k - 1}")
    for p, (rows, v) in salvage.items():
        _recover_file(lake, table, root / p, rows, qdir, report, f"damaged commit {v}")
    if need_orphans and not any(v in need_orphans for _, v in salvage.values()):
        report.steps.append(f"no file found for commit(s) {', '.join(map(str, need_orphans))}: "
                            "the rows they added (count unknown) are lost")
        report.rows_unknown = True


def _repair_files(lake: Lake, table: str, qdir: Path, report: RepairReport, full: bool) -> None:
    root = lake.path(table)
    damage = [d for d in check(lake, [table], full=full)[table] if d.kind == "file"]
    if not damage:
        return
    for d in damage:
        f = root / d.file
        if f.exists():
            _move(f, qdir, report, "data")
        report.lose(d.file, d.rows)
    out = DeltaTable(root).repair(dry_run=False, commit_properties=CommitProperties(
        custom_metadata={"lab.operation": "doctor-fsck"}))
    removed = set(out.get("files_removed") or [])
    want = {d.file for d in damage}
    report.steps.append(f"removed the reference(s) to {len(removed)} damaged file(s) by an FSCK commit: "
                        + ", ".join(f"{d.file} ({d.problem}; {d.rows if d.rows is not None else '?'} rows)"
                                    for d in damage))
    if removed != want:
        report.steps.append(f"FSCK removed {sorted(removed)}, expected {sorted(want)}")


def repair(lake: Lake, table: str, quarantine: Path, *, full: bool = False) -> RepairReport:
    """Bring ``table`` back to a readable state (see the module docstring); returns
    what was done, lost, recovered and set aside. A healthy table is left alone."""
    report = RepairReport(table)
    qdir = Path(quarantine) / table
    try:
        report.version_before = DeltaTable(lake.path(table)).version()
    except DeltaError:
        pass
    _repair_log(lake, table, qdir, report)
    try:
        DeltaTable(lake.path(table))
    except DeltaError as e:
        report.remaining = [f"{table}: log still unreadable: {str(e).splitlines()[0][:200]}"]
        return report
    _repair_files(lake, table, qdir, report, full)
    remaining = check(lake, [table], full=full)[table]
    report.remaining = [str(d) for d in remaining]
    report.version_after = DeltaTable(lake.path(table)).version()
    if report.steps:  # the record of what was done and lost, beside the copies
        qdir.mkdir(parents=True, exist_ok=True)
        (qdir / "repair.json").write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=1))
    return report

