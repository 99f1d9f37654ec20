"""Large appends take the bulk path (Polars writes the file, one add action commits it): the rows,
their types and every time filter at the batch's edges are as through delta-rs' writer."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl
from polars.testing import assert_frame_equal

import lab
from lab.lake import BULK_ROWS, Lake

T0 = dt.datetime(2026, 11, 22, tzinfo=dt.timezone.utc)


def _trades(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    off = np.sort(rng.integers(0, 3_600_000_000, n))  # µs: times that are not whole milliseconds
    ts = pl.Series(off).cast(pl.Duration("us")) + T0
    return pl.DataFrame({
        "ts_exchange": ts, "ts_local": ts + dt.timedelta(microseconds=777),
        "venue": rng.choice(["binance", "kraken"], n), "symbol": rng.choice(["BTC-USDT", "ETH-USDT"], n),
        "trade_id": pl.int_range(n, eager=True).cast(pl.String),
        "price": np.where(rng.random(n) < 0.001, np.nan, 60_000 + rng.normal(0, 5, n)),
        "qty": rng.exponential(0.1, n), "side": rng.choice(["buy", "sell"], n),
    }).with_columns(pl.when(pl.int_range(n) % 997 == 0).then(None).otherwise(pl.col("side")).alias("side"))


def test_bulk_append_reads_back_exactly_and_prunes_without_losing_edge_rows(tmp_path):
    small, big = _trades(500, 1), _trades(BULK_ROWS + 1234, 2)
    bulk_lake, ref_lake = Lake(tmp_path / "bulk"), Lake(tmp_path / "ref")
    bulk_lake.append("trades", small)
    v = bulk_lake.append("trades", big)
    ref_lake.append("trades", small)
    for part in big.iter_slices(BULK_ROWS // 2):  # reference: the same rows through delta-rs' writer
        ref_lake.append("trades", part)

    assert v == bulk_lake.version("trades") == 2
    got = bulk_lake.scan("trades").collect()
    key = ["ts_exchange", "trade_id", "venue"]  # file order within a scan is not part of the contract
    assert_frame_equal(got.sort(key), ref_lake.scan("trades").collect().sort(key))
    # every time filter at the batch's own edges (µs values; stats are kept at ms)
    for t in (big["ts_exchange"].min(), big["ts_exchange"].max()):
        for kw in ({"start": t}, {"end": t + dt.timedelta(microseconds=1)}):
            n_ref = ref_lake.scan("trades", **kw).select(pl.len()).collect().item()
            assert bulk_lake.scan("trades", **kw).select(pl.len()).collect().item() == n_ref > 0
    con = lab.connect(bulk_lake)
    q = "select count(*) from trades where ts_exchange >= $t and venue = 'kraken'"
    t_max = big.filter(pl.col("venue") == "kraken")["ts_exchange"].max()
    assert con.execute(q, {"t": t_max}).fetchall() == [(1,)]


def test_bulk_add_action_carries_delta_stats(tmp_path):
    lake = Lake(tmp_path / "lake")
    big = _trades(BULK_ROWS, 3)
    lake.append("trades", big)
    log = sorted((tmp_path / "lake" / "trades" / "_delta_log").glob("*.json"))[-1]
    adds = [json.loads(line)["add"] for line in log.read_text().splitlines() if '"add"' in line]
    stats = json.loads(adds[0]["stats"])
    assert stats["numRecords"] == big.height
    assert stats["nullCount"]["side"] == big["side"].null_count() > 0
    assert stats["minValues"]["venue"] == "binance" and stats["maxValues"]["venue"] == "kraken"
    lo = dt.datetime.fromisoformat(stats["minValues"]["ts_exchange"].replace("Z", "+00:00"))
    hi = dt.datetime.fromisoformat(stats["maxValues"]["ts_exchange"].replace("Z", "+00:00"))
    assert lo <= big["ts_exchange"].min() and hi >= big["ts_exchange"].max()
    assert not np.isnan(stats["minValues"]["price"]) and stats["maxValues"]["price"] == big["price"].filter(
        big["price"].is_not_nan()).max()
