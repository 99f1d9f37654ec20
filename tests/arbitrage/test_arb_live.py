"""Alert sinks against real endpoints, and the live detector on a real bus hub."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import polars as pl
import pytest
from arbrows import run_live_on_a_bus

from lab.alerts import Alert, FileSink, Latch, StreamSink, WebhookSink, make_sinks
from lab.arbitrage import ArbConfig, cross_venue
from lab.lake import Lake

T0_US = 1_790_000_000_000_000


def _alert(key: str = "BTC a>b") -> Alert:
    return Alert(ts=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), source="arbitrage",
                 kind="opportunity", key=key, message="net 3 bps", payload={"net_edge_bps": 3.0})


@pytest.fixture
def http_server():
    got: list[dict] = []
    fail_first = {"n": 0}

    class H(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["content-length"]))
            if fail_first["n"] > 0:
                fail_first["n"] -= 1
                self.send_response(503)
                self.end_headers()
                return
            got.append({"body": json.loads(body), "type": self.headers["content-type"]})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = HTTPServer(("127.0.0.1", 0), H)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook", got, fail_first
    srv.shutdown()
    srv.server_close()


def test_webhook_sink_posts_json_and_retries(http_server):
    url, got, fail_first = http_server
    fail_first["n"] = 1  # the first attempt gets a 503, the retry succeeds
    sink = WebhookSink(url, timeout=5.0, retries=2)
    sink.emit(_alert("one"))
    sink.emit(_alert("two"))
    sink.close()
    assert [g["body"]["key"] for g in got] == ["one", "two"]
    assert got[0]["type"] == "application/json"
    assert got[0]["body"]["payload"] == {"net_edge_bps": 3.0}
    assert sink.sent == 2 and sink.failed == 0


def test_webhook_failure_is_counted_not_raised():
    sink = WebhookSink("http://127.0.0.1:9/unreachable", timeout=0.5, retries=0)
    sink.emit(_alert())
    sink.close()
    assert sink.failed == 1


def test_file_sink_appends_json_lines(tmp_path):
    p = tmp_path / "alerts" / "a.jsonl"
    s = make_sinks([f"file:{p}"])[0]
    assert isinstance(s, FileSink)
    s.emit(_alert("x"))
    s.emit(_alert("y"))
    lines = [json.loads(x) for x in p.read_text().splitlines()]
    assert [x["key"] for x in lines] == ["x", "y"]
    assert lines[0]["ts"].startswith("2026-01-01T00:00:00")


def test_bad_sink_spec_names_the_spec():
    with pytest.raises(ValueError, match="pager"):
        make_sinks("log,pager")
    with pytest.raises(ValueError, match="http"):
        make_sinks(["webhook:ftp://x"])


def test_latch_fires_once_and_clears_once():
    buf = io.StringIO()
    latch = Latch([StreamSink(buf)], source="risk")
    fired = [latch.update("k", v, kind="breach", message=str(i))
             for i, v in enumerate([False, True, True, True, False, False, True])]
    kinds = [a.kind if a else None for a in fired]
    assert kinds == [None, "breach", None, None, "breach_cleared", None, "breach"]
    assert buf.getvalue().count("\n") == 3


def _q(ms: int, venue: str, symbol: str, bid: float, ask: float, qty: float = 5.0) -> dict:
    ts = T0_US + ms * 1000
    return {"ts_exchange": ts - 5000, "ts_local": ts, "venue": venue, "symbol": symbol,
            "bid_px": bid, "bid_qty": qty, "ask_px": ask, "ask_qty": qty}


ROWS = [
    _q(0, "a", "BTC-USDT", 99.9, 100.0),
    _q(10, "b", "BTC-USD", 99.95, 100.05),     # no cross
    _q(20, "b", "BTC-USD", 100.3, 100.4),      # a ask 100.0 < b bid 100.3: +30 bps gross
    _q(30, "b", "BTC-USD", 100.35, 100.45),    # still open (one episode, one alert)
    _q(40, "a", "BTC-USDT", 100.3, 100.4),     # a catches up: closed
    _q(50, "a", "BTC-USDT", 99.5, 99.6),       # a drops: buy a, sell b opens again
]


def test_live_detector_on_a_real_bus_writes_signals_and_alerts_once_per_episode(tmp_path):

    lake = Lake(tmp_path / "lake")
    alerts = tmp_path / "alerts.jsonl"
    cfg = ArbConfig(fees_bps={"a": 5.0, "b": 5.0}, sizes={"BTC": 1.0}, triangles=[],
                    alerts=[f"file:{alerts}"], flush_every_s=0.0)
    seen: list[tuple[dict, float]] = []

    frames = [("quotes", [r]) for r in ROWS]
    frames += [("trades", [{"venue": "a"}]),  # other tables are ignored
               ("quotes", [_q(60, "b", "BTC-USD", 99.4, 99.5)])]  # closes it
    det = asyncio.run(run_live_on_a_bus(cfg, lake, ["quotes"], frames, ("quotes", len(ROWS) + 1),
                                        sinks=make_sinks(cfg.alerts), on_signal=lambda s, t: seen.append((s, t))))
    assert det.rows_in == len(ROWS) + 1
    # reference: the historical scan of the same rows
    q = pl.DataFrame(ROWS + [_q(60, "b", "BTC-USD", 99.4, 99.5)]).with_columns(
        pl.col("ts_local", "ts_exchange").cast(pl.Datetime("us", "UTC")))
    want = cross_venue(q.lazy(), fees={"a": 5.0, "b": 5.0}, size=1.0).collect()
    assert want.height == 3  # t=20, t=30 and t=50
    got = lake.scan("arbitrage_signals").sort("ts").collect()
    assert got.select("ts", "buy_venue", "sell_venue").rows() == want.select(
        "ts", "buy_venue", "sell_venue").rows()
    assert got["net_edge_bps"].to_list() == pytest.approx(want["net_edge_bps"].to_list())
    lines = [json.loads(x) for x in alerts.read_text().splitlines()]
    assert [x["key"] for x in lines] == ["BTC a>b", "BTC a>b"]  # two episodes, two alerts
    assert all(x["source"] == "arbitrage" and x["kind"] == "opportunity" for x in lines)
    assert len(seen) == 3


def test_lab_arbitrage_replay_cli_writes_signals(tmp_path, sim_lake, capsys):
    lake = Lake(tmp_path / "lake")
    quotes = sim_lake.scan("quotes").sort("ts_local").head(30_000).collect()
    lake.append("quotes", quotes)
    cfg = tmp_path / "arb.toml"
    alerts = tmp_path / "alerts.jsonl"
    cfg.write_text(f"""
[arbitrage]
fees_bps = {{ binance = 0.5, coinbase = 0.5, kraken = 0.5 }}
sizes = {{ BTC = 0.01, ETH = 0.2, SOL = 5.0 }}
triangles = []
alerts = ["file:{alerts}"]
alert_min_edge_bps = 1.0
""")
    from lab.cli import main

    assert main(["arbitrage", "--replay", "--lake", str(lake.root), "--config", str(cfg)]) == 0
    want = cross_venue(quotes.lazy(), fees=0.5, size={"BTC": 0.01, "ETH": 0.2, "SOL": 5.0}).collect()
    got = lake.scan("arbitrage_signals").collect()
    assert got.height == want.height > 0
    lines = alerts.read_text().splitlines()
    assert lines and all(json.loads(x)["payload"]["net_edge_bps"] >= 1.0 for x in lines)
    bad = tmp_path / "bad.toml"
    bad.write_text("[arbitrage]\nfees = 3\n")
    assert main(["arbitrage", "--replay", "--lake", str(lake.root), "--config", str(bad)]) == 2
    assert "fees" in capsys.readouterr().err
