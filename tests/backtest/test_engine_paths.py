"""Both strategy paths, the example strategies and the CLI on the simulated lake."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from lab.backtest import BacktestConfig, Fees, Latency, load_events, run_backtest
from lab.backtest.stats import annualisation_factor, summary
from lab.backtest.strategies import CrossVenueArb, ImbalanceSignal, MarketMaker, market_maker_fast


@pytest.fixture(scope="module")
def btc(sim_lake):
    return load_events(lake=sim_lake, venues=["binance", "coinbase", "kraken"],
                       symbols=["BTC-USDT", "BTC-USD"])


CFG = BacktestConfig(fees={"binance": Fees(-0.0001, 0.0005)}, latency=Latency(1_000, 1_000))


def test_python_and_numba_market_makers_give_identical_results(btc):
    i = btc.index("binance", "BTC-USDT")
    kw = dict(qty=0.01, half_spread=1, skew_ticks=2.0, max_position=0.03, interval_s=0.25)
    fast = run_backtest(market_maker_fast(i, **kw), btc, CFG)
    slow = run_backtest(MarketMaker(venue="binance", symbol="BTC-USDT", **kw), btc, CFG)
    assert fast.fills.height > 10
    assert_frame_equal(fast.fills, slow.fills)
    assert_frame_equal(fast.equity, slow.equity)
    # tiny logs grow on demand (both paths) without changing anything
    tiny = dict(max_fills=16, max_log=16)
    assert_frame_equal(run_backtest(market_maker_fast(i, **kw), btc, CFG, **tiny).orders, fast.orders)
    small_slow = run_backtest(MarketMaker(venue="binance", symbol="BTC-USDT", **kw), btc, CFG, **tiny)
    assert_frame_equal(small_slow.fills, slow.fills)
    assert small_slow.overflow == 0
    # inventory skew keeps the position inside its limit (+ one order in flight)
    pos = fast.positions.filter(pl.col("symbol") == "BTC-USDT")["qty"]
    assert pos.abs().max() <= 0.03 + 0.01 + 1e-9


def test_stats_match_an_independent_computation(btc):
    res = run_backtest(market_maker_fast(btc.index("binance", "BTC-USDT"), qty=0.01, interval_s=0.25), btc, CFG)
    st = summary(res, capital=10_000.0)
    e = res.equity["equity"].to_numpy()
    r = np.diff(e) / 10_000.0
    assert st["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(365 * 86400 / 1.0))
    assert st["max_drawdown"] == pytest.approx(float(np.min(e - np.maximum.accumulate(e))))
    f = res.fills.to_dicts()
    assert st["fees_paid"] == pytest.approx(sum(x["fee"] for x in f))
    assert st["notional"] == pytest.approx(sum(x["price"] * x["qty"] for x in f))
    assert st["sampling_interval_s"] == 1.0 and st["annualisation"] == "365 days"
    assert annualisation_factor(60.0) == pytest.approx(math.sqrt(525_600))


def test_cross_venue_arb_trades_both_legs_as_taker(btc):
    arb = CrossVenueArb(legs="binance:BTC-USDT,coinbase:BTC-USD,kraken:BTC-USD", qty=0.01, min_edge_bps=0.0,
                        max_position=0.05)
    cfg = BacktestConfig(fees={v: Fees(0.0, 0.0) for v in ("binance", "coinbase", "kraken")},
                         latency=Latency(500, 500))
    res = run_backtest(arb, btc, cfg)
    assert res.fills.height > 0
    assert (res.fills["liquidity"] == "taker").all()
    assert res.fills["venue"].n_unique() >= 2
    assert set(res.orders.filter(pl.col("event") == "new")["tif"]) == {"ioc"}
    st = res.stats()
    assert set(st["pnl_by_venue"]) == {"binance", "coinbase", "kraken"}


def test_imbalance_signal_runs_and_is_deterministic(btc):
    r1 = run_backtest(ImbalanceSignal(threshold=0.3), btc, CFG)
    r2 = run_backtest(ImbalanceSignal(threshold=0.3), btc, CFG)
    assert r1.fills.height > 0
    assert_frame_equal(r1.fills, r2.fills)


def test_cli_backtest_prints_stats_and_writes_results(sim_lake, tmp_path, capsys):
    from lab.cli import main

    rc = main(["backtest", "mm", "--lake", str(sim_lake.root), "-p", "venue=binance", "-p", "symbol=BTC-USDT",
               "--fee", "binance=-0.0001,0.0005", "--json", "--out", str(tmp_path / "out")])
    assert rc == 0
    st = json.loads(capsys.readouterr().out)
    assert st["n_fills"] > 0 and st["annualisation"] == "365 days"
    assert pl.read_parquet(tmp_path / "out" / "fills.parquet").height == st["n_fills"]
    assert (tmp_path / "out" / "report.html").stat().st_size > 1000
    capsys.readouterr()
    assert main(["backtest", "nosuch", "--lake", str(sim_lake.root)]) == 2
    assert "unknown strategy" in capsys.readouterr().err
    assert main(["backtest", "mm", "-p", "nope=1", "--lake", str(sim_lake.root)]) == 2
    assert "unknown parameter" in capsys.readouterr().err
