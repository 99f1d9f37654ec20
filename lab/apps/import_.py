"""``lab import tardis PATH...``: bring tardis.dev CSV files into the lake.

Reads tardis.dev's documented CSV types (``trades``, ``incremental_book_L2``,
``book_snapshot_25``, ``book_snapshot_5``, ``quotes``; gzip or plain; files or
folders) into the canonical tables (see :mod:`lab.tardis`). Re-importing a
file already imported (same bytes) adds nothing. Example::

    lab import tardis ~/tardis/binance_incremental_book_L2_2024-03-01_BTCUSDT.csv.gz
    lab import tardis ~/tardis/            # every *.csv / *.csv.gz below
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from concurrent.futures import ThreadPoolExecutor

import polars as pl

from lab.errors import ConfigError
from lab.lake import Lake, default_lake

HELP = "import vendor data (tardis.dev CSV) into the lake"
WRITES_DATA = lambda a: a.lake is None  # noqa: E731  (appends to $LAB_DATA/lake; see lab.cli)

__all__ = ["add_arguments", "run", "import_tardis"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Import tardis.dev CSV files (trades, incremental_book_L2, book_snapshot_25/5, quotes; "
                     ".csv or .csv.gz; files or folders) into the lake's canonical tables. A file already "
                     "imported (same SHA-256) is skipped; a malformed row stops that file with its line number "
                     "and nothing of it is written.")
    p.add_argument("source", choices=["tardis"], help="the vendor format")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders to import")
    p.add_argument("--lake", default=None, help="lake directory (default: $LAB_DATA/lake)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def import_tardis(lake: Lake, paths: list[str], *, progress: bool = True) -> list[dict]:
    """Import every tardis file under ``paths`` into ``lake``; one summary dict per file."""
    from tqdm import tqdm

    from lab.tardis import detect_kind, file_digest, files_under, read_file

    files = files_under(paths)
    if not files:
        raise ConfigError(f"no .csv or .csv.gz files in {', '.join(paths)}")
    done = set()
    if lake.exists("imports"):
        done = set(lake.scan("imports").select("sha256").collect()["sha256"].to_list())
    out = []
    bar = tqdm(files, unit="file", disable=not progress, file=sys.stderr)
    pool = ThreadPoolExecutor(1)  # hashing (GIL released) overlaps the parse
    for f in bar:
        bar.set_postfix_str(f.name[-40:])
        kind = detect_kind(f)
        digest_f = pool.submit(file_digest, f)
        if done:
            digest = digest_f.result()
            if digest in done:
                out.append({"path": str(f), "kind": kind, "table": None, "rows": 0, "skipped": True})
                continue
        table, df = read_file(f, kind)
        lake.append(table, df)  # the hash (its own thread) goes on meanwhile: it is only needed for the record
        digest = digest_f.result()
        lake.append("imports", pl.DataFrame({
            "ts": [dt.datetime.now(dt.timezone.utc)], "source": ["tardis"], "path": [str(f.resolve())],
            "sha256": [digest], "kind": [kind], "target": [table], "rows": [df.height]}))
        done.add(digest)
        out.append({"path": str(f), "kind": kind, "table": table, "rows": df.height, "skipped": False})
    pool.shutdown()
    return out


def run(args: argparse.Namespace) -> int:
    lake = Lake(args.lake) if args.lake else default_lake()
    res = import_tardis(lake, args.paths, progress=not args.no_progress)
    for r in res:
        what = "already imported, skipped" if r["skipped"] else f"{r['rows']:,} rows -> {r['table']}"
        print(f"{r['path']}: {r['kind']}: {what}")
    return 0
