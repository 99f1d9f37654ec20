"""Paper runner on a real bus hub vs the backtest on the same recorded rows."""

from __future__ import annotations

import asyncio
import datetime as dt

import polars as pl
import pytest

from lab.backtest import BacktestConfig, Fees, Latency
from lab.backtest.compare import compare_session, sessions
from lab.backtest.paper import positions_from_fills
from lab.lake import Lake
from tests.backtest.paper_session import S, V, bus_frames, run_paper_session


@pytest.fixture(scope="module")
def session_lake(sim_lake, tmp_path_factory):
    """Three minutes of binance BTC-USDT copied from the simulated lake: 'the recording'."""
    lake = Lake(tmp_path_factory.mktemp("paper") / "lake")
    t0 = sim_lake.scan("book_updates").select(pl.col("ts_exchange").min()).collect().item()
    kw = dict(venue=V, symbol=S, start=t0, end=t0 + dt.timedelta(minutes=3))
    for table in ("book_updates", "trades", "quotes", "book_snapshots"):
        lake.append(table, sim_lake.scan(table, **kw).collect())
    return lake


def test_paper_session_agrees_with_backtest_on_its_recording(session_lake):
    cfg = BacktestConfig(fees={V: Fees(-0.0001, 0.0005)}, latency=Latency(1_000, 1_000))
    # the runner joins 30 s into the recording: its books start from the lake's last snapshot
    run = asyncio.run(run_paper_session(session_lake, bus_frames(session_lake, skip_s=30), cfg))
    runner = run.runner
    assert run.publisher_dropped == 0 and run.hub_dropped == 0
    assert runner.rows_in == run.rows_published
    assert runner.batches > 1, "the live runner should have processed several batches"
    assert runner.seed_ts == {f"{V}:{S}": pytest.approx(runner.t_first_local, abs=10_000_000)}

    s = sessions(session_lake)
    assert s["session"].to_list() == [runner.session]
    cmp = compare_session(runner.session, session_lake)
    p, b = cmp.summary.row(0, named=True), cmp.summary.row(1, named=True)
    assert p["side"] == "paper" and b["side"] == "backtest"
    assert p["fills"] > 20
    # the tolerance of the hftbacktest peer check: 5% on fills/volume/fees, 1 bp of notional on PnL
    assert p["fills"] == pytest.approx(b["fills"], rel=0.05)
    assert p["volume"] == pytest.approx(b["volume"], rel=0.05)
    assert p["fees"] == pytest.approx(b["fees"], rel=0.05)
    assert abs(p["pnl"] - b["pnl"]) <= 1e-4 * max(p["notional"], b["notional"])
    assert cmp.equity.columns == ["ts", "paper", "backtest"] and cmp.equity.height > 100
    assert any("feed latency binance" in e for e in cmp.explanations)

    # what the runner wrote is what it computed
    pf = session_lake.scan("paper_fills").collect()
    assert pf.height == p["fills"]
    pp = session_lake.scan("paper_positions").collect()
    assert pp.height == pf.height
    net = pf.select((pl.when(pl.col("side") == "buy").then(pl.col("qty")).otherwise(-pl.col("qty"))).sum()).item()
    assert pp.sort("ts")["qty"][-1] == pytest.approx(net, abs=1e-12)
    fig = cmp.figure()
    assert len(fig.data) >= 2


def test_positions_from_fills_average_cost_by_hand():
    t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    f = pl.DataFrame({"ts": [t] * 4, "venue": ["x"] * 4, "symbol": ["A-USD"] * 4,
                      "side": ["buy", "buy", "sell", "sell"], "price": [100.0, 110.0, 120.0, 90.0],
                      "qty": [1.0, 1.0, 1.5, 1.0], "fee": [0.1, 0.1, 0.2, 0.1]})
    got = positions_from_fills(f).select("qty", "avg_price", "realized_pnl", "fees").rows()
    # avg 105 after two buys; selling 1.5 @120 realises 22.5; selling 1 @90 closes 0.5 (-7.5), opens short 0.5 @90
    assert got[1] == pytest.approx((2.0, 105.0, -0.2, 0.2))
    assert got[2] == pytest.approx((0.5, 105.0, 22.5 - 0.4, 0.4))
    assert got[3] == pytest.approx((-0.5, 90.0, 15.0 - 0.5, 0.5))
