"""What escaping lake paths for DuckDB's globbing (:func:`lab.sql.duckdb_path`) costs.

1. The common path (no ``*``, ``?``, ``[``): the per-file cost of decoding delta-rs' file URI and
   escaping it, which ``lab.connect()`` pays once per file of a table.
2. A query over ``--files`` one-row Parquet files in a folder named ``plain`` and one named
   ``run*1`` beside ``--siblings`` other folders: an escaped path is still a glob to DuckDB, which
   lists the folder holding the wildcard once per file, at every query that binds the view.

    .venv/bin/python bench/bench_glob_paths.py [--files 300] [--siblings 50]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import timeit
import urllib.parse
from pathlib import Path

import duckdb

from lab.sql import duckdb_path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--siblings", type=int, default=50)
    ap.add_argument("--queries", type=int, default=21)
    args = ap.parse_args()

    p = "/home/user/data/lake/trades/part-00000-2c14507a-f4d9-4ed9-bb95-4d671c18d104-c000.zstd.parquet"
    n = 100_000
    per = timeit.timeit(lambda: duckdb_path(urllib.parse.unquote(p)), number=n) / n
    print(f"decode + duckdb_path, plain path: {per * 1e6:.2f} us per file")

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for i in range(args.siblings):
            (base / f"other{i}").mkdir()
        con = duckdb.connect()
        for name in ["plain", "run*1"]:
            d = base / name / "trades"
            d.mkdir(parents=True)
            files = []
            for i in range(args.files):
                f = str(d / f"part-{i:05d}.parquet")
                con.execute(f"COPY (SELECT {i} AS a) TO '{f}' (FORMAT parquet)")
                files.append(f)
            con.execute("CREATE OR REPLACE VIEW v AS SELECT * FROM read_parquet(["
                        + ", ".join("'" + duckdb_path(f) + "'" for f in files) + "])")
            times = []
            for _ in range(args.queries):
                t0 = time.perf_counter()
                rows, total = con.execute("SELECT count(*), sum(a) FROM v").fetchall()[0]
                times.append(time.perf_counter() - t0)
            assert rows == args.files and total == args.files * (args.files - 1) // 2
            times.sort()
            print(f"folder {name!r:8} {args.files} files, {args.siblings + 1} folders beside it: "
                  f"query p50 {times[len(times) // 2] * 1e3:.1f} ms")
        con.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
