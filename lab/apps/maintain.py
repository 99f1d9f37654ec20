"""``lab maintain``: keep the lake fast while recording goes on."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time

from lab.lake import Lake

HELP = ("commit recorders' tails, compact, checkpoint and vacuum the lake (once or continuously); a recorder "
        "with committer = \"maintainer\" (lab demo's) relies on it for its Delta commits")
WRITES_DATA = lambda a: a.lake is None  # noqa: E731  (compacts $LAB_DATA/lake; see lab.cli)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lake", default=None, help="lake directory (default $LAB_DATA/lake)")
    p.add_argument("--table", default=None, help="one table (default: all)")
    p.add_argument("--every", type=float, default=0.0,
                   help="seconds between passes; 0 runs one pass and exits")
    p.add_argument("--grace-hours", type=float, default=1.0,
                   help="keep files removed by compaction this long so running queries never lose one")
    p.add_argument("--min-files", type=int, default=8,
                   help="compaction fan-in (>= 2): this many files of one size tier merge into one; "
                        "larger rewrites less, smaller leaves fewer files for a query to open")


def _failed(info: dict) -> str | None:
    """Why ``info``'s compaction failed, or None."""
    c = info.get("compacted")
    return c.get("failed") if isinstance(c, dict) else None


def compaction_failures(result: dict[str, dict]) -> list[str]:
    """``"table: why"`` for each table of a :meth:`Lake.maintain` result whose compaction failed."""
    return [f"{name}: {why}" for name, info in result.items() if (why := _failed(info))]


def _report_damage(result: dict[str, dict], said: set[str]) -> None:
    """One line per damaged table, and per table whose compaction failed, the first time it is
    seen (not every pass)."""
    for name, info in result.items():
        if "damaged" in info and name not in said:
            said.add(name)
            more = len(info["damaged"]) - 1
            print(f"lab maintain: skipping damaged table {name}: {info['damaged'][0]}"
                  f"{f' (+{more} more)' if more else ''}; run `lab doctor --repair`", flush=True)
        elif "damaged" not in info:
            said.discard(name)
        why = _failed(info)
        if why and f"{name}/compaction" not in said:
            said.add(f"{name}/compaction")
            print(f"lab maintain: compacting {name} failed (checkpointed and vacuumed anyway; every pass "
                  f"retries): {why}", flush=True)
        elif not why and "compacted" in info:
            said.discard(f"{name}/compaction")


def run_loop(lake: Lake, every: float, grace: dt.timedelta, table: str | None = None,
             stop=lambda: False, min_files: int = 8) -> None:
    said: set[str] = set()
    while not stop():
        t0 = time.monotonic()
        try:
            _report_damage(lake.maintain(table, grace=grace, min_files=min_files), said)
        except Exception as e:  # keep going: maintenance must never kill the lab
            print(f"lab maintain: pass failed: {e}", flush=True)
        while not stop() and time.monotonic() - t0 < every:
            time.sleep(0.2)


def run(args: argparse.Namespace) -> int:
    from lab.errors import ConfigError

    if args.every < 0 or args.every != args.every:
        raise ConfigError(f"--every {args.every:g}: expected seconds between passes > 0, or 0 for one pass")
    if args.grace_hours < 0 or args.grace_hours != args.grace_hours:
        raise ConfigError(f"--grace-hours {args.grace_hours:g}: expected >= 0")
    if args.min_files < 2:
        raise ConfigError(f"--min-files {args.min_files}: expected a fan-in of 2 or more")
    lake = Lake(args.lake) if args.lake else Lake()
    grace = dt.timedelta(hours=args.grace_hours)
    if args.every <= 0:
        result = lake.maintain(args.table, grace=grace, min_files=args.min_files)
        print(json.dumps(result, indent=2, default=str))
        return 1 if any("damaged" in v or _failed(v) for v in result.values()) else 0
    run_loop(lake, args.every, grace, args.table, min_files=args.min_files)
    return 0
