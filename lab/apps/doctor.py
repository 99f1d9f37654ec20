"""``lab doctor``: check every lake table, and with ``--repair`` fix the damaged ones.

Checks (see :mod:`lab.doctor`): the log's commits parse and the table opens;
every file the snapshot references is present, has the recorded size, Parquet
magic and a footer holding the recorded row count (``--full``: every row
decodes); the schema is the one in :mod:`lab.schema`. Prints one block per
table and exits 1 if anything is wrong. ``--repair`` fixes what it can by new
Delta commits, lists every file and row count lost or recovered, moves what it
sets aside into the quarantine directory, then checks again: exit 0 only if
every table is healthy afterwards.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import msgspec

from lab.doctor import RepairReport, check, default_quarantine, repair
from lab.errors import ConfigError
from lab.lake import Lake, data_dir
from lab.schema import TABLES

HELP = "check every lake table (log, files, schema); --repair fixes damaged ones"
WRITES_DATA = lambda a: a.repair and a.lake is None  # noqa: E731  (--repair rewrites $LAB_DATA/lake)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lake", default=None, help="lake directory (default $LAB_DATA/lake)")
    p.add_argument("--table", action="append", default=None,
                   help="check only this table (repeatable; default: every table)")
    p.add_argument("--full", action="store_true",
                   help="also decode every row of every file (slow on a big lake)")
    p.add_argument("--repair", action="store_true",
                   help="repair damaged tables by new commits; copies of what is set aside go to "
                        "the quarantine directory")
    p.add_argument("--quarantine", default=None,
                   help="where --repair moves what it sets aside (default: <lake>/../quarantine/<UTC time>,"
                        " i.e. $LAB_DATA/quarantine/<ts> for the default lake)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead")


def _print_check(lake: Lake, found: dict) -> None:
    print(f"lake {lake.root}:")
    if not found:
        print("  (no tables)")
    for name, damage in found.items():
        if not damage:
            print(f"  {name:18s} OK")
            continue
        print(f"  {name:18s} DAMAGED ({len(damage)} problem(s))")
        for d in damage:
            rows = "" if d.rows is None else f" [{d.rows} rows]"
            print(f"      {d.kind:6s} {d.file}: {d.problem}{rows}")


def _print_repair(r: RepairReport) -> None:
    print(f"  {r.table}: version {r.version_before if r.version_before is not None else '?'} -> "
          f"{r.version_after if r.version_after is not None else '?'}")
    for s in r.steps:
        print(f"      - {s}")
    if r.lost_files:
        lost = ", ".join(f"{f} ({n if n is not None else '?'} rows)" for f, n in r.lost_files)
        print(f"      LOST: {r.rows_lost} rows{' (and an unknown number)' if r.rows_unknown else ''} in "
              f"{len(r.lost_files)} file(s): {lost}")
    elif r.rows_unknown:
        print("      LOST: an unknown number of rows (see the steps above)")
    else:
        print(f"      nothing lost ({r.rows_recovered} rows recovered)")
    if r.quarantined:
        print(f"      set aside (copies) in {Path(r.quarantined[0]).parent.parent}: "
              f"{len(r.quarantined)} file(s)")
    for s in r.remaining:
        print(f"      STILL DAMAGED: {s}")


def run(args: argparse.Namespace) -> int:
    lake = Lake(args.lake) if args.lake else Lake(data_dir() / "lake")
    if not lake.root.is_dir():
        raise ConfigError(f"no lake at {lake.root} (set --lake or $LAB_DATA)")
    tables = args.table
    for t in tables or []:
        if t not in TABLES:
            raise ConfigError(f"unknown table {t!r}; known: {', '.join(TABLES)}")
        if not lake.exists(t):
            raise ConfigError(f"table {t!r} does not exist in {lake.root}")
    found = check(lake, tables, full=args.full)
    damaged = [t for t, d in found.items() if d]
    reports: list[RepairReport] = []
    if args.repair and damaged:
        qdir = Path(args.quarantine) if args.quarantine else default_quarantine(lake)
        reports = [repair(lake, t, qdir, full=args.full) for t in damaged]
        after = check(lake, tables, full=args.full)
    else:
        after = found
    still = [t for t, d in after.items() if d]
    if args.json:
        out = {"lake": str(lake.root),
               "tables": {t: [msgspec.to_builtins(d) for d in ds] for t, ds in found.items()},
               "repairs": [msgspec.to_builtins(r) for r in reports],
               "damaged_after": {t: [str(d) for d in after[t]] for t in still}}
        print(json.dumps(out, indent=1))
        return 1 if still else 0
    _print_check(lake, found)
    if reports:
        print("\nrepair:")
        for r in reports:
            _print_repair(r)
        print()
        _print_check(lake, after)
    if still:
        hint = "" if args.repair else "; `lab doctor --repair` to fix"
        print(f"\n{len(still)} damaged table(s): {', '.join(still)}{hint}")
        return 1
    print("\nall tables healthy")
    return 0
