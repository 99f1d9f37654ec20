"""lab.tardis: message numbering (seq) and venue/symbol names, on a hand-written incremental_book_L2 file.

Expected values are worked out by hand: a message is a run of rows with the same timestamp,
local_timestamp and is_snapshot; names follow tardis' ids (okex -> okx, XBT -> BTC)."""

from __future__ import annotations

from lab.tardis import read_file

ROWS = """exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount
okex,BTC-USDT,100,110,true,bid,10.0,1
okex,BTC-USDT,100,110,true,ask,11.0,2
okex,BTC-USDT,100,110,false,ask,11.0,0
okex,BTC-USDT,105,110,false,bid,10.5,3
okex,BTC-USDT,105,112,false,bid,10.4,3
kraken,XBT/USD,105,112,false,bid,10.4,3
kraken,XBT/USD,105,112,false,ask,12.0,1
"""


def test_each_run_of_equal_times_and_snapshot_flag_is_one_message_and_names_are_canonical(tmp_path):
    f = tmp_path / "mixed_incremental_book_L2_2024-01-01.csv"
    f.write_text(ROWS)

    table, df = read_file(f)

    assert table == "book_updates"
    assert df["seq"].to_list() == [0, 0, 1, 2, 3, 3, 3]  # the kraken rows continue run 3 (same times)
    assert df["venue"].to_list() == ["okx"] * 5 + ["kraken"] * 2
    assert df["symbol"].to_list() == ["BTC-USDT"] * 5 + ["BTC-USD"] * 2


def test_a_one_market_file_names_every_row(tmp_path):
    f = tmp_path / "binance_incremental_book_L2_2024-01-01_BTCUSDT.csv"
    f.write_text("\n".join(line.replace("okex,BTC-USDT", "binance,BTCUSDT") for line in ROWS.splitlines()[:6]) + "\n")

    _, df = read_file(f)

    assert set(df["venue"]) == {"binance"} and set(df["symbol"]) == {"BTC-USDT"} and df.height == 5
    assert df["seq"].to_list() == [0, 0, 1, 2, 3]
