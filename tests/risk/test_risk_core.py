"""Risk figures checked against numbers worked out by hand or with plain numpy."""

from __future__ import annotations

import datetime as dt
import io
from statistics import NormalDist

import numpy as np
import polars as pl
import pytest

from lab.alerts import StreamSink
from lab.risk import (
    Limits,
    Position,
    RiskConfig,
    drawdown,
    load_positions,
    mark_positions,
    marks,
    positions_frame,
    snapshot,
    var_es,
)
from lab.risk.live import RiskMonitor
from lab.schema import table_spec

NOW = dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc)


def quote_marks(rows: list[tuple]) -> pl.DataFrame:
    """rows: (venue, symbol, bid, ask, age_s)."""
    v, s, b, a, age = zip(*rows)
    q = pl.LazyFrame({"ts_local": [NOW - dt.timedelta(seconds=x) for x in age], "venue": list(v),
                      "symbol": list(s), "bid_px": list(b), "ask_px": list(a)})
    return marks(q, NOW, stale_after_s=5.0).collect()


def test_inverse_and_linear_pnl_by_hand():
    m = quote_marks([("deribit", "BTC-USD", 54_999.0, 55_001.0, 0.5)])
    pos = positions_frame([
        # 1,000 contracts of 1 USD long from 50,000: 1000·(1/50000 − 1/55000) BTC = 0.0018182 BTC
        # = 100.00 USD at 55,000
        Position("deribit", "BTC", 1000.0, 50_000.0, kind="inverse", contract_size=1.0,
                 realized_pnl=10.0, fees=2.0, funding=-1.5),
    ])
    r = mark_positions(pos, m).row(0, named=True)
    assert r["mark"] == 55_000.0
    assert r["unrealized_pnl"] == pytest.approx(100.0, rel=1e-12)
    assert r["total_pnl"] == pytest.approx(10 + 100 - 2 - 1.5)
    assert r["exposure"] == 1000.0  # face value
    short = mark_positions(positions_frame([Position("deribit", "BTC", -1000.0, 50_000.0,
                                                     kind="inverse")]), m).row(0, named=True)
    assert short["unrealized_pnl"] == pytest.approx(-100.0)
    # the same dollar exposure as a linear contract: 0.02 BTC bought at 50,000 -> +100 USD
    lin = mark_positions(positions_frame([Position("deribit", "BTC", 0.02, 50_000.0, kind="linear")]),
                         m).row(0, named=True)
    assert lin["unrealized_pnl"] == pytest.approx(100.0)
    assert lin["exposure"] == pytest.approx(0.02 * 55_000)
    # down to 40,000: 1000·(1/50000 − 1/40000) = −0.005 BTC, worth −200 USD at 40,000
    m2 = quote_marks([("deribit", "BTC-USD", 40_000.0, 40_000.0, 0.5)])
    down = mark_positions(pos, m2).row(0, named=True)
    assert down["unrealized_pnl"] == pytest.approx(-200.0)


def test_conservative_marks_use_the_closing_side():
    m = quote_marks([("a", "ETH-USDT", 2990.0, 3010.0, 0.1)])
    pos = positions_frame([Position("a", "ETH", 2.0, 3000.0), Position("a", "ETH", -1.0, 3000.0)])
    got = mark_positions(pos, m, method="conservative").sort("qty")
    assert got["mark"].to_list() == [3010.0, 2990.0]  # short closes on the ask, long on the bid
    assert got["unrealized_pnl"].to_list() == pytest.approx([-10.0, -20.0])


def test_stale_venue_is_flagged_and_marked_conservatively_or_excluded():
    # venue b's quote is 30 s old and still shows 105; a fresh venue shows 100
    m = quote_marks([("a", "BTC-USD", 99.0, 101.0, 0.2), ("b", "BTC-USDT", 104.0, 106.0, 30.0)])
    assert m.filter(venue="b")["stale"].item() and not m.filter(venue="a")["stale"].item()
    pos = positions_frame([Position("b", "BTC", 1.0, 100.0), Position("b", "BTC", -1.0, 100.0,
                                                                       symbol="BTC-USDT")])
    got = mark_positions(pos, m).sort("qty")
    assert got["stale"].to_list() == [True, True]
    # long: the worse of the stale bid (104) and the fresh bid (99): 99; short: worse ask: 106
    assert got["mark"].to_list() == [106.0, 99.0]
    ex = mark_positions(pos, m, stale_policy="exclude")
    assert ex["mark"].null_count() == 2 and ex["exposure"].null_count() == 2
    cfg = RiskConfig(capital=1000.0, limits=Limits(stale_feed_s=5.0), stale_policy="exclude")
    rows, checks, marked = snapshot(pos, m, pl.DataFrame(), cfg, now=NOW)
    stale = {k: b for k, b, *_ in checks if k.startswith("stale_feed")}
    assert stale == {"stale_feed:a": False, "stale_feed:b": True}
    port = dict(rows.filter(scope="portfolio").select("metric", "value").iter_rows())
    assert port["stale_positions"] == 2.0 and port["gross_exposure"] == 0.0


def _ewma_loop(r: np.ndarray, lam: float) -> np.ndarray:
    s = np.zeros((r.shape[1], r.shape[1]))
    for t in range(r.shape[0]):  # RiskMetrics recursion from zero, oldest first
        s = lam * s + (1 - lam) * np.outer(r[t], r[t])
    return s / (1 - lam ** r.shape[0])  # the weights' sum, so they add up to one


def test_two_asset_var_and_es_against_direct_numpy():
    rng = np.random.default_rng(42)
    cov = np.array([[4e-6, 2.4e-6], [2.4e-6, 9e-6]])
    r = rng.multivariate_normal([0, 0], cov, size=3000)
    returns = pl.DataFrame({"ts": np.arange(3000), "BTC": r[:, 0], "ETH": r[:, 1]})
    w = {"BTC": 100_000.0, "ETH": -40_000.0}
    got = var_es(w, returns, levels=(0.95, 0.99), lam=0.94)
    pnl = r[:, 0] * 100_000.0 - r[:, 1] * 40_000.0
    for lv in (0.95, 0.99):
        p = int(lv * 100)
        q = np.quantile(pnl, 1 - lv)
        assert got[f"hist_var_{p}"] == pytest.approx(-q, rel=1e-12)
        assert got[f"hist_es_{p}"] == pytest.approx(-pnl[pnl <= q].mean(), rel=1e-12)
        s = _ewma_loop(r, 0.94)
        wv = np.array([100_000.0, -40_000.0])
        sigma = np.sqrt(wv @ s @ wv)
        z = NormalDist().inv_cdf(lv)
        assert got[f"param_var_{p}"] == pytest.approx(z * sigma, rel=1e-9)
        assert got[f"param_es_{p}"] == pytest.approx(sigma * NormalDist().pdf(z) / (1 - lv), rel=1e-9)
    # ES is never below VaR
    assert got["hist_es_99"] >= got["hist_var_99"] and got["param_es_95"] >= got["param_var_95"]


def test_drawdown_of_a_known_curve():
    curve = [100, 110, 105, 120, 90, 95, 130, 125]
    d = drawdown(curve)
    # the worst fall is 120 -> 90 (30, 25 %); now 5 below the 130 peak
    assert d == {"max_drawdown": 30.0, "max_drawdown_pct": 0.25, "drawdown": 5.0,
                 "drawdown_pct": pytest.approx(5 / 130)}


def test_snapshot_rows_match_the_table_and_portfolio_figures():
    m = quote_marks([("a", "BTC-USD", 99.0, 101.0, 0.1), ("a", "ETH-USD", 9.0, 11.0, 0.1)])
    pos = positions_frame([Position("a", "BTC", 2.0, 90.0, fees=1.0), Position("a", "ETH", -10.0, 12.0)])
    cfg = RiskConfig(capital=1000.0)
    rows, _, _ = snapshot(pos, m, pl.DataFrame(), cfg, now=NOW)
    assert rows.schema == table_spec("risk_snapshots").schema
    port = dict(rows.filter(scope="portfolio").select("metric", "value").iter_rows())
    # BTC: 2·(100−90) = 20, ETH: −10·(10−12) = 20, fees 1
    assert port["total_pnl"] == pytest.approx(39.0)
    assert port["gross_exposure"] == pytest.approx(200.0 + 100.0)
    assert port["net_exposure"] == pytest.approx(200.0 - 100.0)
    assert port["leverage"] == pytest.approx(300.0 / 1039.0)
    assert port["concentration"] == pytest.approx(2 / 3)
    assert port["hhi"] == pytest.approx((2 / 3) ** 2 + (1 / 3) ** 2)


def test_limit_breach_fires_exactly_once_and_clears():
    buf = io.StringIO()
    cfg = RiskConfig(capital=10_000.0, limits=Limits(asset_notional={"BTC": 150.0}, stale_feed_s=None))
    mon = RiskMonitor(cfg, lambda: positions_frame([Position("a", "BTC", 1.0, 100.0)]),
                      sinks=[StreamSink(buf)])
    fired = []
    for i, px in enumerate([100.0, 160.0, 170.0, 155.0, 120.0, 110.0]):
        t = NOW + dt.timedelta(seconds=i)
        mon.on_quote({"ts_local": t, "venue": "a", "symbol": "BTC-USD", "bid_px": px - 1,
                      "ask_px": px + 1})
        n = len(mon.fired)
        mon.tick(t)
        fired.append([a.kind for a in mon.fired[n:]])
    assert fired == [[], ["breach"], [], [], ["breach_cleared"], []]
    assert buf.getvalue().count("asset_notional:BTC") == 2
    assert mon.value("limit", "asset_notional:BTC", "breached") == 0.0


def test_daily_loss_limit_counts_from_the_day_start():
    cfg = RiskConfig(capital=10_000.0, limits=Limits(daily_loss=50.0, stale_feed_s=None))
    mon = RiskMonitor(cfg, lambda: positions_frame([Position("a", "ETH", 10.0, 100.0)]), sinks=[])
    for i, px in enumerate([100.0, 97.0, 94.0, 99.0]):
        t = NOW + dt.timedelta(seconds=i)
        mon.on_quote({"ts_local": t, "venue": "a", "symbol": "ETH-USD", "bid_px": px, "ask_px": px})
        mon.tick(t)
    # losses since the first tick: 0, 30, 60 (breach), 10 (clear)
    assert [(a.kind, a.key) for a in mon.fired] == [("breach", "limit:daily_loss"),
                                                    ("breach_cleared", "limit:daily_loss")]
    assert mon.value("portfolio", "total", "daily_pnl") == pytest.approx(-10.0)


def test_positions_file_toml_and_csv(tmp_path):
    csv = tmp_path / "p.csv"
    csv.write_text("venue,asset,qty,avg_entry,kind,contract_size\n"
                   "okx,BTC,-300,60000,inverse,100\nbinance,ETH,1.5,3000,,\n")
    df = load_positions(csv)
    assert df.select("venue", "qty", "kind", "contract_size").rows() == [
        ("okx", -300.0, "inverse", 100.0), ("binance", 1.5, "spot", 1.0)]
    bad = tmp_path / "bad.toml"
    bad.write_text('[[position]]\nvenue = "a"\nasset = "BTC"\nqty = 1\navg_entry = 1\nkind = "option"\n')
    with pytest.raises(ValueError, match="position #1.*kind"):
        load_positions(bad)
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "config" / "positions.example.toml"
    assert load_positions(example).height == 4


def test_position_without_any_quote_is_unmarked_and_not_in_exposure():
    m = quote_marks([("a", "ETH-USD", 9.0, 11.0, 0.1)])
    pos = positions_frame([Position("b", "BTC", -1000.0, 50_000.0, kind="inverse", fees=1.0),
                           Position("a", "ETH", 1.0, 10.0)])
    got = mark_positions(pos, m).sort("venue")
    assert got["unmarked"].to_list() == [False, True]
    assert got["exposure"].to_list() == [10.0, None]
    assert got["total_pnl"].to_list() == [0.0, -1.0]
