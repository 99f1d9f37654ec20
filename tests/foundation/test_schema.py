import datetime as dt

import polars as pl
import pytest

from lab.schema import SchemaError, conform

T = dt.datetime(2026, 11, 22, 12, tzinfo=dt.timezone.utc)


def _trades(**over):
    d = {"ts_exchange": [T], "ts_local": [T], "venue": ["binance"], "symbol": ["BTC-USDT"],
         "trade_id": ["1"], "price": [100.0], "qty": [1.0], "side": ["buy"]}
    d.update(over)
    return pl.DataFrame(d)


def test_conform_wrong_dtype_names_the_column():
    with pytest.raises(SchemaError, match="'price'.*String"):
        conform("trades", _trades(price=["100.0"]))


def test_conform_missing_and_extra_columns_are_named():
    with pytest.raises(SchemaError, match="missing.*trade_id"):
        conform("trades", _trades().drop("trade_id"))
    with pytest.raises(SchemaError, match="unexpected.*foo"):
        conform("trades", _trades(foo=[1]))


def test_conform_casts_ns_timestamps_to_canonical_us_utc():
    df = _trades().with_columns(pl.col("ts_exchange").dt.cast_time_unit("ns"))
    out = conform("trades", df)
    assert out.schema["ts_exchange"] == pl.Datetime("us", "UTC")
    assert out["ts_exchange"][0] == T
