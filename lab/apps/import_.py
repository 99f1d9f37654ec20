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
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl

from lab.errors import ConfigError
from lab.lake import Lake, default_lake
from lab.schema import table_spec

HELP = "import vendor data (tardis.dev CSV) into the lake"
WRITES_DATA = lambda a: a.lake is None  # noqa: E731  (appends to $LAB_DATA/lake; see lab.cli)

__all__ = ["add_arguments", "run", "import_tardis"]

ROWS_PER_PART = 1_000_000  # a book file is split in parts of at least this many rows,
WRITERS = os.cpu_count() or 1  # written by this many threads at once


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

    from lab.tardis import files_under

    files = files_under(paths)
    if not files:
        raise ConfigError(f"no .csv or .csv.gz files in {', '.join(paths)}")
    done = set()
    if lake.exists("imports"):
        done = set(lake.scan("imports").select("sha256").collect()["sha256"].to_list())
    out = []
    bar = tqdm(files, unit="file", disable=not progress, file=sys.stderr)
    pool = ThreadPoolExecutor(1)  # hashing (GIL released) in its own thread
    try:
        for f in bar:
            bar.set_postfix_str(f.name[-40:])
            out.append(_import_one(lake, f, done, pool))
    finally:  # a bad file stops the import: its hash, if still running, finishes unawaited
        pool.shutdown(wait=False, cancel_futures=True)
    return out


def _import_one(lake: Lake, f: Path, done: set[str], pool: ThreadPoolExecutor) -> dict:
    """Import one file (skipped if its digest is in ``done``, which gets it); its summary dict."""
    from lab.tardis import TABLE_OF, detect_kind, file_digest, read_file

    kind = detect_kind(f)
    # hashed during the parse: Polars' CSV reader keeps ~1.5 of 2 cores busy and the hash (one
    # core) fills the rest, so the Parquet parts written after the parse get every core
    digest_f = pool.submit(file_digest, f)
    if done and digest_f.result() in done:  # a file already imported is skipped unread
        return {"path": str(f), "kind": kind, "table": None, "rows": 0, "skipped": True}
    table = TABLE_OF[kind]
    if _writes_files(lake, table):
        table, df = read_file(f, kind, encoded=True)
        _append_encoded(lake, table, df)
    else:
        table, df = read_file(f, kind)
        lake.append(table, df)
    digest = digest_f.result()  # only needed for the record
    lake.append("imports", pl.DataFrame({
        "ts": [dt.datetime.now(dt.timezone.utc)], "source": ["tardis"], "path": [str(f.resolve())],
        "sha256": [digest], "kind": [kind], "target": [table], "rows": [df.height]}))
    done.add(digest)
    return {"path": str(f), "kind": kind, "table": table, "rows": df.height, "skipped": False}


def _writes_files(lake: Lake, table: str) -> bool:
    """Whether the import writes ``table``'s Parquet file itself: a lake on local disk (an object
    store lake writes through delta-rs) and a table without optional columns (those
    :meth:`Lake.append` aligns with the table's current schema)."""
    return isinstance(lake.path(table), Path) and not table_spec(table).optional


def _append_encoded(lake: Lake, table: str, df: pl.DataFrame) -> None:
    """Append a :func:`lab.tardis.read_file` ``encoded=True`` frame as one file in one commit.

    Same guarantees as :meth:`Lake.append`: the frame's columns must be exactly the table's
    (Enum standing for String), and readers see the whole file or nothing.
    """
    from lab.lake import file_stats
    from lab.tardis import decoded, write_parquet

    spec = table_spec(table)
    have = [(c, pl.String() if isinstance(d, pl.Enum) else d) for c, d in df.schema.items()]
    if have != list(spec.columns.items()):  # not expected: let append() name the bad column
        lake.append(table, decoded(df))
        return
    if df.height == 0:
        return
    # pyarrow writes a file on one core: consecutive slices go to their own files, written in
    # parallel, all added by ONE commit (readers see the whole import or none of it)
    n = max(1, min(WRITERS, df.height // ROWS_PER_PART))
    size = -(-df.height // n)
    parts = [(df.slice(i * size, size), lake.new_file(table, "none")) for i in range(n)]  # see write_parquet

    def write(part: tuple[pl.DataFrame, Path]) -> tuple[Path, str]:
        write_parquet(*part)
        return part[1], file_stats(part[0])

    with ThreadPoolExecutor(n) as pool:
        files = list(pool.map(write, parts))
    lake.commit_files(table, files)


def run(args: argparse.Namespace) -> int:
    lake = Lake(args.lake) if args.lake else default_lake()
    res = import_tardis(lake, args.paths, progress=not args.no_progress)
    for r in res:
        what = "already imported, skipped" if r["skipped"] else f"{r['rows']:,} rows -> {r['table']}"
        print(f"{r['path']}: {r['kind']}: {what}")
    return 0
