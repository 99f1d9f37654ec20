"""Each dashboard page in AppTest against a small known lake (and the simulator's lake).

Reference values are computed here from the rows the fixture wrote, with
plain Python loops, never with the helpers the pages use.
"""

from __future__ import annotations

import datetime as dt
import math

import polars as pl
import pytest
import st_synth as synth
from st_helpers import figures, metrics

DESK = ["pages/live_market.py", "pages/arbitrage_monitor.py", "pages/microstructure.py", "pages/feed_health.py"]
# pages whose data the simulator lake does not hold (it has no risk monitor running)
SIM_DESK = DESK
TITLES = {"pages/live_market.py": "Live market", "pages/arbitrage_monitor.py": "Arbitrage monitor",
          "pages/microstructure.py": "Microstructure", "pages/feed_health.py": "Feed health"}


def _last_quote(written: dict, venue: str, asset: str) -> dict:
    sym = synth.symbol(venue, asset)
    best = None
    for r in written["quotes"].iter_rows(named=True):
        if r["venue"] == venue and r["symbol"] == sym and (best is None or r["ts_exchange"] >= best["ts_exchange"]):
            best = r
    return best


def test_live_market_shows_each_venue_mid_bid_ask_and_tape(synth_lake, app_on):
    root, written = synth_lake
    at = app_on(root)  # the default page

    assert [t.value for t in at.title] == ["Live market"]
    assert at.selectbox[0].options == ["BTC-USD", "ETH-USD"]
    m = metrics(at)
    for venue in synth.VENUES:
        q = _last_quote(written, venue, "BTC")
        assert m[f"{venue} mid"] == f"{(q['bid_px'] + q['ask_px']) / 2:,.2f}"
    last_trade = max(written["trades"].filter(pl.col("symbol").str.starts_with("BTC-")).iter_rows(named=True),
                     key=lambda r: (r["ts_exchange"], r["venue"]))
    assert m["last trade"] == f"{last_trade['price']:,.2f}"

    fig = figures(at)["bid_ask"]
    assert sorted(fig["traces"]) == sorted(f"{v} {s}" for v in synth.VENUES for s in ("bid", "ask"))
    for venue in synth.VENUES:
        q = _last_quote(written, venue, "BTC")
        assert fig["traces"][f"{venue} bid"]["y"][-1] == q["bid_px"]
        assert fig["traces"][f"{venue} ask"]["y"][-1] == q["ask_px"]
        # the last minute only: the first point is at most 60 s before the last
        xs = [dt.datetime.fromisoformat(x) for x in fig["traces"][f"{venue} bid"]["x"]]
        assert dt.timedelta(seconds=55) <= xs[-1] - xs[0] <= dt.timedelta(seconds=60)

    tape = at.dataframe[0].value
    assert len(tape) == 50 and set(tape["venue"]) <= set(synth.VENUES)
    # the lake's newest row is ~34 h old here: every feed is flagged stale, in red
    stale = [md.value for md in at.markdown if ":red[STALE" in md.value]
    assert len(stale) == len(synth.VENUES)


def test_live_market_switches_market_through_the_sidebar(synth_lake, app_on):
    root, written = synth_lake
    at = app_on(root)
    at.selectbox[0].select("ETH-USD").run()
    assert not at.exception
    m = metrics(at)
    for venue in synth.VENUES:
        q = _last_quote(written, venue, "ETH")
        assert m[f"{venue} mid"] == f"{(q['bid_px'] + q['ask_px']) / 2:,.2f}"
    assert "ETH-USD" in figures(at)["bid_ask"]["title"]


def test_live_market_health_is_green_for_a_fresh_feed_and_red_for_a_silent_one(tmp_path, app_on):
    from lab.lake import Lake

    lake = Lake(tmp_path / "lake")
    now = dt.datetime.now(dt.timezone.utc)
    fresh = synth.frames(now - dt.timedelta(seconds=2), 2.0)["quotes"].filter(pl.col("venue") != "kraken")
    old = synth.frames(now - dt.timedelta(minutes=5), 2.0)["quotes"].filter(pl.col("venue") == "kraken")
    lake.append("quotes", pl.concat([old, fresh]))

    at = app_on(str(lake.root))

    md = [m.value for m in at.markdown]
    assert any(v.startswith("**kraken** :red[STALE") for v in md), md
    assert any(v.startswith("**binance** :green[live") for v in md), md
    assert any(v.startswith("**coinbase** :green[live") for v in md), md


def test_feed_health_counts_each_kind_and_ingestion_rate(synth_lake, app_on):
    root, written = synth_lake
    at = app_on(root, "pages/feed_health.py")

    assert [t.value for t in at.title] == ["Feed health"]
    want: dict[str, int] = {}
    for _, kind, n in synth.FEED_EVENTS:
        want[kind] = want.get(kind, 0) + n
    m = metrics(at)
    assert m["Gaps"] == str(want["gap"])
    assert m["Resyncs"] == str(want["resync"])
    assert m["Reconnects"] == str(want["reconnect"])
    assert m["Rejected messages"] == str(want["rejected_message"])
    assert m["Checksum failures"] == str(want["checksum_failure"])
    assert m["Other events"] == "0"
    # 2 markets x (10 quotes/s + 2 trades/s) per venue, by construction of the fixture
    for venue in synth.VENUES:
        assert m[f"{venue} rows/s"] == "24.0"

    figs = figures(at)
    bars = figs["events_bar"]["traces"]
    got = {(kind, v): n for kind, t in bars.items() for v, n in zip(t["x"], t["y"])}
    assert got == {(kind, v): n for v, kind, n in synth.FEED_EVENTS}
    assert sorted(figs["rate_lines"]["traces"]) == sorted(synth.VENUES)
    latest = at.dataframe[-1].value
    assert len(latest) == sum(n for *_, n in synth.FEED_EVENTS)


def _net_bps(buy: dict, sell: dict, f_buy: float, f_sell: float) -> float:
    return (sell["bid_px"] * (1 - f_sell / 1e4) / (buy["ask_px"] * (1 + f_buy / 1e4)) - 1) * 1e4


def test_arbitrage_monitor_edges_net_of_fees_signals_and_history(synth_lake, app_on, tmp_path, monkeypatch):
    import json

    root, written = synth_lake
    cfg = tmp_path / "arbitrage.toml"  # top of book, base-tier fees; the test edits two of them on the page
    cfg.write_text("[arbitrage]\nfees_bps = { binance = 10.0, coinbase = 60.0, kraken = 40.0 }\n"
                   "sizes = { BTC = 0.1, ETH = 1.0 }\ndepth = 0\nmin_edge_bps = 0.0\nmax_age_ms = 2000.0\n")
    monkeypatch.setenv("LAB_ARBITRAGE_CONFIG", str(cfg))
    alerts = tmp_path / "data" / "alerts"  # app_on points LAB_DATA at tmp_path/data
    alerts.mkdir(parents=True)
    (alerts / "arbitrage.jsonl").write_text("\n".join(json.dumps(a) for a in [
        {"ts": "2026-11-22T12:00:30+00:00", "source": "arbitrage", "kind": "cross_venue", "key": "BTC:kraken>coinbase",
         "message": "BTC buy kraken sell coinbase 2.5 bps", "payload": {}},
        {"ts": "2026-11-22T12:00:31+00:00", "source": "risk", "kind": "limit", "key": "gross",
         "message": "not an arbitrage alert", "payload": {}}]) + "\n")
    at = app_on(root, "pages/arbitrage_monitor.py")
    assert [t.value for t in at.title] == ["Arbitrage monitor"]

    # Zero fees on coinbase and kraken: kraken sits 3 bps under the reference,
    # coinbase 3 bps over it, so buying kraken and selling coinbase is best.
    at.number_input(key="fee_coinbase").set_value(0.0)
    at.number_input(key="fee_kraken").set_value(0.0)
    at.run()
    assert not at.exception
    fees = {"binance": 10.0, "coinbase": 0.0, "kraken": 0.0}
    last = {v: _last_quote(written, v, "BTC") for v in synth.VENUES}
    pairs = [(b, s, _net_bps(last[b], last[s], fees[b], fees[s]))
             for b in synth.VENUES for s in synth.VENUES if b != s]
    b, s, best = max(pairs, key=lambda p: p[2])
    assert (b, s) == ("kraken", "coinbase")
    m = metrics(at)
    assert m["Best net edge (bps)"] == f"{best:+.2f}"
    assert m["Best pair"] == f"{b} → {s}"
    size = 0.1
    profit = (last[s]["bid_px"] - last[b]["ask_px"]) * size  # no fees on either leg
    assert math.isclose(float(m[f"Profit for {size:g} BTC (USD)"].replace(",", "")), profit, abs_tol=0.006)

    # lab.arbitrage's episodes: only kraken -> coinbase pays, and it pays all along
    eps = next(d.value for d in at.dataframe if "peak_net_edge_bps" in d.value.columns)
    assert list(zip(eps["buy_venue"], eps["sell_venue"])) == [("kraken", "coinbase")]
    assert m["Episodes"] == "1"

    hist = figures(at)["edge_history"]
    assert sorted(hist["traces"]) == sorted(f"{x}->{y}" for x in synth.VENUES for y in synth.VENUES if x != y)
    assert len(hist["traces"]["kraken->coinbase"]["y"]) == 180  # one point per second of the 3 minutes

    logged = [d.value for d in at.dataframe if "message" in d.value.columns]
    assert len(logged) == 1 and logged[0]["message"].tolist() == ["BTC buy kraken sell coinbase 2.5 bps"]

    signals = [d.value for d in at.dataframe if "net_edge_bps" in d.value.columns and "kind" in d.value.columns]
    assert len(signals) == 1
    assert signals[0]["net_edge_bps"].tolist() == [2.5, 1.5]  # newest first


def test_microstructure_spreads_depth_and_lead_lag(synth_lake, app_on):
    root, written = synth_lake
    at = app_on(root, "pages/microstructure.py")
    assert [t.value for t in at.title] == ["Microstructure"]

    m = metrics(at)
    for venue in synth.VENUES:
        rows = [r for r in written["quotes"].iter_rows(named=True) if r["symbol"] == synth.symbol(venue, "BTC")
                and r["venue"] == venue]
        spreads = [(r["ask_px"] - r["bid_px"]) / ((r["ask_px"] + r["bid_px"]) / 2) * 1e4 for r in rows]
        assert m[f"{venue} spread (bps)"] == f"{sum(spreads) / len(spreads):.2f}"
    figs = figures(at)
    assert sorted(figs["spread"]["traces"]) == sorted(synth.VENUES)
    assert sorted(figs["depth"]["traces"]) == sorted(f"{v} {s}" for v in synth.VENUES for s in ("ask_depth", "bid_depth"))
    # the fixture's asks are 5 levels of 2.0 at every snapshot
    assert set(figs["depth"]["traces"]["binance ask_depth"]["y"]) == {10.0}
    # venues quote the same random walk at the same instants: nobody lags
    assert [m[f"{v} lag"] for v in sorted(synth.VENUES)] == ["+0 ms"] * 3
    bars = next(iter(figs["leadlag"]["traces"].values()))
    assert bars["x"] == sorted(synth.VENUES) and all(abs(y) < 10.0 for y in bars["y"])  # one 10 ms step


def test_risk_monitor_shows_the_latest_snapshot_breaches_and_history(synth_lake, app_on):
    root, written = synth_lake
    at = app_on(root, "pages/risk_monitor.py")
    assert [t.value for t in at.title] == ["Risk monitor"]

    m = metrics(at)
    assert m["Equity"] == "100,020.00" and m["Total PnL"] == "+20.00"  # the third (latest) snapshot
    assert m["Gross exposure"] == "30,002" and m["Leverage"] == "0.30x"
    assert m["hist var 99"] == "1,234.50"
    assert any(md.value.startswith(":red[**BREACH gross**") for md in at.markdown)
    figs = figures(at)
    assert figs["pnl"]["traces"][next(iter(figs["pnl"]["traces"]))]["y"] == [0.0, 10.0, 20.0]
    assert len(figs["exposure"]["traces"]) == 2


@pytest.mark.parametrize("page", SIM_DESK)
def test_each_page_runs_on_the_simulator_lake(sim_lake, app_on, page):
    at = app_on(str(sim_lake.root), page)

    assert [t.value for t in at.title] == [TITLES[page]]
    assert at.metric, "every page shows metrics"
    figs = figures(at)
    assert figs and all(f["traces"] for f in figs.values()), "charts have data"


def test_user_values_bind_as_parameters_never_as_sql(synth_lake, monkeypatch):
    from streamlit_apps import data

    monkeypatch.setenv("LAB_LAKE", synth_lake[0])
    hostile = "BTC-USD' OR '1'='1"
    got = data.sql("SELECT count(*) AS n FROM trades WHERE symbol = ?", [hostile])
    assert got["n"].to_list() == [0]
    got = data.sql("SELECT count(*) AS n FROM trades WHERE symbol = ?", ["BTC-USD"])
    assert got["n"].to_list() == [sum(1 for s in written_symbols(synth_lake) if s == "BTC-USD")]


def written_symbols(synth_lake) -> list[str]:
    return synth_lake[1]["trades"]["symbol"].to_list()


def test_recorder_status_files_show_on_feed_health_and_mark_a_disconnected_venue(tmp_path, app_on):
    import json

    from lab.lake import Lake

    lake = Lake(tmp_path / "lake")
    now = dt.datetime.now(dt.timezone.utc)
    lake.append("quotes", synth.frames(now - dt.timedelta(seconds=2), 2.0)["quotes"])
    run = tmp_path / "data" / "run"  # app_on points LAB_DATA at tmp_path/data
    run.mkdir(parents=True)
    venues = {v: {"connected": v != "coinbase", "msgs_per_s": 12.5, "gaps": 2, "resyncs": 1, "reconnects": 3,
                  "rejected": 0, "checksum_failures": 0, "stale": 0, "last_error": ""} for v in synth.VENUES}
    (run / "recorder-desk.json").write_text(json.dumps({"name": "desk", "updated": now.isoformat(),
                                                       "venues": venues}))

    at = app_on(str(lake.root), "pages/feed_health.py")

    md = [m.value for m in at.markdown]
    assert any(v.startswith("**coinbase** :red[DISCONNECTED") for v in md), md
    assert any(v.startswith("**binance** :green[live") for v in md), md
    table = at.dataframe[-1].value
    assert sorted(table["venue"]) == sorted(synth.VENUES)
    assert set(table["reconnects"]) == {3} and set(table["recorder"]) == {"desk"}
    assert dict(zip(table["venue"], table["connected"]))["coinbase"] == False  # noqa: E712


def test_paper_vs_backtest_explains_how_to_get_a_session_when_there_is_none(synth_lake, app_on):
    at = app_on(synth_lake[0], "pages/paper_vs_backtest.py")

    assert [t.value for t in at.title] == ["Paper vs backtest"]
    assert "No paper sessions in the lake yet" in at.info[0].value
