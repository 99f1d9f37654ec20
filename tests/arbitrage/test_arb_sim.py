"""Arbitrage on the simulator: windows timed like the configured lag, none without
arbitrage, and the live detector agreeing with the historical scan (record, replay)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import lab
from lab.arbitrage import ArbConfig, cross_venue, episodes, summary, triangular
from lab.arbitrage.live import Detector, replay_rows, signals_frame
from lab.lake import Lake

START = dt.datetime(2026, 11, 22, 12, tzinfo=dt.timezone.utc)


def _sim(root, *, lag_ms: float, arbitrage: bool = True) -> Lake:
    from recorders.sim.bulk import write_to_lake
    from recorders.sim.config import SimConfig

    # frequent 10 bps jumps of the latent price: each one opens a window on the
    # leader that the lagging venue closes lag_ms later
    cfg = SimConfig(lags_ms={"binance": 0.0, "kraken": lag_ms}, jumps_per_hour=600,
                    jump_bps=10.0, arbitrage=arbitrage)
    lake = Lake(root)
    write_to_lake(lake, start=START, duration=dt.timedelta(minutes=5), venues=("binance", "kraken"),
                  assets=("BTC",), seed=3, config=cfg)
    return lake


@pytest.fixture(scope="module")
def lag_lakes(tmp_path_factory):
    base = tmp_path_factory.mktemp("arb_lag")
    return {lag: _sim(base / f"lag{lag}", lag_ms=lag) for lag in (100, 400)}


def _jump_episodes(lake: Lake) -> pl.DataFrame:
    tl = cross_venue(lake.scan("quotes"), fees=1.0, size={"BTC": 0.01}, keep="episodes")
    return (episodes(tl)
            .filter((pl.col("peak_net_edge_bps") >= 4.0) & (pl.col("opened_by") == "binance")
                    & (pl.col("closed_by") == "kraken"))
            .collect())


def test_lagging_venue_windows_last_about_the_lag(lag_lakes):
    med = {}
    for lag, lake in lag_lakes.items():
        e = _jump_episodes(lake)
        assert e.height >= 10, f"lag {lag}: too few jump windows ({e.height})"
        med[lag] = e["duration_ms"].median()
        # the laggard catches up at its next book event after the lag (plus wire time)
        assert 0.8 * lag <= med[lag] <= lag + 150, (lag, med[lag])
    assert 200 <= med[400] - med[100] <= 400, med


def test_summary_names_the_lagging_venue(lag_lakes):
    tl = cross_venue(lag_lakes[400].scan("quotes"), fees=1.0, size={"BTC": 0.01}, keep="episodes")
    lagging = summary(tl)["lagging"].collect()
    top = lagging.sort("closed", descending=True)["venue"][0]
    assert top == "kraken"
    lat = summary(tl, latencies_ms=(5.0, 200.0, 2000.0))["latency"].collect()
    alive = lat["still_profitable"].to_list()
    assert alive[0] > alive[1] > alive[2]  # the edge decays with latency


def test_no_lag_windows_when_arbitrage_is_off(tmp_path, lag_lakes):
    # The same market (seed, jumps, lag setting) with arbitrage switched off. Its venues
    # still re-price only on their own book events, so a jump can cross them for one
    # Kraken update interval (~70 ms) at 1 bps fees; windows as long as the lag are gone.
    lag = 400
    off = _sim(tmp_path / "off", lag_ms=lag, arbitrage=False)
    long_on = _jump_episodes(lag_lakes[lag]).filter(pl.col("duration_ms") >= 0.8 * lag)
    tl_off = cross_venue(off.scan("quotes"), fees=1.0, size={"BTC": 0.01}, keep="episodes")
    eps_off = episodes(tl_off).collect()
    assert long_on.height >= 5
    assert eps_off.filter(pl.col("duration_ms") >= 0.8 * lag).height == 0
    assert eps_off["duration_ms"].median() < 0.25 * lag
    # beyond real taker fees (binance 10 bps, kraken 40 bps) nothing at all
    assert cross_venue(off.scan("quotes"), size={"BTC": 0.01}).collect().height == 0


def test_live_detector_finds_the_same_rows_as_the_historical_scan(sim_lake):
    cfg = ArbConfig(fees_bps={}, default_fee_bps=1.0)
    lf = sim_lake.scan("quotes")
    det = Detector(cfg)
    live = []
    for rows in replay_rows(lf):
        for r in rows:
            live += det.on_quote(r)
    live_df = signals_frame(live)
    hist_cross = cross_venue(lf, fees={}, default_fee_bps=1.0, size=cfg.sizes,
                             max_age=cfg.max_age_ms).collect()
    hist_tri = triangular(lf, fees={}, default_fee_bps=1.0, cycles=cfg.triangles,
                          notional=cfg.triangle_notional, max_age=cfg.max_age_ms).collect()
    assert hist_cross.height > 0 and hist_tri.height > 0
    assert_frame_equal(live_df.filter(kind="cross_venue"), hist_cross, check_exact=False, rel_tol=1e-9)
    key = ["ts", "asset", "buy_venue", "net_edge_bps"]
    assert_frame_equal(live_df.filter(kind="triangular").sort(key), hist_tri.sort(key),
                       check_exact=False, rel_tol=1e-9)
    # and the episodes they imply
    eps_hist = episodes(cross_venue(lf, fees={}, default_fee_bps=1.0, size=cfg.sizes,
                                    keep="episodes")).collect()
    n_open = len({(r["asset"], r["buy_venue"], r["sell_venue"]) for r in live})
    assert eps_hist.height >= n_open


def test_seed_sql_runs_as_written_on_signals(tmp_path, sim_lake):
    lake = Lake(tmp_path / "lake")
    sig = cross_venue(sim_lake.scan("quotes"), fees=0.5, size={"BTC": 0.01, "ETH": 0.2, "SOL": 5.0}).collect()
    assert sig.height > 0
    lake.append("arbitrage_signals", sig)
    con = lab.connect(lake)
    got = con.execute("""
        SELECT timestamp, exchange_a, exchange_b, asset, profit_pct, volume_usd
        FROM arbitrage_signals
        WHERE timestamp > now() - INTERVAL '100 years'
        ORDER BY profit_pct DESC
        LIMIT 100
    """).fetchall()
    want = sig.sort("net_edge_bps", descending=True).head(100)
    assert len(got) == min(100, sig.height)
    assert [g[4] for g in got] == pytest.approx((want["net_edge_bps"] / 100).to_list())
    assert got[0][1] == want["buy_venue"][0] and got[0][2] == want["sell_venue"][0]
