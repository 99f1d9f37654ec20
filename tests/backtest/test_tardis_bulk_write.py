"""``lab import tardis`` writes book files' Parquet itself (dictionary codes kept, pyarrow writer):
what readers get back must be exactly the canonical rows, typed as the lake's schema says.

The reference rows are built here with a plain Python loop over the CSV text (times as µs
epochs, names by hand, seq = the number of the run of equal (timestamp, local_timestamp,
is_snapshot)), not by lab.tardis.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

import lab
from lab.cli import main as lab_main
from lab.lake import Lake
from lab.schema import table_spec

HEADER = "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount"
NAMES = {("okex", "BTC-USDT"): ("okx", "BTC-USDT"), ("kraken", "XBT/USD"): ("kraken", "BTC-USD")}


def _book_file(path: Path, rows: int, *, seed: int = 1, bad_line: int | None = None) -> None:
    """A tardis incremental_book_L2 file mixing two markets (so names are looked up per row), with
    a snapshot, runs of rows sharing a message, deletes; ``bad_line`` gets side 'offer'."""
    rng = random.Random(seed)
    out, ts = [HEADER], 1_700_006_400_000_000
    for i in range(rows):
        if rng.random() < 0.6:
            ts += rng.randint(1, 3000)
        ex, sym = ("okex", "BTC-USDT") if rng.random() < 0.7 else ("kraken", "XBT/USD")
        side = "offer" if bad_line == i + 2 else rng.choice(["bid", "ask"])
        snap = "true" if i < 20 else "false"
        px = 100 + rng.randint(-50, 50) * 0.5
        qty = 0 if rng.random() < 0.2 else round(rng.uniform(0.001, 3), 4)
        out.append(f"{ex},{sym},{ts},{ts + 700},{snap},{side},{px},{qty}")
    path.write_text("\n".join(out) + "\n")


def _expected(path: Path) -> pl.DataFrame:
    rows, seq, last = [], -1, None
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            key = (r["timestamp"], r["local_timestamp"], r["is_snapshot"])
            if key != last:
                seq, last = seq + 1, key
            venue, symbol = NAMES[(r["exchange"], r["symbol"])]
            us = dt.timedelta(microseconds=1)
            epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
            rows.append({"ts_exchange": epoch + int(r["timestamp"]) * us,
                         "ts_local": epoch + int(r["local_timestamp"]) * us,
                         "venue": venue, "symbol": symbol, "side": r["side"], "price": float(r["price"]),
                         "qty": float(r["amount"]), "is_snapshot": r["is_snapshot"] == "true", "seq": seq})
    return pl.DataFrame(rows, schema=table_spec("book_updates").schema)


def _import(f: Path, lake: Path) -> int:
    return lab_main(["import", "tardis", str(f), "--lake", str(lake), "--no-progress"])


def test_imported_book_file_reads_back_as_exactly_its_canonical_rows(tmp_path):
    f = tmp_path / "mixed_incremental_book_L2_2023-11-15.csv"
    _book_file(f, 3_000)
    lake = Lake(tmp_path / "lake")

    assert _import(f, lake.root) == 0

    want = _expected(f)
    got = lake.read("book_updates")  # Polars through Delta
    assert got.schema == table_spec("book_updates").schema  # strings are String, not Enum/Categorical
    assert_frame_equal(got, want)
    # DuckDB through the lake's views, and Polars on the bare file, see the same strings
    con = lab.connect(lake.root)
    assert con.sql("select typeof(side), typeof(venue) from book_updates limit 1").fetchall() == [("VARCHAR", "VARCHAR")]
    assert con.sql("select count(*), count(distinct symbol) from book_updates").fetchall() == [(3_000, 2)]
    (data,) = [p for p in lake.path("book_updates").glob("*.parquet")]
    assert_frame_equal(pl.read_parquet(data), want)
    assert pq.ParquetFile(data).metadata.num_row_groups == 1


def test_delta_stats_of_the_written_file_are_the_rows_min_and_max(tmp_path):
    f = tmp_path / "mixed_incremental_book_L2_2023-11-15.csv"
    _book_file(f, 2_000, seed=7)
    lake = Lake(tmp_path / "lake")
    assert _import(f, lake.root) == 0
    want = _expected(f)

    acts = pl.DataFrame(DeltaTable(lake.path("book_updates")).get_add_actions(flatten=True))

    assert acts.height == 1  # one file, one commit
    add = acts.row(0, named=True)
    assert add["num_records"] == want.height
    for c in ("venue", "symbol", "side", "seq", "price"):
        assert (add[f"min.{c}"], add[f"max.{c}"]) == (want[c].min(), want[c].max()), c
        assert add[f"null_count.{c}"] == 0
    # times are kept at ms precision, widened so that pruning never skips a row
    assert add["min.ts_exchange"] <= want["ts_exchange"].min() and add["max.ts_exchange"] >= want["ts_exchange"].max()


def test_bad_side_late_in_the_file_names_its_line_and_commits_no_file(tmp_path, capsys):
    f = tmp_path / "binance_incremental_book_L2_2023-11-15_BTCUSDT.csv"
    _book_file(f, 2_500, bad_line=2_345)
    f.write_text(f.read_text().replace("okex,BTC-USDT", "binance,BTCUSDT").replace("kraken,XBT/USD", "binance,BTCUSDT"))
    lake = tmp_path / "lake"

    assert _import(f, lake) == 2

    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(f) in err and "line 2345" in err and "'offer'" in err
    table = lake / "book_updates"
    assert not table.exists() or not list(table.glob("*.parquet"))  # nothing written, nothing visible
    assert not (lake / "imports").exists()  # and the file is not recorded as imported: a fix re-imports it


def test_a_file_written_in_parallel_parts_is_one_commit_of_exactly_its_rows_in_order(tmp_path, monkeypatch):
    import lab.apps.import_ as imp

    monkeypatch.setattr(imp, "ROWS_PER_PART", 700)
    monkeypatch.setattr(imp, "WRITERS", 3)
    f = tmp_path / "mixed_incremental_book_L2_2023-11-15.csv"
    _book_file(f, 2_500, seed=3)
    lake = Lake(tmp_path / "lake")

    assert _import(f, lake.root) == 0

    t = DeltaTable(lake.path("book_updates"))
    assert len(t.file_uris()) == 3 and t.version() == 1  # three files, added by the one commit after create
    assert_frame_equal(lake.read("book_updates"), _expected(f))


def test_imported_parts_compact_with_later_appends_into_the_same_rows(tmp_path, monkeypatch):
    import lab.apps.import_ as imp

    monkeypatch.setattr(imp, "ROWS_PER_PART", 1_000)
    f = tmp_path / "mixed_incremental_book_L2_2023-11-15.csv"
    _book_file(f, 3_000, seed=5)
    lake = Lake(tmp_path / "lake")
    assert _import(f, lake.root) == 0
    extra = _expected(f).head(5)
    lake.append("book_updates", extra)

    lake.maintain("book_updates", grace=dt.timedelta(0))

    assert lake.inspect("book_updates", deep=True)[1] == []
    got = lake.read("book_updates")
    want = pl.concat([_expected(f), extra])
    assert_frame_equal(got.sort(pl.all()), want.sort(pl.all()))


def test_book_columns_are_stored_required_and_every_reader_gets_the_rows(tmp_path):
    # the writer declares columns without nulls non-nullable (no definition levels to encode):
    # readers must still see the table's rows, next to files delta-rs writes with nullable columns
    f = tmp_path / "mixed_incremental_book_L2_2023-11-15.csv"
    _book_file(f, 2_000, seed=11)
    lake = Lake(tmp_path / "lake")
    assert _import(f, lake.root) == 0
    extra = _expected(f).tail(7)
    lake.append("book_updates", extra)  # a small append: delta-rs' own writer, nullable columns
    want = pl.concat([_expected(f), extra])

    (imported,) = [p for p in lake.path("book_updates").glob("*.parquet") if p.stat().st_size > 10_000]
    schema = pq.ParquetFile(imported).schema
    assert {schema.column(i).max_definition_level for i in range(len(schema))} == {0}  # all REQUIRED
    assert_frame_equal(lake.read("book_updates").sort(pl.all()), want.sort(pl.all()))
    con = lab.connect(lake.root)  # DuckDB's Parquet reader over the snapshot's files
    n_okx = want.filter(pl.col("venue") == "okx").height
    assert con.sql("select count(*) from book_updates where venue = 'okx'").fetchall() == [(n_okx,)]
    t = DeltaTable(lake.path("book_updates"))
    assert t.to_pyarrow_dataset().count_rows() == want.height  # pyarrow, with the Delta schema
    t.optimize.compact()  # delta-rs (DataFusion) reads both kinds of file into one
    t = DeltaTable(lake.path("book_updates"))
    assert len(t.file_uris()) == 1
    assert_frame_equal(pl.from_arrow(t.to_pyarrow_table()).sort(pl.all()), want.sort(pl.all()))


def test_a_quotes_column_with_empty_values_stays_nullable_and_reads_back_nulls(tmp_path):
    f = tmp_path / "binance_quotes_2023-11-15_BTCUSDT.csv"
    f.write_text("exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount\n"
                 "binance,BTCUSDT,100,110,1.5,101.0,99.0,2.0\n"
                 "binance,BTCUSDT,200,210,,,99.5,3.0\n"  # the ask side ran out
                 "binance,BTCUSDT,300,310,0.5,100.5,99.5,1.0\n")
    lake = Lake(tmp_path / "lake")
    assert _import(f, lake.root) == 0

    got = lake.read("quotes")

    us = dt.timedelta(microseconds=1)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    want = pl.DataFrame({"ts_exchange": [epoch + 100 * us, epoch + 200 * us, epoch + 300 * us],
                         "ts_local": [epoch + 110 * us, epoch + 210 * us, epoch + 310 * us],
                         "venue": ["binance"] * 3, "symbol": ["BTC-USDT"] * 3,
                         "bid_px": [99.0, 99.5, 99.5], "bid_qty": [2.0, 3.0, 1.0],
                         "ask_px": [101.0, None, 100.5], "ask_qty": [1.5, None, 0.5]},
                        schema=table_spec("quotes").schema)
    assert_frame_equal(got, want)
    (data,) = lake.path("quotes").glob("*.parquet")
    arrow = pq.read_schema(data)
    assert arrow.field("ask_px").nullable and arrow.field("ask_qty").nullable  # the nulls are kept
    assert not arrow.field("bid_px").nullable  # a column without nulls is REQUIRED
