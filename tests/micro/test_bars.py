"""lab.bars: against a plain-Python bucketing, against DuckDB SQL on a real lake, invariants."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import lab
from lab import bars
from lab.lake import Lake

T0 = dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone.utc)


def _trades(n: int = 400, seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    ms = np.sort(rng.integers(0, 30_000, n))
    ms[5] = ms[4]  # a timestamp tie: order then falls back to trade_id
    venue = rng.choice(["binance", "kraken"], n)
    symbol = rng.choice(["BTC-USDT", "ETH-USDT"], n)
    return pl.DataFrame({
        "ts_exchange": [T0 + dt.timedelta(milliseconds=int(m)) for m in ms],
        "ts_local": [T0 + dt.timedelta(milliseconds=int(m) + 3) for m in ms],
        "venue": venue, "symbol": symbol,
        "trade_id": [f"{i:06d}" for i in range(n)],
        "price": np.round(100 + rng.normal(0, 1, n).cumsum() * 0.1, 2),
        "qty": rng.integers(1, 8, n) * 0.25,
        "side": rng.choice(["buy", "sell"], n),
    })


@pytest.fixture(scope="module")
def trades() -> pl.DataFrame:
    return _trades()


@pytest.fixture(scope="module")
def con(tmp_path_factory, trades):
    lake = Lake(tmp_path_factory.mktemp("bars") / "lake")
    lake.append("trades", trades)
    return lab.connect(lake)


def _python_bars(df: pl.DataFrame, every_ms: int, period_ms: int) -> dict:
    """Reference: assign each trade to every window [s, s+period) on the every grid."""
    rows = sorted(df.iter_rows(named=True), key=lambda r: (r["venue"], r["symbol"], r["ts_exchange"], r["trade_id"]))
    first: dict = {}
    win: dict = defaultdict(list)
    for r in rows:
        ms = int((r["ts_exchange"] - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)).total_seconds() * 1000 + 0.5)
        key = (r["venue"], r["symbol"])
        b0 = ms // every_ms * every_ms
        first.setdefault(key, b0)
        s = b0
        while s > ms - period_ms:
            if s >= first[key]:
                win[(*key, s)].append(r)
            s -= every_ms
    out = {}
    for k, rs in win.items():
        p = [r["price"] for r in rs]
        q = [r["qty"] for r in rs]
        out[k] = dict(open=p[0], high=max(p), low=min(p), close=p[-1], volume=sum(q),
                      vwap=sum(a * b for a, b in zip(p, q)) / sum(q), trades=len(rs),
                      buy_volume=sum(r["qty"] for r in rs if r["side"] == "buy"))
    return out


@pytest.mark.parametrize("every,period,every_ms,period_ms",
                         [("1s", None, 1000, 1000), ("1s", "5s", 1000, 5000), ("2s", "3s", 2000, 3000)])
def test_ohlcv_matches_a_python_bucketing(trades, every, period, every_ms, period_ms):
    got = bars.ohlcv(trades.lazy(), every, period).collect()
    ref = _python_bars(trades, every_ms, period_ms)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    assert len(got) == len(ref)
    for r in got.iter_rows(named=True):
        want = ref[(r["venue"], r["symbol"], int((r["bucket"] - epoch).total_seconds() * 1000 + 0.5))]
        for c, v in want.items():
            assert r[c] == pytest.approx(v, rel=1e-12), c


def _sorted(df: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    return df.sort(keys)


def test_sql_ohlcv_1s_view_equals_the_polars_helper(con, trades):
    sql = pl.from_arrow(con.sql("select * from ohlcv_1s").to_arrow_table())
    pol = bars.ohlcv(trades.lazy(), "1s").collect()
    assert_frame_equal(_sorted(sql, ["venue", "symbol", "bucket"]), pol, check_dtypes=True)


def test_sql_rolling_macro_equals_the_polars_helper(con, trades):
    sql = pl.from_arrow(con.sql(
        "select * from ohlcv_rolling(INTERVAL 1 SECOND, INTERVAL 5 SECOND)").to_arrow_table())
    pol = bars.ohlcv(trades.lazy(), "1s", "5s").collect()
    assert_frame_equal(_sorted(sql, ["venue", "symbol", "bucket"]), pol, check_exact=False, rel_tol=1e-12)


def test_sql_time_bucket_minute_macro_equals_the_polars_helper(con, trades):
    sql = pl.from_arrow(con.sql("select * from ohlcv(INTERVAL 10 SECOND)").to_arrow_table())
    pol = bars.ohlcv(trades.lazy(), "10s").collect()
    assert_frame_equal(sql, pol, check_exact=False, rel_tol=1e-12)


@pytest.mark.parametrize("sql,fn", [
    ("tick_bars(7)", lambda lf: bars.tick_bars(lf, 7)),
    ("volume_bars(5.0)", lambda lf: bars.volume_bars(lf, 5.0)),
    ("dollar_bars(500.0)", lambda lf: bars.dollar_bars(lf, 500.0)),
])
def test_sql_count_bar_macros_equal_the_polars_helpers(con, trades, sql, fn):
    got = pl.from_arrow(con.sql(f"select * from {sql}").to_arrow_table())
    pol = fn(trades.lazy()).collect()
    assert_frame_equal(got, pol, check_exact=False, rel_tol=1e-12)


def test_volume_bars_close_once_the_threshold_is_crossed():
    # qty 1, 1.5, 2, 0.5, 3 with threshold 2: cum before = 0, 1, 2.5, 4.5, 5 -> bars 0,0,1,2,2
    tr = pl.LazyFrame({"ts_exchange": [1, 2, 3, 4, 5], "venue": "x", "symbol": "s",
                       "price": [10.0] * 5, "qty": [1.0, 1.5, 2.0, 0.5, 3.0], "side": "buy"})
    got = bars.volume_bars(tr, 2.0).collect()
    assert got.select("bar", "volume", "trades").rows() == [(0, 2.5, 2), (1, 2.0, 1), (2, 3.5, 2)]


_trade = st.tuples(st.integers(0, 5_000), st.sampled_from(["a", "b"]),
                   st.floats(1.0, 1000.0), st.floats(0.001, 50.0), st.sampled_from(["buy", "sell"]))


@settings(max_examples=60, deadline=None)
@given(st.lists(_trade, min_size=1, max_size=80), st.sampled_from([("100ms", None), ("1s", "3s"), ("250ms", "1s")]),
       st.integers(1, 9), st.floats(0.5, 100.0))
def test_bar_invariants(rows, win, n, vol):
    ms, sym, px, qty, side = zip(*rows)
    tr = pl.LazyFrame({"ts_exchange": [T0 + dt.timedelta(milliseconds=m) for m in ms],
                       "venue": "x", "symbol": list(sym), "trade_id": [str(i) for i in range(len(ms))],
                       "price": list(px), "qty": list(qty), "side": list(side)})
    total = sum(qty)
    for lf in (bars.ohlcv(tr, win[0]), bars.tick_bars(tr, n), bars.volume_bars(tr, vol),
               bars.dollar_bars(tr, vol * 100)):
        df = lf.collect()
        assert lf.collect_schema() == df.schema
        # VWAP within [low, high]
        assert (df["vwap"] >= df["low"] * (1 - 1e-12)).all() and (df["vwap"] <= df["high"] * (1 + 1e-12)).all()
        # bars' volume sums to the trades' volume; buy + sell = volume
        assert df["volume"].sum() == pytest.approx(total, rel=1e-9)
        assert (df["buy_volume"] + df["sell_volume"] - df["volume"]).abs().max() <= 1e-9 * total
    rolled_lf = bars.ohlcv(tr, win[0], win[1])
    rolled = rolled_lf.collect()
    assert rolled_lf.collect_schema() == rolled.schema
    assert (rolled["vwap"] >= rolled["low"] * (1 - 1e-12)).all()
    assert (rolled["vwap"] <= rolled["high"] * (1 + 1e-12)).all()
