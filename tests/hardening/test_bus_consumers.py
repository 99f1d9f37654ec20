"""Consumers never die of data, and never give up on the hub (issue 15): a malformed
frame is skipped and counted by ``lab.bus.subscribe`` and by every service; a hub that is
not there, or goes away, is retried with backoff, and the service says so."""

from __future__ import annotations

import asyncio
import json
import logging
import signal

import polars as pl
import pytest
from bus_fixtures import (
    HostileServer,
    LoopThread,
    arb_config,
    book_row,
    frame,
    free_port,
    quote,
    risk_config,
    start_service,
    trade,
    wait_until,
)

from lab.bus import Hub, Publisher, SubscribeStats, subscribe
from lab.lake import Lake

TOKEN = "consumer-tests-token-0123456789abcdef"
BAD = [
    frame("book_updates", "x"),  # rows not a list: the frame that killed lab arbitrage and lab paper
    frame("quotes", [{**quote("binance", "BTC-USDT", 99.0, 100.0), "bid_px": "10000000"}]),
    frame("quotes", [{"venue": "binance"}]),
    frame("no_such_table", []),
    b"\xc1 not msgpack",
]


@pytest.fixture
def lt():
    t = LoopThread()
    yield t
    t.close()


def test_subscribe_skips_and_counts_bad_frames_and_goes_on(lt):
    port = free_port()
    srv = HostileServer(lt, port).start()
    stats = SubscribeStats()
    good = quote("binance", "BTC-USDT", 99.0, 100.0)

    async def main():
        async for table, rows in subscribe(["quotes"], url=f"ws://127.0.0.1:{port}", token="t", stats=stats):
            return table, rows

    async def run():
        task = asyncio.create_task(main())
        while not srv.clients:
            await asyncio.sleep(0.02)
        return task

    loop = asyncio.new_event_loop()
    try:
        task = loop.run_until_complete(run())
        for b in BAD:
            srv.send(b)
        srv.send(frame("quotes", [good]))
        got = loop.run_until_complete(asyncio.wait_for(task, 20))
    finally:
        loop.close()
        srv.stop()
    assert got == ("quotes", [good])
    assert stats.bad_frames == len(BAD) and stats.frames == 1


def test_subscribe_retries_a_missing_hub_says_so_once_and_recovers(lab_data, caplog):
    caplog.set_level(logging.INFO, logger="lab.bus")
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    row = quote("kraken", "BTC-USD", 1.0, 2.0, ts=1_700_000_000_000_000)

    async def main():
        stats = SubscribeStats()
        got = []

        async def consume():
            async for _table, rows in subscribe(["quotes"], url=url, stats=stats):
                got.append(rows)
                if len(got) == 2:
                    return

        task = asyncio.create_task(consume())
        while stats.failures < 3:  # nothing listens yet: several attempts
            await asyncio.sleep(0.05)
        for _ in range(2):  # the hub comes, serves one frame, goes away; then comes back
            hub = await Hub("127.0.0.1", port).start()
            await hub.wait_subscribers(1)
            pub = await Publisher(url).start()
            await pub.publish("quotes", [row])
            while hub.frames_out < 1:
                await asyncio.sleep(0.02)
            await pub.close()
            await hub.stop()
        await asyncio.wait_for(task, 30)
        return got, stats

    got, stats = asyncio.run(main())
    assert got == [[row], [row]] and stats.connects == 2
    msgs = [r.getMessage() for r in caplog.records if "bus subscriber" in r.getMessage()]
    assert sum("cannot connect" in m for m in msgs) == 1, msgs  # once per series, not per attempt
    assert sum("lost the connection" in m for m in msgs) == 1, msgs
    assert sum("connected to" in m and "failed attempts" in m for m in msgs) >= 1, msgs


# ----------------------------------------------------------------------- the services
def _crossing_quotes() -> list[bytes]:
    return [frame("quotes", [quote("binance", "BTC-USDT", 99.0, 100.0)]),
            frame("quotes", [quote("kraken", "BTC-USD", 101.0, 102.0)])]


def _alerts(path):
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _stop(proc) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(60)


def test_lab_arbitrage_survives_a_malformed_frame(tmp_path, lab_data, lt):
    port = free_port()
    srv = HostileServer(lt, port).start()
    alerts = tmp_path / "alerts.jsonl"
    log = tmp_path / "arb.log"
    proc = start_service(["arbitrage", "--bus", f"ws://127.0.0.1:{port}", "--lake", str(tmp_path / "lake"),
                          "--config", str(arb_config(tmp_path, alerts))], log)
    try:
        wait_until(lambda: srv.clients, 120, "lab arbitrage to subscribe", proc)
        for b in BAD:
            srv.send(b)
        for b in _crossing_quotes():
            srv.send(b)
        got = wait_until(lambda: _alerts(alerts), 60, "the alert after the bad frames", proc)
        assert proc.poll() is None, log.read_text()
    finally:
        rc = _stop(proc)
        srv.stop()
    out = log.read_text()
    assert rc == 0, out
    assert [a["key"] for a in got] == ["BTC binance>kraken"]
    assert f"{len(BAD)} malformed bus frames skipped" in out


def test_lab_arbitrage_keeps_retrying_a_missing_hub_and_says_so(tmp_path, lab_data, lt):
    port = free_port()
    alerts = tmp_path / "alerts.jsonl"
    log = tmp_path / "arb.log"
    proc = start_service(["arbitrage", "--bus", f"ws://127.0.0.1:{port}", "--lake", str(tmp_path / "lake"),
                          "--config", str(arb_config(tmp_path, alerts))], log)
    try:
        wait_until(lambda: "cannot connect" in log.read_text(), 120, "'cannot connect'", proc)
        # still there, still trying: a hub that appears later gets it
        hub = lt.call(Hub("127.0.0.1", port).start())
        lt.call(hub.wait_subscribers(1, timeout=60))
        pub = lt.call(Publisher(hub.url).start())
        for b in _crossing_quotes():
            rows = __import__("msgspec").msgpack.decode(b)["rows"]
            lt.call(pub.publish("quotes", rows))
        wait_until(lambda: _alerts(alerts), 60, "the alert once the hub is up", proc)
    finally:
        rc = _stop(proc)
    out = log.read_text()
    lt.call(pub.close())
    lt.call(hub.stop())
    assert rc == 0, out
    assert out.count("cannot connect") == 1, out
    assert "failed attempts" in out


def test_lab_risk_keeps_marking_after_a_malformed_frame(tmp_path, lab_data, lt):
    port = free_port()
    srv = HostileServer(lt, port).start()
    cfg, pos = risk_config(tmp_path)
    lake = Lake(tmp_path / "lake")
    log = tmp_path / "risk.log"
    proc = start_service(["risk", "--bus", f"ws://127.0.0.1:{port}", "--lake", str(lake.root), "--config",
                          str(cfg), "--positions", str(pos), "--every", "0.3"], log)

    def marked():
        if not lake.exists("risk_snapshots"):
            return None
        m = lake.scan("risk_snapshots").filter((pl.col("scope") == "position") & (pl.col("metric") == "mark")
                                                & (pl.col("value") == 200.0)).collect()
        return m.height

    try:
        wait_until(lambda: srv.clients, 120, "lab risk to subscribe", proc)
        for b in BAD:
            srv.send(b)
        srv.send(frame("quotes", [quote("binance", "BTC-USDT", 199.0, 201.0)]))
        wait_until(marked, 60, "a snapshot marking BTC at 200 after the bad frames", proc)
    finally:
        rc = _stop(proc)
        srv.stop()
    assert rc == 0, log.read_text()


def test_lab_paper_survives_a_malformed_frame(tmp_path, lab_data, lt):
    port = free_port()
    srv = HostileServer(lt, port).start()
    lake = Lake(tmp_path / "lake")
    log = tmp_path / "paper.log"
    proc = start_service(["paper", "mm", "-p", "venue=binance", "-p", "symbol=BTC-USDT", "--bus",
                          f"ws://127.0.0.1:{port}", "--lake", str(lake.root), "--flush", "0.2", "--quiet",
                          "--session", "hostile"], log)

    def started():
        return lake.exists("paper_orders") and lake.scan("paper_orders").filter(
            pl.col("status") == "session_start").collect().height

    try:
        wait_until(lambda: srv.clients, 180, "lab paper to subscribe", proc)
        for b in BAD:
            srv.send(b)
        seq = 1
        srv.send(frame("book_updates", [book_row("binance", "BTC-USDT", s, p, 1.0, True, seq)
                                        for s, p in (("bid", 99.9), ("bid", 99.8), ("ask", 100.1), ("ask", 100.2))]))
        for i in range(400):
            if started():
                break
            seq += 1
            srv.send(frame("book_updates", [book_row("binance", "BTC-USDT", "bid", 99.9, 1.0 + i % 3, False, seq)]))
            srv.send(frame("trades", [trade("binance", "BTC-USDT", i, 100.1, 0.001, "buy")]))
            wait_until(lambda: proc.poll() is None, 1, "alive")
            __import__("time").sleep(0.05)
        assert started(), log.read_text()
        assert proc.poll() is None, log.read_text()
    finally:
        rc = _stop(proc)
        srv.stop()
    assert rc == 0, log.read_text()
    ends = lake.scan("paper_orders").filter(pl.col("status") == "session_end").collect()
    assert ends["session"].to_list() == ["hostile"]




@pytest.mark.parametrize("app", ["arbitrage", "risk"])
def test_a_bad_bus_url_is_one_line_and_exit_2(tmp_path, lab_data, app):
    import subprocess
    import sys

    from bus_fixtures import ROOT

    out = subprocess.run([sys.executable, "-m", "lab.cli", app, "--bus", "htp://nowhere", "--no-write",
                          "--lake", str(tmp_path / "lake"), "--alerts", "log"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert f"lab {app}: bad bus URL 'htp://nowhere'" in out.stderr
    assert "Traceback" not in out.stderr
