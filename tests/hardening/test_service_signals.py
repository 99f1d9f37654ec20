"""``lab arbitrage``, ``lab paper`` and ``lab risk`` stop gracefully (issue 15, "Stopping and
supervising services"): SIGTERM or SIGINT makes each one write what it holds and exit 0.
Each runs as a real subprocess against a real hub."""

from __future__ import annotations

import signal
import time

import polars as pl
import pytest
from bus_fixtures import (
    LoopThread,
    arb_config,
    book_row,
    free_port,
    quote,
    risk_config,
    start_service,
    trade,
    wait_until,
)

from lab.bus import Hub, Publisher
from lab.lake import Lake


@pytest.fixture
def hub(lab_data):
    lt = LoopThread()
    h = lt.call(Hub("127.0.0.1", free_port()).start())
    pub = lt.call(Publisher(h.url).start())
    h.publish = lambda table, rows: lt.call(pub.publish(table, rows))
    h.lt = lt
    yield h
    lt.call(pub.close())
    lt.call(h.stop())
    lt.close()


def _subscribed(h: Hub, n: int = 1):
    return len(h.subs) >= n


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_lab_arbitrage_writes_its_pending_signals_and_exits_0(tmp_path, hub, sig):
    alerts = tmp_path / "alerts.jsonl"
    cfg = arb_config(tmp_path, alerts)  # signals are written every hour: only a graceful stop gets this one in
    lake = Lake(tmp_path / "lake")
    log = tmp_path / "arb.log"
    proc = start_service(["arbitrage", "--bus", hub.url, "--lake", str(lake.root), "--config", str(cfg)], log)
    try:
        wait_until(lambda: _subscribed(hub), 120, "lab arbitrage to subscribe", proc)
        hub.publish("quotes", [quote("binance", "BTC-USDT", 99.0, 100.0)])
        hub.publish("quotes", [quote("kraken", "BTC-USD", 101.0, 102.0)])
        wait_until(lambda: alerts.exists() and alerts.read_text().strip(), 60, "the alert", proc)
        assert not lake.exists("arbitrage_signals")
    finally:
        proc.send_signal(sig)
        rc = proc.wait(60)
    assert rc == 0, log.read_text()
    got = lake.scan("arbitrage_signals").collect()
    assert got.select("buy_venue", "sell_venue", "net_edge_bps").rows() == [("binance", "kraken", 100.0)]


def test_lab_risk_exits_0_on_sigterm(tmp_path, hub):
    cfg, pos = risk_config(tmp_path)
    lake = Lake(tmp_path / "lake")
    log = tmp_path / "risk.log"
    proc = start_service(["risk", "--bus", hub.url, "--lake", str(lake.root), "--config", str(cfg),
                          "--positions", str(pos), "--every", "0.3"], log)
    try:
        wait_until(lambda: _subscribed(hub), 120, "lab risk to subscribe", proc)
        hub.publish("quotes", [quote("binance", "BTC-USDT", 199.0, 201.0)])
        wait_until(lambda: lake.exists("risk_snapshots"), 60, "a risk snapshot", proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    assert rc == 0, log.read_text()
    assert "SIGTERM received" in log.read_text()


def test_lab_paper_writes_session_end_and_exits_0_on_sigterm(tmp_path, hub):
    lake = Lake(tmp_path / "lake")
    log = tmp_path / "paper.log"
    proc = start_service(["paper", "mm", "-p", "venue=binance", "-p", "symbol=BTC-USDT", "--bus", hub.url,
                          "--lake", str(lake.root), "--flush", "0.2", "--quiet", "--session", "sigterm"], log)

    def orders(status: str) -> int:
        return lake.exists("paper_orders") and lake.scan("paper_orders").filter(
            pl.col("status") == status).collect().height

    try:
        wait_until(lambda: _subscribed(hub), 180, "lab paper to subscribe", proc)
        hub.publish("book_updates", [book_row("binance", "BTC-USDT", s, p, 1.0, True, 1)
                                     for s, p in (("bid", 99.9), ("bid", 99.8), ("ask", 100.1), ("ask", 100.2))])
        for i in range(600):
            if orders("session_start"):
                break
            hub.publish("book_updates", [book_row("binance", "BTC-USDT", "bid", 99.9, 1.0 + i % 3, False, i + 2)])
            hub.publish("trades", [trade("binance", "BTC-USDT", i, 100.1, 0.001, "buy")])
            time.sleep(0.05)
        assert orders("session_start"), log.read_text()
        assert not orders("session_end")
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    assert rc == 0, log.read_text()
    ends = lake.scan("paper_orders").filter(pl.col("status") == "session_end").collect()
    assert ends["session"].to_list() == ["sigterm"]
