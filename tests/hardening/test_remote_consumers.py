"""``lab arbitrage`` and ``lab risk`` on another machine (issue 18): pointed at the data
service (``lab serve``, ``--bus grpc://...``) they write the same signals and risk rows as
the same commands pointed at the live bus (``ws://``) over the same published frames (the
reference is the ws run). A wrong token is one line and exit 2.

Real processes: a bus hub and a publisher (a thread here, answering restatement requests
as a recorder does), ``lab serve`` and the four consumers as subprocesses, all on free
ports."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from bus_fixtures import ROOT, LoopThread, arb_config, free_port, now_us, start_service, wait_until
from polars.testing import assert_frame_equal

from lab.bus import Hub, Publisher
from lab.lake import Lake

BUS_TOKEN = "remote-consumers-bus-token-0123456789"
SERVICE_TOKEN = "remote-consumers-service-token-0123456789"
VENUES = {"binance": "BTC-USDT", "kraken": "BTC-USD"}


class Books:
    """The publisher's books: what it publishes as diffs, and restates on request."""

    def __init__(self) -> None:
        self.levels: dict[str, dict[tuple[str, float], float]] = {v: {} for v in VENUES}
        self.seq = dict.fromkeys(VENUES, 0)
        self.ts = now_us()

    def rows(self, venue: str, new: dict[tuple[str, float], float], snapshot: bool) -> list[dict]:
        """Move ``venue``'s book to ``new``: the message's rows (a diff unless ``snapshot``)."""
        self.seq[venue] += 1
        self.ts += 1000
        old = self.levels[venue]
        if snapshot:
            changed = dict(new)
        else:
            changed = {k: 0.0 for k in old if k not in new}
            changed.update({k: q for k, q in new.items() if old.get(k) != q})
        self.levels[venue] = dict(new)
        return [self._row(venue, side, px, qty, snapshot, self.ts) for (side, px), qty in sorted(changed.items())]

    def restatement(self) -> list[dict]:
        return [self._row(v, side, px, qty, True, self.ts) for v in VENUES
                for (side, px), qty in sorted(self.levels[v].items())]

    def _row(self, venue: str, side: str, px: float, qty: float, snap: bool, ts: int) -> dict:
        return {"ts_exchange": ts - 500, "ts_local": ts, "venue": venue, "symbol": VENUES[venue], "side": side,
                "price": px, "qty": qty, "is_snapshot": snap, "seq": self.seq[venue]}


def book(mid: float, spread: float = 0.2) -> dict[tuple[str, float], float]:
    """Five levels a side around ``mid``, 0.4 BTC each (a 1 BTC size walks three)."""
    out = {}
    for k in range(5):
        out[("bid", round(mid - spread / 2 - 0.1 * k, 2))] = 0.4
        out[("ask", round(mid + spread / 2 + 0.1 * k, 2))] = 0.4
    return out


def quote(venue: str, bid: float, ask: float) -> dict:
    ts = now_us()
    return {"ts_exchange": ts - 1000, "ts_local": ts, "venue": venue, "symbol": VENUES[venue],
            "bid_px": bid, "bid_qty": 1.0, "ask_px": ask, "ask_qty": 1.0}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A hub and its publisher (in a thread), ``lab serve`` on a free port."""
    tmp = tmp_path_factory.mktemp("remote")
    env = {"LAB_DATA": str(tmp / "data"), "LAB_BUS_TOKEN": BUS_TOKEN, "LAB_SERVICE_TOKEN": SERVICE_TOKEN}
    lt = LoopThread()
    hub = lt.call(Hub("127.0.0.1", free_port(), token=BUS_TOKEN).start())
    pub = Publisher(hub.url + "/publish", token=BUS_TOKEN)
    books = Books()
    asks: list[int] = []

    def on_control(row: dict) -> None:  # as a recorder: every book, to the new subscriber only
        asks.append(row["to"])
        pub.publish_nowait("book_updates", books.restatement(), to=row["to"])

    pub.on_control = on_control
    lt.call(pub.start())
    port = free_port()
    log = tmp / "serve.log"
    serve = start_service(["serve", "--port", str(port), "--bus", hub.url, "--lake", str(tmp / "svc-lake")],
                          log, env)
    try:
        wait_until(lambda: "data service on" in log.read_text(), 120, "lab serve", serve)
        wait_until(lambda: hub.pubs, 30, "the publisher")
        yield {"tmp": tmp, "env": env, "lt": lt, "hub": hub, "pub": pub, "books": books, "asks": asks,
               "url": f"grpc://127.0.0.1:{port}"}
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(60)
        lt.call(pub.close())
        lt.call(hub.stop())
        lt.close()


def _publish(s: dict, table: str, rows: list[dict]) -> None:
    s["lt"].call(s["pub"].publish(table, rows))


def _alerts(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def test_arbitrage_and_risk_via_the_service_write_what_they_write_on_the_bus(setup):
    s = setup
    tmp, hub, books = s["tmp"], s["hub"], s["books"]
    # before any consumer: nobody sees these, the restatement stands for them
    for v, mid in (("binance", 100.0), ("kraken", 100.0)):
        _publish(s, "book_updates", books.rows(v, book(mid), snapshot=True))
    wait_until(lambda: hub.frames_in >= 2, 30, "the first books on the hub")

    positions = tmp / "positions.toml"
    positions.write_text("".join(f'[[position]]\nvenue = "{v}"\nasset = "BTC"\nsymbol = "{sym}"\nqty = {q}\n'
                                 f"avg_entry = 100.0\n\n" for (v, sym), q in zip(VENUES.items(), (2.0, -0.5),
                                                                                  strict=True)))
    risk_cfg = tmp / "risk.toml"
    risk_cfg.write_text("[risk]\ncapital = 10000.0\nalerts = []\nstale_after_s = 600.0\npaper = false\n"
                        "history_days = 1.0\n")
    token_file = tmp / "service_token"
    token_file.write_text(SERVICE_TOKEN + "\n")
    token_file.chmod(0o600)
    procs: dict[str, subprocess.Popen] = {}
    lakes: dict[str, Lake] = {}
    alerts: dict[str, Path] = {}
    env = {**s["env"], "LAB_SERVICE_TOKEN": ""}  # the arbitrage grpc run reads --token-file
    for via, url in (("ws", hub.url), ("grpc", s["url"])):
        alerts[via] = tmp / f"alerts-{via}.jsonl"
        cfg = arb_config(tmp, alerts[via], name=f"arb-{via}.toml", fees_bps="binance = 1.0, kraken = 2.0", depth=5,
                         max_age_ms=600000.0, flush_every_s=0.5)
        lakes[f"arb-{via}"] = Lake(tmp / f"lake-arb-{via}")
        lakes[f"risk-{via}"] = Lake(tmp / f"lake-risk-{via}")
        extra = ["--token-file", str(token_file)] if via == "grpc" else []
        procs[f"arb-{via}"] = start_service(
            ["arbitrage", "--bus", url, "--lake", str(lakes[f"arb-{via}"].root), "--config", str(cfg), *extra],
            tmp / f"arb-{via}.log", env)
        procs[f"risk-{via}"] = start_service(
            ["risk", "--bus", url, "--lake", str(lakes[f"risk-{via}"].root), "--config", str(risk_cfg),
             "--positions", str(positions), "--no-paper", "--every", "0.3"],
            tmp / f"risk-{via}.log", s["env"])

    def logs() -> str:
        return "\n".join(f"== {k}\n{(tmp / f'{k}.log').read_text()[-3000:]}" for k in procs)

    try:
        # ws: arbitrage (book_updates) and risk (quotes); the service: one stream each
        wait_until(lambda: len(hub.subs) >= 4, 240, "four subscriptions on the hub")
        for name, p in procs.items():
            assert p.poll() is None, f"{name} exited\n{logs()}"
        wait_until(lambda: len(s["asks"]) >= 2, 60, "the restatements")  # ws arbitrage, the service's stream
        time.sleep(0.5)  # the restatements reach both before the updates

        rng = random.Random(18)
        mids = {"binance": 100.0, "kraken": 100.0}
        marks = {}
        for i in range(240):
            v = "binance" if i % 2 else "kraken"
            mids[v] = round(mids[v] + rng.choice((-0.3, -0.1, 0.1, 0.3)) + (0.6 if i % 37 == 5 else 0.0), 2)
            _publish(s, "book_updates", books.rows(v, book(mids[v]), snapshot=i % 50 == 49))
            if i % 4 == 0:
                marks = {w: (m - 0.1, m + 0.1) for w, m in mids.items()}
                _publish(s, "quotes", [quote(w, *marks[w]) for w in VENUES])
        # a quiet market, then the marker: kraken's bids far above binance's asks
        _publish(s, "book_updates", books.rows("kraken", book(100.0), snapshot=False))
        _publish(s, "book_updates", books.rows("binance", book(100.0), snapshot=False))
        _publish(s, "book_updates", books.rows("kraken", book(150.0), snapshot=False))

        def marked(a: list[dict]) -> bool:
            return any(x["payload"].get("sell_venue") == "kraken" and x["payload"].get("sell_px", 0) > 140
                       for x in a)

        for via in ("ws", "grpc"):
            wait_until(lambda via=via: marked(_alerts(alerts[via])), 120, f"the marker alert ({via})",
                       procs[f"arb-{via}"])

        def last_marks(lake: Lake) -> dict:
            if not lake.exists("risk_snapshots"):
                return {}
            df = lake.scan("risk_snapshots").filter(pl.col("metric") == "mark").collect()
            if df.is_empty():
                return {}
            last = df.filter(pl.col("ts") == df["ts"].max())
            return dict(zip(last["key"].to_list(), last["value"].to_list(), strict=True))

        want_marks = {f"{w}:BTC": sum(marks[w]) / 2 for w in VENUES}  # mid of the last quotes
        for via in ("ws", "grpc"):
            wait_until(lambda via=via: last_marks(lakes[f"risk-{via}"]) == pytest.approx(want_marks), 120,
                       f"the last marks ({via})", procs[f"risk-{via}"])
    except AssertionError as e:
        raise AssertionError(f"{e}\n{logs()}") from None
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        rcs = {k: p.wait(60) for k, p in procs.items()}
    assert rcs == dict.fromkeys(procs, 0), logs()

    def signals(via: str) -> pl.DataFrame:
        return lakes[f"arb-{via}"].scan("arbitrage_signals").collect().sort(pl.all())

    ref, got = signals("ws"), signals("grpc")
    assert ref.height >= 10 and ref["buy_venue"].n_unique() == 2  # both directions crossed
    assert_frame_equal(got, ref)
    assert [a["key"] for a in _alerts(alerts["grpc"])] == [a["key"] for a in _alerts(alerts["ws"])]

    def last_snapshot(via: str) -> pl.DataFrame:
        df = lakes[f"risk-{via}"].scan("risk_snapshots").collect()
        # the last snapshot; limits carry quote ages (wall clock), drawdowns the sampled history
        return (df.filter(pl.col("ts") == df["ts"].max(), pl.col("scope") != "limit",
                          ~pl.col("metric").str.contains("drawdown"))
                .drop("ts").sort("scope", "key", "metric"))

    ref_risk, got_risk = last_snapshot("ws"), last_snapshot("grpc")
    assert ref_risk.height > 20
    assert_frame_equal(got_risk, ref_risk)
    # independently: PnL of +2 BTC at binance and -0.5 BTC at kraken, both bought at 100, at the last mids
    want_pnl = 2.0 * (want_marks["binance:BTC"] - 100.0) - 0.5 * (want_marks["kraken:BTC"] - 100.0)
    pnl = got_risk.filter(scope="portfolio", metric="unrealized_pnl")["value"].item()
    assert pnl == pytest.approx(want_pnl, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("app", ["arbitrage", "risk"])
def test_a_wrong_service_token_is_one_line_and_exit_2(setup, app, tmp_path):
    env = {**os.environ, **setup["env"], "LAB_SERVICE_TOKEN": "not-the-service-token"}
    out = subprocess.run([sys.executable, "-m", "lab.cli", app, "--bus", setup["url"], "--no-write",
                          "--lake", str(tmp_path / "lake"), "--alerts", "log"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if "token" in line]
    assert errors == [f"lab {app}: data service {setup['url']} refused the token (wrong token): use the "
                      "service's token (LAB_SERVICE_TOKEN, --token-file, or $LAB_DATA/run/service_token where "
                      "lab serve runs)"], out.stderr
    assert "Traceback" not in out.stderr and "not-the-service-token" not in out.stderr


def test_lab_paper_trades_through_the_service_and_stops_cleanly(setup):
    """``lab paper`` via the service: both of its tables arrive (the session starts only
    once book_updates and trades of its instrument came), SIGTERM closes the session."""
    from bus_fixtures import book_row, trade

    tmp, hub = setup["tmp"], setup["hub"]
    lake = Lake(tmp / "lake-paper")
    log = tmp / "paper.log"
    n0 = len(hub.subs)
    proc = start_service(["paper", "mm", "-p", "venue=binance", "-p", "symbol=BTC-USDT", "--bus", setup["url"],
                          "--lake", str(lake.root), "--flush", "0.2", "--quiet", "--session", "remote"],
                         log, setup["env"])

    def orders(status: str) -> int:
        return lake.exists("paper_orders") and lake.scan("paper_orders").filter(
            pl.col("status") == status).collect().height

    try:
        wait_until(lambda: len(hub.subs) >= n0 + 2, 180, "the service's two streams for lab paper", proc)
        _publish(setup, "book_updates", [book_row("binance", "BTC-USDT", s, p, 1.0, True, 1)
                                         for s, p in (("bid", 99.9), ("bid", 99.8), ("ask", 100.1), ("ask", 100.2))])
        for i in range(600):
            if orders("session_start"):
                break
            _publish(setup, "book_updates", [book_row("binance", "BTC-USDT", "bid", 99.9, 1.0 + i % 3, False, i + 2)])
            _publish(setup, "trades", [trade("binance", "BTC-USDT", i, 100.1, 0.001, "buy")])
            time.sleep(0.05)
        assert orders("session_start"), log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    assert rc == 0, log.read_text()
    assert "from data service grpc://" in log.read_text()
    ends = lake.scan("paper_orders").filter(pl.col("status") == "session_end").collect()
    assert ends["session"].to_list() == ["remote"]
