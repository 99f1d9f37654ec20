"""``lab rebuild --from-journal``: re-parse the raw_messages journal into fresh tables."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lab.lake import Lake, default_lake
from recorders.rebuild import TABLES, rebuild

HELP = "rebuild normalised tables from the raw_messages journal"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Re-parse the raw_messages journal into trades, book_updates, quotes, "
                     "book_snapshots and parse-derived feed_events, reproducing what the recorder wrote.")
    p.add_argument("--from-journal", action="store_true", required=True,
                   help="rebuild from the raw_messages journal (the only source for now)")
    p.add_argument("--lake", help="lake holding the journal (default: $LAB_DATA/lake)")
    p.add_argument("--out", required=True, help="lake directory to write the rebuilt tables into "
                   "(must not already hold them)")
    p.add_argument("--venue", help="only this venue")
    p.add_argument("--symbols", action="append", metavar="VENUE=SYM,SYM",
                   help="symbols a venue was recorded with (default: those found in the lake)")
    p.add_argument("--depth", action="append", metavar="VENUE=N",
                   help="book depth a venue was recorded with (Kraken; default the adapter's)")


def run(args: argparse.Namespace) -> int:
    src = Lake(args.lake) if args.lake else default_lake()
    dst = Lake(args.out)
    if Path(args.out).resolve() == src.root.resolve():
        print("lab rebuild: --out must differ from the source lake", file=sys.stderr)
        return 2
    busy = [t for t in TABLES if dst.exists(t)]
    if busy:
        print(f"lab rebuild: {args.out} already has {busy}; choose an empty --out", file=sys.stderr)
        return 2
    if not src.exists("raw_messages"):
        print(f"lab rebuild: no raw_messages journal in {src.root}", file=sys.stderr)
        return 2
    depths = {k: int(v) for k, v in (d.split("=", 1) for d in args.depth or [])}
    syms = {k: v.split(",") for k, v in (d.split("=", 1) for d in args.symbols or [])}
    counts = rebuild(src, dst, venue=args.venue, symbols=syms or None, depths=depths, progress=True)
    for t, n in counts.items():
        print(f"{t}: {n} rows")
    return 0
