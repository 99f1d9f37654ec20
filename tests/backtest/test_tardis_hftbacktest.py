"""tardis.dev CSVs -> ``lab import tardis`` -> ``lab export hftbacktest`` equals hftbacktest's own converter.

The reference is hftbacktest's ``hftbacktest.data.utils.tardis.convert`` run on
the same files. The files are written here the way tardis.dev documents them
(gzip CSV, one per data type and day, rows in receive order) and hold what a
real day has: start-of-day snapshots, a mid-day resync snapshot, deletes
(amount 0), a message whose rows cross the book for a moment before it is
whole again, trades with unknown side, receive times that run ahead of the
venue's clock (negative latency) and venue times out of receive order, and a
day boundary.
"""

from __future__ import annotations

import csv
import gzip
import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lab.cli import main as lab_main
from lab.lake import Lake

pytest.importorskip("hftbacktest")

DAY1 = 1_700_006_400_000_000  # 2023-11-15 00:00:00 UTC, in µs
DAY2 = DAY1 + 86_400_000_000
BOOK_HEADER = ["exchange", "symbol", "timestamp", "local_timestamp", "is_snapshot", "side", "price", "amount"]
TRADE_HEADER = ["exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount"]


def _write(path: Path, header: list[str], rows: list[list]) -> Path:
    with gzip.open(path, "wt", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _snapshot(ts: int, local: int, mid: float, rng: random.Random) -> list[list]:
    bids = [["binance", "BTCUSDT", ts, local, "true", "bid", f"{mid - 0.5 - i:.1f}", f"{rng.uniform(0.1, 3):.3f}"]
            for i in range(5)]
    asks = [["binance", "BTCUSDT", ts, local, "true", "ask", f"{mid + 0.5 + i:.1f}", f"{rng.uniform(0.1, 3):.3f}"]
            for i in range(5)]
    return asks + bids  # tardis writes one side after the other


def _day(start: int, seed: int) -> tuple[list[list], list[list]]:
    rng = random.Random(seed)
    book, trades = [], []
    mid = 37000.0
    t = start
    book += _snapshot(t, t + 5_000, mid, rng)
    for i in range(400):
        t += rng.randint(1_000, 200_000)
        local = t + rng.randint(-3_000, 40_000)  # venue clock ahead of ours at times; jitter reorders
        if i == 150:  # a resync: tardis writes a fresh snapshot
            mid += rng.choice([-1.0, 1.0])
            book += _snapshot(t, local, mid, rng)
            continue
        if i == 250:  # one message that crosses the book before its last row makes it whole
            book += [["binance", "BTCUSDT", t, local, "false", "bid", f"{mid + 0.5:.1f}", "0.700"],
                     ["binance", "BTCUSDT", t, local, "false", "ask", f"{mid + 0.5:.1f}", "0"]]
            continue
        side = rng.choice(["bid", "ask"])
        px = mid - 0.5 - rng.randint(0, 6) if side == "bid" else mid + 0.5 + rng.randint(0, 6)
        qty = "0" if rng.random() < 0.2 else f"{rng.uniform(0.01, 4):.3f}"
        n = rng.choice([1, 1, 2])
        for k in range(n):
            book.append(["binance", "BTCUSDT", t, local, "false", side, f"{px - k if side == 'bid' else px + k:.1f}", qty])
        if rng.random() < 0.4:
            tt = t - rng.randint(0, 900)
            trades.append(["binance", "BTCUSDT", tt, tt + rng.randint(-2_000, 30_000), str(seed * 10_000 + i),
                           rng.choice(["buy", "sell", "sell", "unknown"]), f"{mid:.1f}", f"{rng.uniform(0.001, 1):.4f}"])
    book.sort(key=lambda r: r[3])  # tardis files are in receive order (stable: messages keep their rows)
    trades.sort(key=lambda r: r[3])
    return book, trades


@pytest.fixture(scope="module")
def tardis_files(tmp_path_factory) -> dict[str, list[Path]]:
    d = tmp_path_factory.mktemp("tardis")
    b1, t1 = _day(DAY1, 1)
    b2, t2 = _day(DAY2, 2)
    return {
        "trades": [_write(d / "binance_trades_2023-11-15_BTCUSDT.csv.gz", TRADE_HEADER, t1),
                   _write(d / "binance_trades_2023-11-16_BTCUSDT.csv.gz", TRADE_HEADER, t2)],
        "book": [_write(d / "binance_incremental_book_L2_2023-11-15_BTCUSDT.csv.gz", BOOK_HEADER, b1),
                 _write(d / "binance_incremental_book_L2_2023-11-16_BTCUSDT.csv.gz", BOOK_HEADER, b2)],
    }


def test_import_then_export_equals_hftbacktests_tardis_converter(tardis_files, tmp_path, capsys):
    from hftbacktest.data.utils import tardis

    files = tardis_files["trades"] + tardis_files["book"]
    ref = tardis.convert([str(f) for f in files])
    capsys.readouterr()

    lake = tmp_path / "lake"
    assert lab_main(["import", "tardis", *map(str, files), "--lake", str(lake), "--no-progress"]) == 0
    out = tmp_path / "btc.npz"
    assert lab_main(["export", "hftbacktest", "--venue", "binance", "--symbol", "BTC-USDT",
                     "--start", "2023-11-14", "--end", "2023-11-18", "--out", str(out), "--lake", str(lake)]) == 0
    got = np.load(out)["data"]

    assert len(got) == len(ref) and len(ref) > 1000
    for field in ("ev", "exch_ts", "local_ts", "px", "qty"):
        np.testing.assert_array_equal(got[field], ref[field], err_msg=field)
    # the data exercised what it claims to: clears/snapshots, split events, side-less trades
    kinds = ref["ev"] & 0xFF
    assert (kinds == 3).sum() >= 8 and (kinds == 4).sum() >= 40  # 4 snapshots x 2 sides x 5 levels
    both = (1 << 31) | (1 << 30)
    assert ((ref["ev"] & both) != both).any()
    assert ((kinds == 2) & ((ref["ev"] & ((1 << 29) | (1 << 28))) == 0)).any()


def test_imported_rows_are_canonical_and_snapshots_share_a_message(tardis_files, tmp_path):
    lake = Lake(tmp_path / "lake")
    assert lab_main(["import", "tardis", str(tardis_files["book"][0].parent), "--lake", str(lake.root),
                     "--no-progress"]) == 0
    book = lake.scan("book_updates").collect()
    trades = lake.scan("trades").collect()
    assert set(book["venue"]) == {"binance"} and set(book["symbol"]) == {"BTC-USDT"}
    with gzip.open(tardis_files["book"][0], "rt") as f:
        first = next(r for r in csv.DictReader(f))
    assert book["ts_exchange"].min().timestamp() * 1e6 == pytest.approx(int(first["timestamp"]))
    snaps = book.filter(pl.col("is_snapshot"))
    # 10 rows per snapshot (5 a side), one seq per snapshot: two SOD + two resyncs
    assert snaps.group_by("seq", "ts_exchange").len()["len"].to_list() == [10] * 4
    assert trades["side"].null_count() > 0 and set(trades["side"].drop_nulls()) == {"buy", "sell"}


def test_reimporting_the_same_file_adds_nothing(tardis_files, tmp_path):
    lake = Lake(tmp_path / "lake")
    args = ["import", "tardis", str(tardis_files["trades"][0]), "--lake", str(lake.root), "--no-progress"]
    assert lab_main(args) == 0
    n = lake.scan("trades").select(pl.len()).collect().item()
    assert n > 0
    assert lab_main(args) == 0
    assert lake.scan("trades").select(pl.len()).collect().item() == n


def test_malformed_row_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "binance_trades_2023-11-15_BTCUSDT.csv"
    bad.write_text(",".join(TRADE_HEADER) + "\n"
                   "binance,BTCUSDT,1700006400000000,1700006400001000,1,buy,37000.5,0.1\n"
                   "binance,BTCUSDT,1700006400100000,1700006400101000,2,sell,notaprice,0.2\n")
    code = lab_main(["import", "tardis", str(bad), "--lake", str(tmp_path / "lake"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and str(bad) in err and "line 3" in err and "price" in err
    assert not (tmp_path / "lake" / "trades").exists()


def test_bad_side_value_names_line(tmp_path, capsys):
    bad = tmp_path / "binance_incremental_book_L2_2023-11-15_BTCUSDT.csv"
    bad.write_text(",".join(BOOK_HEADER) + "\n"
                   "binance,BTCUSDT,1700006400000000,1700006400001000,true,bid,100.0,1\n"
                   "binance,BTCUSDT,1700006400000000,1700006400001000,true,offer,101.0,1\n")
    assert lab_main(["import", "tardis", str(bad), "--lake", str(tmp_path / "lake"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "line 3" in err and "'offer'" in err
