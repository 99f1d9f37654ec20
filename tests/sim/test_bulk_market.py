"""Bulk history: schema, recorder-style normalisation, and a market worth studying.

Reference values come from independent computations in the tests (a dict
book replay, numpy correlations), never from the simulator's own helpers.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from lab.lake import Lake
from lab.schema import table_spec
from recorders.sim.bulk import write_to_lake
from recorders.sim.config import SimConfig

START = dt.datetime(2026, 11, 22, 12, tzinfo=dt.timezone.utc)
EXPECTED_SYMBOLS = {
    ("binance", "BTC-USDT"), ("binance", "ETH-USDT"), ("binance", "SOL-USDT"), ("binance", "ETH-BTC"),
    ("coinbase", "BTC-USD"), ("coinbase", "ETH-USD"), ("coinbase", "SOL-USD"), ("coinbase", "ETH-BTC"),
    ("kraken", "BTC-USD"), ("kraken", "ETH-USD"), ("kraken", "SOL-USD"), ("kraken", "ETH-BTC"),
}


@pytest.fixture(scope="module")
def frames(sim_lake: Lake) -> dict[str, pl.DataFrame]:
    return {t: sim_lake.scan(t).collect() for t in ("trades", "book_updates", "quotes", "book_snapshots")}


def test_tables_have_canonical_schema_and_symbols(frames):
    for name, df in frames.items():
        spec = table_spec(name)  # an optional column (trades.source) is absent until a batch carries one
        assert df.schema == pl.Schema({c: d for c, d in spec.columns.items()
                                       if c not in spec.optional or c in df.columns}), name
        assert df.height > 10_000, name
        assert set(df.select("venue", "symbol").unique().iter_rows()) == EXPECTED_SYMBOLS, name
    assert set(frames["trades"]["side"].unique()) == {"buy", "sell"}
    assert set(frames["book_updates"]["side"].unique()) == {"bid", "ask"}


def test_local_time_follows_exchange_time_by_venue_latency(frames):
    lat = frames["trades"].with_columns(
        ms=(pl.col("ts_local") - pl.col("ts_exchange")).dt.total_microseconds() / 1000
    ).group_by("venue").agg(pl.col("ms").min().alias("lo"), pl.col("ms").median().alias("med"))
    cfg = SimConfig()
    for venue, lo, med in lat.iter_rows():
        assert lo >= 0
        assert 0.5 * cfg.wire_ms[venue] < med < 2 * cfg.wire_ms[venue], (venue, med)
    # receive times never go back on one connection
    q = frames["quotes"]
    for (_, _), g in q.group_by("venue", "symbol"):
        assert g["ts_local"].is_sorted()


def test_book_updates_start_with_snapshot_and_replay_to_the_quotes(frames):
    bu = frames["book_updates"].filter(venue="kraken", symbol="ETH-USD")
    q = frames["quotes"].filter(venue="kraken", symbol="ETH-USD")
    first_delta = bu["is_snapshot"].arg_min()
    assert bu["is_snapshot"][:first_delta].all() and first_delta > 20
    # the snapshot is one message: one receive time (several would read as several snapshots)
    assert bu["ts_local"][:first_delta].n_unique() == 1
    assert not bu["is_snapshot"][first_delta:].any()
    assert bu["seq"].is_sorted()
    # independent replay: a dict book; after each seq, the top must equal the quote with that seq
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    seqs = bu["seq"].to_list()
    sides = bu["side"].to_list()
    pxs = bu["price"].to_list()
    qtys = bu["qty"].to_list()
    quotes = {}
    ts_q = q["ts_exchange"].to_list()
    # quotes carry no seq column: match them in order of exchange time with the seq groups
    tops = []
    n = len(seqs)
    i = 0
    while i < n:
        s = seqs[i]
        while i < n and seqs[i] == s:
            book = bids if sides[i] == "bid" else asks
            if qtys[i] == 0:
                book.pop(pxs[i], None)
            else:
                book[pxs[i]] = qtys[i]
            i += 1
        bb, ba = max(bids), min(asks)
        assert bb < ba
        top = (bb, bids[bb], ba, asks[ba])
        if not tops or tops[-1] != top:
            tops.append(top)
    quotes = list(q.select("bid_px", "bid_qty", "ask_px", "ask_qty").iter_rows())
    assert len(ts_q) == len(quotes)
    # the snapshot's own top is not a quote row; every later top change is one
    assert tops[1:] == quotes


def test_same_seed_same_rows_and_other_seed_differs(tmp_path):
    def run(seed: int, name: str) -> pl.DataFrame:
        lake = Lake(tmp_path / name)
        write_to_lake(lake, start=START, duration=dt.timedelta(seconds=30), venues=("binance",),
                      assets=("BTC", "ETH"), seed=seed)
        return lake.scan("trades").sort("ts_exchange", "trade_id").collect()

    a, b, c = run(3, "a"), run(3, "b"), run(4, "c")
    assert_frame_equal(a, b)
    assert a.height > 100
    assert not a.select("price").equals(c.select("price"))


def _mid_grid(q: pl.DataFrame, venue: str, symbol: str, every: str) -> pl.DataFrame:
    return (q.filter(venue=venue, symbol=symbol).sort("ts_exchange")
            .with_columns(mid=(pl.col("bid_px") + pl.col("ask_px")) / 2)
            .group_by_dynamic("ts_exchange", every=every).agg(pl.col("mid").last())
            .upsample("ts_exchange", every=every).fill_null(strategy="forward"))


def test_cross_venue_mids_correlate_and_the_leader_moves_first(frames):
    q = frames["quotes"]
    g = {v: _mid_grid(q, v, s, "50ms") for v, s in (("binance", "BTC-USDT"), ("kraken", "BTC-USD"),
                                                     ("coinbase", "BTC-USD"))}
    j = g["binance"].join(g["kraken"], on="ts_exchange", suffix="_k").join(
        g["coinbase"], on="ts_exchange", suffix="_c").drop_nulls()
    lb = np.diff(np.log(j["mid"].to_numpy()))
    lk = np.diff(np.log(j["mid_k"].to_numpy()))
    lc = np.diff(np.log(j["mid_c"].to_numpy()))

    def xcorr(x: np.ndarray, y: np.ndarray, k: int) -> float:  # corr(x[t], y[t+k])
        if k >= 0:
            return float(np.corrcoef(x[: len(x) - k], y[k:])[0, 1])
        return float(np.corrcoef(x[-k:], y[: len(y) + k])[0, 1])

    lags = range(-8, 9)
    ck = [xcorr(lb, lk, k) for k in lags]
    cc = [xcorr(lb, lc, k) for k in lags]
    best_k = list(lags)[int(np.argmax(ck))]
    best_c = list(lags)[int(np.argmax(cc))]
    # kraken lags binance by ~150 ms (3 steps of 50 ms), coinbase by ~50 ms
    assert 2 <= best_k <= 4, (best_k, ck)
    assert 0 <= best_c <= 2, (best_c, cc)
    assert best_k > best_c
    # over 5 s the venues agree closely
    g5 = {v: _mid_grid(q, v, s, "5s") for v, s in (("binance", "BTC-USDT"), ("kraken", "BTC-USD"))}
    j5 = g5["binance"].join(g5["kraken"], on="ts_exchange", suffix="_k").drop_nulls()
    r = np.corrcoef(np.diff(np.log(j5["mid"].to_numpy())), np.diff(np.log(j5["mid_k"].to_numpy())))[0, 1]
    assert r > 0.8, r


def test_arbitrage_windows_open_and_close_with_varied_durations(frames):
    q = frames["quotes"]
    g = []
    for v, s in (("binance", "BTC-USDT"), ("kraken", "BTC-USD")):
        g.append(q.filter(venue=v, symbol=s).sort("ts_exchange")
                 .group_by_dynamic("ts_exchange", every="10ms")
                 .agg(pl.col("bid_px").last(), pl.col("ask_px").last())
                 .upsample("ts_exchange", every="10ms").fill_null(strategy="forward"))
    j = g[0].join(g[1], on="ts_exchange", suffix="_k").drop_nulls()
    # buy on one venue's ask, sell on the other's bid (USD = USDT)
    open_ = ((j["bid_px_k"] > j["ask_px"]) | (j["bid_px"] > j["ask_px_k"])).to_numpy()
    edges = np.diff(open_.astype(np.int8))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    if len(ends) and len(starts) and ends[0] < starts[0]:
        ends = ends[1:]
    n = min(len(starts), len(ends))
    durations_ms = (ends[:n] - starts[:n]) * 10
    assert n >= 20, n
    assert 0.001 < open_.mean() < 0.5
    assert len(np.unique(durations_ms)) >= 5
    assert np.median(durations_ms) < 2000


def test_spreads_depth_and_trading_vary_and_trades_follow_moves(frames):
    q = frames["quotes"].filter(venue="binance", symbol="ETH-USDT")
    spr = ((q["ask_px"] - q["bid_px"]) / q["bid_px"] * 1e4).to_numpy()
    assert spr.min() > 0
    assert np.percentile(spr, 90) > 2 * np.percentile(spr, 10)
    snaps = frames["book_snapshots"].filter(venue="binance", symbol="ETH-USDT", level=pl.col("level") < 10)
    depth = snaps.group_by("ts_exchange").agg(pl.col("qty").sum()).sort("ts_exchange")["qty"].to_numpy()
    assert depth.std() / depth.mean() > 0.05
    t = frames["trades"].filter(venue="binance", symbol="ETH-USDT").sort("ts_exchange")
    per_s = (t.group_by_dynamic("ts_exchange", every="1s")
             .agg(pl.len().alias("n"),
                  pl.when(pl.col("side") == "buy").then(pl.col("qty")).otherwise(-pl.col("qty")).sum().alias("flow"))
             .upsample("ts_exchange", every="1s").fill_null(0))
    n = per_s["n"].to_numpy().astype(float)
    assert n.var() / n.mean() > 1.5  # clustered, not Poisson
    mids = _mid_grid(frames["quotes"], "binance", "ETH-USDT", "1s")
    j = per_s.join(mids, on="ts_exchange").drop_nulls()
    ret = np.diff(np.log(j["mid"].to_numpy()))
    flow = j["flow"].to_numpy()[1:]
    assert np.corrcoef(flow, ret)[0, 1] > 0.2


def test_triangle_holds_with_small_violations(frames):
    q = frames["quotes"]
    g = {s: _mid_grid(q, "binance", s, "1s") for s in ("ETH-BTC", "ETH-USDT", "BTC-USDT")}
    j = g["ETH-BTC"].join(g["ETH-USDT"], on="ts_exchange", suffix="_e").join(
        g["BTC-USDT"], on="ts_exchange", suffix="_b").drop_nulls()
    dev = np.abs(np.log(j["mid"].to_numpy() * j["mid_b"].to_numpy() / j["mid_e"].to_numpy())) * 1e4
    assert np.median(dev) < 5
    assert dev.max() > 2 * np.median(dev)
