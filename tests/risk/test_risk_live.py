"""The risk monitor on a real bus hub writing risk_snapshots; return history; the CLI."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import numpy as np
import polars as pl
import pytest

from lab.alerts import make_sinks
from lab.lake import Lake
from lab.risk import Limits, Position, RiskConfig, positions_frame, positions_from_paper, returns_matrix
from lab.risk.live import RiskMonitor, run_monitor


def test_returns_matrix_is_last_mid_per_minute_then_simple_returns():
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    ts = [t0 + dt.timedelta(seconds=s) for s in (5, 50, 70, 130, 200)]
    mids = [100.0, 102.0, 101.0, 99.0, 103.0]
    q = pl.LazyFrame({"ts_exchange": ts, "venue": "a", "symbol": "BTC-USDT",
                      "bid_px": [m - 1 for m in mids], "ask_px": [m + 1 for m in mids]})
    r = returns_matrix(q, every="1m").collect()
    # bars (label = bar end): 00:01 -> 102, 00:02 -> 101, 00:03 -> 99, 00:04 -> 103
    want = np.array([101 / 102 - 1, 99 / 101 - 1, 103 / 99 - 1])
    assert r["BTC"].to_numpy() == pytest.approx(want)


def test_paper_positions_become_positions():
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    paper = pl.LazyFrame({
        "ts": [t0, t0 + dt.timedelta(seconds=1), t0], "session": "s", "strategy": "mm",
        "venue": ["binance", "binance", "kraken"], "asset": ["BTC", "BTC", "ETH"],
        "qty": [0.1, 0.3, -2.0], "avg_price": [90_000.0, 90_500.0, 3000.0],
        "realized_pnl": [0.0, 12.0, 0.0], "fees": [0.5, 1.0, 0.7]})
    got = positions_from_paper(paper).collect()
    assert got.select("venue", "asset", "qty", "avg_entry", "realized_pnl", "fees").rows() == [
        ("binance", "BTC", 0.3, 90_500.0, 12.0, 1.0), ("kraken", "ETH", -2.0, 3000.0, 0.0, 0.7)]


def test_monitor_on_a_real_bus_writes_snapshots_every_tick_and_alerts(tmp_path):
    from lab.bus import Hub, Publisher, subscribe

    lake = Lake(tmp_path / "lake")
    alerts = tmp_path / "risk.jsonl"
    cfg = RiskConfig(capital=10_000.0, alerts=[f"file:{alerts}"], stale_after_s=60.0,
                     limits=Limits(asset_notional={"BTC": 150.0}, stale_feed_s=None))
    mon = RiskMonitor(cfg, lambda: positions_frame([Position("a", "BTC", 1.0, 100.0)]),
                      sinks=make_sinks(cfg.alerts))
    ticks: list[float] = []

    async def main():
        hub = await Hub("127.0.0.1", 0).start()
        try:
            task = asyncio.create_task(run_monitor(
                mon, subscribe(["quotes"], url=hub.url),
                write=lambda df: lake.append("risk_snapshots", df), every_s=0.4, duration=5.0,
                on_tick=lambda rows, secs: ticks.append(secs)))
            await hub.wait_subscribers(1)
            pub = await Publisher(hub.url + "/publish").start()
            now_us = int(dt.datetime.now(dt.timezone.utc).timestamp() * 1e6)
            await pub.publish("quotes", [{"ts_local": now_us, "ts_exchange": now_us, "venue": "a",
                                          "symbol": "BTC-USD", "bid_px": 199.0, "bid_qty": 1.0,
                                          "ask_px": 201.0, "ask_qty": 1.0}])
            await asyncio.wait_for(task, 60)
            await pub.close()
        finally:
            await hub.stop()

    asyncio.run(main())
    snaps = lake.scan("risk_snapshots").collect()
    n_ticks = snaps["ts"].n_unique()
    assert n_ticks == len(ticks) >= 5
    last = snaps.filter(pl.col("ts") == pl.col("ts").max())
    port = dict(last.filter(scope="portfolio").select("metric", "value").iter_rows())
    assert port["unrealized_pnl"] == pytest.approx(100.0)
    assert port["gross_exposure"] == pytest.approx(200.0)
    lines = [json.loads(x) for x in alerts.read_text().splitlines()]
    assert [(x["kind"], x["key"]) for x in lines] == [("breach", "limit:asset_notional:BTC")]


def test_lab_risk_cli_help_and_bad_config(tmp_path, capsys):
    from lab.cli import main

    with pytest.raises(SystemExit) as e:
        main(["risk", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "--positions" in out and "--bus" in out
    bad = tmp_path / "risk.toml"
    bad.write_text("[risk]\ncapitol = 5\n")
    assert main(["risk", "--config", str(bad), "--lake", str(tmp_path / "lake"),
                 "--duration", "1"]) == 2
    assert "capitol" in capsys.readouterr().err
