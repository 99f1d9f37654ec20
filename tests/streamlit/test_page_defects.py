"""Defects found by a new user on the dashboards (issue 16), each pinned by a test.

Reference values come from the rows written here, computed with plain Python.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
import st_synth as synth
from st_helpers import metrics

T0 = dt.datetime(2026, 11, 22, 12, tzinfo=dt.timezone.utc)


def _risk_rows_with_two_positions_on_one_key(ts: dt.datetime) -> pl.DataFrame:
    """A snapshot where the paper runner and the positions file both hold ``binance:BTC``."""
    rows = [(ts, "portfolio", "total", "equity", 100_000.0, ""),
            (ts, "portfolio", "total", "total_pnl", 5.0, "")]
    for exposure in (20_000.0, 1_000.0):  # config position, then paper position
        rows += [(ts, "position", "binance:BTC", m, v, "") for m, v in
                 (("mark", 100_000.0), ("exposure", exposure), ("unrealized_pnl", 1.0), ("total_pnl", 2.0))]
    for k in ("asset_notional:BTC", "asset_notional:BTC"):
        rows += [(ts, "limit", k, "value", 21_000.0, "ok"), (ts, "limit", k, "limit", 50_000.0, "ok"),
                 (ts, "limit", k, "breached", 0.0, "ok")]
    return pl.DataFrame(rows, schema=["ts", "scope", "key", "metric", "value", "detail"], orient="row")


def test_risk_monitor_shows_two_positions_sharing_a_key_instead_of_a_compute_error(tmp_path, app_on):
    from lab.lake import Lake

    lake = Lake(tmp_path / "lake")
    lake.append("risk_snapshots", _risk_rows_with_two_positions_on_one_key(T0))

    at = app_on(str(lake.root), "pages/risk_monitor.py")  # app_on asserts no exception

    assert metrics(at)["Equity"] == "100,000.00"
    pos = next(d.value for d in at.dataframe if "exposure" in d.value.columns and "mark" in d.value.columns)
    assert sorted(pos["exposure"].tolist()) == [1_000.0, 20_000.0]
    assert list(pos["key"]) == ["binance:BTC", "binance:BTC"]


def _last(written: dict, table: str, venue: str, asset: str) -> pl.DataFrame:
    df = written[table].filter((pl.col("venue") == venue) & (pl.col("symbol") == synth.symbol(venue, asset)))
    return df.filter(pl.col("ts_exchange") == df["ts_exchange"].max())


def _edges_table(at) -> pl.DataFrame:
    df = next(d.value for d in at.dataframe if "buy_px" in d.value.columns and "net_edge_bps" in d.value.columns)
    return pl.from_pandas(df)


def _monitor_with(cfg: Path, arbitrage: str, root: str, app_on, monkeypatch: pytest.MonkeyPatch):
    """The arbitrage monitor on the lake ``root``, given the detector's config file ``cfg``
    (``arbitrage``: the body of its ``[arbitrage]`` table) as `lab demo` passes it."""
    cfg.write_text("[arbitrage]\n" + arbitrage)
    monkeypatch.setenv("LAB_ARBITRAGE_CONFIG", str(cfg))
    return app_on(root, "pages/arbitrage_monitor.py")


def test_arbitrage_monitor_applies_the_detectors_config_file(synth_lake, app_on, tmp_path, monkeypatch):
    """`lab demo` runs the detector with 1 bp fees: the page must use those, not base-tier fees."""
    root, written = synth_lake
    cfg = tmp_path / "arbitrage.demo.toml"
    at = _monitor_with(cfg, "fees_bps = { binance = 1.0, coinbase = 1.0, kraken = 1.0 }\n"
                       "sizes = { BTC = 0.05 }\ndepth = 0\nmin_edge_bps = 0.0\nmax_age_ms = 2000.0\n",
                       root, app_on, monkeypatch)

    last = {v: _last(written, "quotes", v, "BTC").row(0, named=True) for v in synth.VENUES}
    f = 1.0 / 1e4
    ref = {(b, s): (last[s]["bid_px"] * (1 - f) / (last[b]["ask_px"] * (1 + f)) - 1) * 1e4
           for b in synth.VENUES for s in synth.VENUES if b != s}
    (b, s), best = max(ref.items(), key=lambda kv: kv[1])
    m = metrics(at)
    assert m["Best net edge (bps)"] == f"{best:+.2f}"
    assert m["Best pair"] == f"{b} → {s}"
    profit = 0.05 * (last[s]["bid_px"] * (1 - f) - last[b]["ask_px"] * (1 + f))
    assert m["Profit for 0.05 BTC (USD)"] == f"{profit:+,.2f}"  # for the size it says, not a smaller one
    edges = _edges_table(at)
    for r in edges.iter_rows(named=True):
        assert abs(r["net_edge_bps"] - ref[(r["buy_venue"], r["sell_venue"])]) < 1e-9
    assert any(str(cfg) in c.value for c in at.caption)


def test_arbitrage_monitor_walks_the_books_for_the_size_in_depth_mode(synth_lake, app_on, tmp_path, monkeypatch):
    """Depth N (the demo's detector walks 10 levels): a size beyond the best level is walked, as
    `lab.arbitrage.cross_venue` does on the detector's books, never priced at the top level."""
    root, written = synth_lake
    at = _monitor_with(tmp_path / "arbitrage.toml", "fees_bps = { binance = 0.0, coinbase = 0.0, kraken = 0.0 }\n"
                       "sizes = { BTC = 3.0 }\ndepth = 5\nmax_age_ms = 2000.0\n", root, app_on, monkeypatch)

    def vwap(levels: list[tuple[float, float]], size: float) -> float:
        left, cost = size, 0.0
        for px, qty in levels:
            take = min(left, qty)
            cost += take * px
            left -= take
            if left <= 1e-12:
                break
        assert left <= 1e-12
        return cost / size

    books = {}
    for v in synth.VENUES:
        snap = _last(written, "book_snapshots", v, "BTC").sort("level")
        asks = [(r["price"], r["qty"]) for r in snap.iter_rows(named=True) if r["side"] == "ask"]
        bids = [(r["price"], r["qty"]) for r in snap.iter_rows(named=True) if r["side"] == "bid"]
        assert asks[0][1] < 3.0  # the best ask alone cannot fill the size: the walk matters
        books[v] = (vwap(asks, 3.0), vwap(bids, 3.0))
    edges = _edges_table(at)
    assert len(edges) == 6
    for r in edges.iter_rows(named=True):
        buy, sell = books[r["buy_venue"]][0], books[r["sell_venue"]][1]
        assert abs(r["buy_px"] - buy) < 1e-6 and abs(r["sell_px"] - sell) < 1e-6
        assert abs(r["net_edge_bps"] - (sell / buy - 1) * 1e4) < 1e-6
        assert r["size"] == 3.0


def test_dashboards_read_the_lake_through_the_library():
    """Issue 14: no second copy of latest_time / market_of, no DeltaTable opened by a page."""
    import ast
    from pathlib import Path

    from st_helpers import ROOT

    for f in sorted((ROOT / "streamlit_apps").rglob("*.py")):
        tree = ast.parse(f.read_text())
        defs = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert not defs & {"_market_of", "market_of", "_max_of", "latest_time"}, (f, defs)
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "DeltaTable"]
        assert not calls, f"{Path(f).name} opens a DeltaTable itself"


def test_trade_tape_shows_milliseconds_and_every_table_has_csv_and_parquet_downloads(synth_lake, app_on):
    import json

    root, written = synth_lake
    at = app_on(root)  # Live market

    tape = at.dataframe[0]
    cols = json.loads(tape.proto.columns)
    assert cols["ts_exchange"]["type_config"]["format"].endswith("ss.SSS"), cols["ts_exchange"]
    # two trades 100 ms apart in the fixture read apart on the tape
    assert tape.value["ts_exchange"].dt.microsecond.max() > 0
    buttons = at.get("download_button")
    labels = sorted(b.proto.label for b in buttons)
    assert labels == ["CSV", "Parquet"], labels
    for page in ("pages/feed_health.py", "pages/risk_monitor.py", "pages/microstructure.py"):
        at = app_on(root, page)
        n_tables = len(at.dataframe)
        n_buttons = len(at.get("download_button"))
        assert n_tables and n_buttons == 2 * n_tables, (page, n_tables, n_buttons)


def test_a_service_restart_shows_on_feed_health(tmp_path, app_on, monkeypatch):
    """The demo supervisor records a restart as a feed event; Feed health counts and lists it."""
    from lab.apps import demo

    monkeypatch.setenv("LAB_DATA", str(tmp_path / "data"))
    demo._record_restart("paper", "paper exited with 1 after 3.0 s; restart 1 in 1 s")

    at = app_on(str(tmp_path / "data" / "lake"), "pages/feed_health.py")

    assert metrics(at)["Service restarts"] == "1"
    events = next(d.value for d in at.dataframe if "kind" in d.value.columns and "detail" in d.value.columns)
    assert events["kind"].tolist() == ["service_restart"] and events["symbol"].tolist() == ["paper"]


def test_the_deploy_button_is_hidden():
    import tomllib

    from st_helpers import ROOT

    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["client"]["toolbarMode"] == "viewer"


def test_an_empty_window_says_no_data_instead_of_drawing_empty_charts(tmp_path, app_on):
    """Quotes for one market only: the other pages' charts say what is missing, where."""
    from lab.lake import Lake

    lake = Lake(tmp_path / "lake")
    q = synth.frames(T0, 5.0)["quotes"]
    lake.append("quotes", q)

    at = app_on(str(lake.root), "pages/feed_health.py")  # no feed events, no trades: no empty chart

    from st_helpers import figures

    assert all(f["traces"] and any(t["x"] for t in f["traces"].values()) for f in figures(at).values())
    assert any("No data for feed events in" in i.value for i in at.info), [i.value for i in at.info]


HOSTILE = [
    ("date", "2026-13-45", "date:"),
    ("date", "'; DROP TABLE trades; --", "date:"),
    ("lake", "/nonexistent/../etc", "lake:"),
    ("lake", "\x00", "lake:"),
    ("symbol", "NOSUCH-USDT", "No data for NOSUCH-USD"),
    ("symbol", "<script>alert(1)</script>", "symbol:"),
    ("date", "1999-01-01", "No data for BTC-USD"),
]


def test_promoted_page_answers_hostile_input_with_a_message_never_a_traceback(synth_lake, app_on):
    root, written = synth_lake
    for label, value, says in HOSTILE:
        at = app_on(root, "pages/nb_02_microstructure.py")
        box = next(t for t in at.text_input if t.label == label)
        box.set_value(value)
        at.run()
        assert not at.exception, (label, value, [e.value for e in at.exception])
        shown = [e.value for e in at.error] + [i.value for i in at.info]
        assert any(says in m for m in shown), (label, value, shown)


def test_a_damaged_table_is_one_line_on_the_page_never_a_traceback(tmp_path, monkeypatch):
    """Issue 15: a truncated newest `_delta_log` commit used to crash the pages with a Rust backtrace.

    AppTest runs a switched-to page without app.py, so only the default page goes through the
    app's guard here; tests/streamlit/test_browser.py walks every page on a damaged lake.
    """
    from st_helpers import APP
    from streamlit.testing.v1 import AppTest

    root = damaged_lake(tmp_path)
    monkeypatch.setenv("LAB_LAKE", root)
    monkeypatch.setenv("LAB_DATA", str(tmp_path / "data"))

    at = AppTest.from_file(str(APP), default_timeout=90)
    at.run()

    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "\n" not in errors[0] and errors[0].startswith("Page error in Live market"), errors
    assert "quotes" in errors[0] and "is damaged" in errors[0] and "lab doctor" in errors[0]  # names table and cure


def damaged_lake(tmp_path) -> str:
    """A lake whose `quotes` table's newest commit file was cut short (a torn write)."""
    from lab.lake import Lake

    lake = Lake(tmp_path / "lake")
    now = dt.datetime.now(dt.timezone.utc)
    for k in range(2):
        lake.append("quotes", synth.frames(now - dt.timedelta(seconds=4 - 2 * k), 2.0)["quotes"])
    newest = sorted((tmp_path / "lake" / "quotes" / "_delta_log").glob("*.json"))[-1]
    newest.write_text(newest.read_text()[:40])
    return str(lake.root)


def test_metric_rows_leave_room_for_the_longest_value():
    """Issue 16: "101,38…". A row never holds more characters of value than fit across the page."""
    from streamlit_apps.widgets import ROW_CHARS, row_size

    for values in (["101,385.12"] * 7, ["coinbase → binance", "+1.00", "-0.45", "+4.55"], ["3"] * 7):
        n = row_size(values, 7)
        assert n >= 1 and n * max(len(v) for v in values) <= ROW_CHARS, values
    assert row_size(["3"] * 7, 7) == 7  # short values keep one row
