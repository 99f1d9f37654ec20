"""What the recorder process loads: it writes the lake without pyarrow.

pyarrow costs the recorder ~40 MiB of RSS and seconds of start-up on a busy
machine, for nothing it needs: Polars frames go to delta-rs through the Arrow C
stream and table schemas through ``pl.Schema``'s own Arrow export (issue 17:
recorder RSS target <= 150 MiB).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_recorder_writes_every_table_without_loading_pyarrow(tmp_path):
    # Arrange: a child process that imports the recorder and appends a batch of every
    # canonical table through the writer, as a running recorder does.
    code = textwrap.dedent(f"""
        import datetime as dt, sys
        import recorders.runtime  # noqa: F401  (what `lab record` imports)
        from lab.lake import Lake
        from recorders.venues.base import Rows
        from recorders.writer import Writer

        t = int(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).timestamp() * 1e6)
        rows = Rows()
        rows.event(t, "binance", "BTC-USDT", "gap", "a test row")
        lake = Lake({str(tmp_path / 'lake')!r})
        w = Writer(lake)
        w.start()
        w.submit(rows)
        w.close()
        print(w.rows_written, "pyarrow" in sys.modules)
    """)
    # Act
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    # Assert: the rows are in, and pyarrow never came in
    assert out.returncode == 0, out.stderr[-2000:]
    written, loaded = out.stdout.strip().rsplit(" ", 1)
    assert written == "{'feed_events': 1}", out.stdout
    assert loaded == "False", "the recorder loaded pyarrow"


def test_tables_created_without_pyarrow_have_the_canonical_schema(tmp_path):
    # Arrange / Act: tables created through Lake (pl.Schema -> Delta), read back by pyarrow
    import polars as pl
    import pyarrow as pa

    from lab.lake import Lake
    from lab.schema import TABLES, table_spec

    lake = Lake(tmp_path / "lake")
    for table in TABLES:
        lake._ensure(table)
    # Assert: each Delta schema, read independently through pyarrow, is lab.schema's
    for table in TABLES:
        spec = table_spec(table)
        got = pl.DataFrame(pa.schema(lake.delta(table).schema().to_arrow()).empty_table()).schema
        assert got == pl.Schema({c: d for c, d in spec.columns.items() if c not in spec.optional}), table
    assert all(lake.inspect(table)[1] == [] for table in TABLES)  # the lake's own schema check agrees
