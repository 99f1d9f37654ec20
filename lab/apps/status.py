"""``lab status``: health of every running recorder plus lake table counts.

Recorders refresh ``$LAB_DATA/run/recorder-<name>.json`` every second
(:mod:`recorders.runtime`); this command reads them, marks the ones whose
process is gone, and adds row counts and the newest timestamp per lake table.
A damaged table (see ``lab doctor``) is listed with what is wrong, file by file,
and makes the command exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import polars as pl
import psutil

from lab.errors import DataError
from lab.lake import Lake, data_dir, scan_filtered
from lab.recorder import read_status, status_dict
from lab.schema import TABLES

HELP = "recorder health and lake table counts"

__all__ = ["add_arguments", "run", "recorder_statuses", "lake_summary", "tape_holes", "tape_ranges",
           "format_ranges"]

#: ranges of the trade tape printed by the text output (the newest; --json has all)
SHOW_RANGES = 30


def _alive(pid: int) -> bool:
    return pid > 0 and psutil.pid_exists(pid)


def recorder_statuses(run_dir: str | Path | None = None, errors: list[str] | None = None) -> list[dict]:
    """Every recorder status file under ``run_dir`` (default ``$LAB_DATA/run``), decoded as a
    :class:`lab.recorder.RecorderStatus` and returned as a dict with ``alive`` (process
    exists), ``age_s`` (seconds since the last refresh) and ``file`` added. A file that is
    not a status is skipped; its one-line reason goes to ``errors`` when given."""
    d = Path(run_dir) if run_dir else data_dir() / "run"
    out = []
    for p in sorted(d.glob("recorder-*.json")):
        try:
            st = read_status(p)
        except (OSError, DataError) as e:
            if errors is not None:
                errors.append(str(e))
            continue
        s = status_dict(st)
        s["alive"] = _alive(st.pid)
        age = st.age_s()
        s["age_s"] = None if age is None else round(age, 1)
        s["file"] = str(p)
        out.append(s)
    return out


def lake_summary(lake: Lake) -> pl.DataFrame:
    """Rows and newest time per lake table (``table, rows, newest, damage``).

    ``damage`` lists what :meth:`Lake.inspect` found wrong (empty when healthy); a
    damaged table is not read (``rows`` and ``newest`` null), so one bad file
    cannot crash the command or pass a partial count off as the table's.
    """
    rows = []
    for name in lake.tables():
        spec = TABLES[name]
        t, damage = lake.inspect(name)
        if damage or t is None:
            rows.append({"table": name, "damage": [str(d) for d in damage] or ["cannot open"]})
            continue
        try:
            df = (scan_filtered(name, t).select(pl.len().alias("rows"),
                                          pl.col(spec.time_column).max().alias("newest")).collect())
            rows.append({"table": name, "rows": df["rows"][0], "newest": df["newest"][0], "damage": []})
        except Exception as e:  # noqa: BLE001 - a status command reports, never crashes
            rows.append({"table": name, "damage": [f"{name}: read failed: {str(e).splitlines()[0][:300]}"]})
    schema: dict[str, pl.DataType] = {"table": pl.String(), "rows": pl.Int64(),
                                      "newest": pl.Datetime("us", "UTC"), "damage": pl.List(pl.String)}
    return pl.DataFrame([{k: r.get(k, [] if k == "damage" else None) for k in schema} for r in rows],
                        schema=schema)


def tape_holes(lake: Lake) -> pl.DataFrame | None:
    """Per venue and symbol, the backfills of the trade tape and the holes left (:mod:`lab.tape`);
    None when the lake has no readable ``feed_events``."""
    from lab.tape import hole_summary

    if not lake.exists("feed_events"):
        return None
    try:
        return hole_summary(lake.scan("feed_events")).collect()
    except Exception:  # noqa: BLE001 - a status command reports, never crashes
        return None


def tape_ranges(lake: Lake) -> pl.DataFrame | None:
    """Per venue and symbol, the ranges of the trade tape with no live data and why
    (:func:`lab.tape.ranges`); None when the lake has no readable ``feed_events``."""
    from lab.tape import lake_ranges

    if not lake.exists("feed_events"):
        return None
    try:
        return lake_ranges(lake)
    except Exception:  # noqa: BLE001 - a status command reports, never crashes
        return None


def format_ranges(rng: pl.DataFrame, limit: int = SHOW_RANGES) -> str:
    """The tape's holes as text lines, the newest ``limit`` (``lab status``).

    >>> import datetime as dt
    >>> t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    >>> print(format_ranges(pl.DataFrame([{"venue": "okx", "symbol": "BTC-USDT", "start": t,
    ...     "end": t + dt.timedelta(seconds=4), "why": "not recoverable", "trades_missing": 3,
    ...     "trades_recovered": 9, "detail": "d"}])))
    trade tape holes (no live data; lab.tape.ranges):
      okx       BTC-USDT   2026-01-01 00:00:00 -> 00:00:04 (4.0 s)  not recoverable  3 missing, 9 recovered
    """
    if rng.height == 0:
        return "trade tape: no holes (no downtime, disconnect or trade-id gap recorded)"
    lines = ["trade tape holes (no live data; lab.tape.ranges):"]
    newest = rng.sort("start", nulls_last=True).tail(limit).sort("venue", "symbol", "start", nulls_last=True)
    for r in newest.iter_rows(named=True):
        a, b = r["start"], r["end"]
        when = (f"{a:%Y-%m-%d %H:%M:%S} -> " if a else "? -> ") + (
            (f"{b:%H:%M:%S}" if a and b.date() == a.date() else f"{b:%Y-%m-%d %H:%M:%S}") if b else "now")
        dur = f" ({(b - a).total_seconds():.1f} s)" if a and b else ""
        lost = ("missing: not measured" if r["trades_missing"] is None
                else f"{r['trades_missing']} missing, {r['trades_recovered']} recovered")
        lines.append(f"  {r['venue']:9s} {r['symbol']:10s} {when}{dur}  {r['why']}  {lost}")
    if rng.height > limit:
        lines.append(f"  ... {rng.height - limit} older range(s): lab status --json lists them all")
    return "\n".join(lines)


def _fmt_age(v) -> str:
    return "-" if v is None else f"{v:.1f}s"


def format_status(statuses: list[dict]) -> str:
    if not statuses:
        return "no recorders found (start one with `lab record`)"
    lines = []
    for s in statuses:
        fresh = s["age_s"] is not None and s["age_s"] < 5
        state = "running" if s["alive"] and fresh else ("stale" if s["alive"] else "stopped")
        lines.append(f"recorder {s['name']} pid {s['pid']} [{state}] updated {s['age_s']}s ago; "
                     f"queue {s['queue_depth']}/{s['queue_bound']}, lag {_fmt_age(s.get('lag_s'))}, "
                     f"lost rows {s['lost_rows']}, write errors {s['write_errors']}, lake {s['lake']}")
        if s.get("tail_commit_error"):
            lines.append(f"  DELTA COMMITS FAILING: {s['tail_commit_error']}; {s.get('tail_uncommitted', 0)} tail "
                         "files wait (their rows are readable; nothing is lost while the disk holds them)")
        for v, x in s["venues"].items():
            lines.append(f"  {v:9s} {'up' if x['connected'] else 'DOWN':4s} {x['msgs_per_s']:8.1f} msg/s  "
                         f"lag {_fmt_age(x.get('lag_s'))}  "
                         f"gaps {x['gaps']} resyncs {x['resyncs']} checksum {x['checksum_failures']} "
                         f"rejected {x['rejected']} reconnects {x['reconnects']} stale {x['stale']}")
            for sym, y in x["symbols"].items():
                lines.append(f"      {sym:10s} last msg {_fmt_age(y['last_msg_age_s'])} ago, "
                             f"book {'synced' if y['book_synced'] else 'not synced'}")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Show every recorder's health (msgs/s, lag, last message age per venue/symbol, "
                     "gaps, resyncs, reconnects, queue depth, pid) and the lake's row counts and "
                     "newest timestamp per table, and the holes in the trade tape per venue and symbol "
                     "(ranges with no live data and why: down, disconnected, backfilled, not recoverable).")
    p.add_argument("--lake", help="lake directory (default: $LAB_DATA/lake)")
    p.add_argument("--run-dir", help="where recorder status files are (default: $LAB_DATA/run)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead")
    p.add_argument("--no-lake", action="store_true", help="skip the lake table counts")
    p.add_argument("--all", action="store_true", help="include recorders that have stopped")


def run(args: argparse.Namespace) -> int:
    unreadable: list[str] = []
    st = recorder_statuses(args.run_dir, unreadable)
    for msg in unreadable:
        print(f"lab status: skipped {msg}", file=sys.stderr)
    if not args.all:
        st = [s for s in st if s["alive"]]
    lake = Lake(args.lake) if args.lake else Lake(data_dir() / "lake")
    summ = None if args.no_lake else lake_summary(lake)
    events_ok = not args.no_lake and not (summ is not None and any(
        r["damage"] for r in summ.iter_rows(named=True) if r["table"] == "feed_events"))
    tape = tape_holes(lake) if events_ok else None
    rng = tape_ranges(lake) if events_ok else None
    bad = [] if summ is None else [r for r in summ.iter_rows(named=True) if r["damage"]]
    code = 1 if bad else 0
    if args.json:
        out = {"recorders": st}
        if summ is not None:
            out["lake"] = [{**r, "newest": r["newest"].isoformat() if r["newest"] else None}
                           for r in summ.to_dicts()]
        if tape is not None:
            out["trade_holes"] = tape.to_dicts()
        if rng is not None:
            out["tape_ranges"] = [{**r, "start": r["start"].isoformat() if r["start"] else None,
                                   "end": r["end"].isoformat() if r["end"] else None} for r in rng.to_dicts()]
        print(json.dumps(out, indent=1, default=str))
        return code
    print(format_status(st))
    if summ is not None:
        print(f"\nlake {lake.root}:")
        if summ.height == 0:
            print("  (empty)")
        for r in summ.iter_rows(named=True):
            if r["damage"]:
                print(f"  {r['table']:18s} {'DAMAGED':>12}       ({len(r['damage'])} problem(s))")
                for d in r["damage"]:
                    print(f"      {d}")
            else:
                print(f"  {r['table']:18s} {r['rows']:>12} rows  newest {r['newest'] or '-'}")
        if rng is not None:
            print("\n" + format_ranges(rng))
        if tape is not None and tape.height:
            print("\ntrade tape backfills per symbol (after restarts, reconnects, gaps; lab.tape):")
            for r in tape.iter_rows(named=True):
                left = (f"{r['remaining_holes']} hole(s) NOT recoverable, {r['trades_missing']} trade(s) missing"
                        if r["remaining_holes"] else "no hole left")
                print(f"  {r['venue']:9s} {r['symbol']:10s} {r['backfills']} backfill(s), "
                      f"{r['trades_recovered']} trade(s) recovered over REST; {left}")
        if bad:
            print(f"\n{len(bad)} damaged table(s): {', '.join(r['table'] for r in bad)}; "
                  "`lab doctor` for details, `lab doctor --repair` to fix")
    return code
