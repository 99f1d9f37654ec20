"""`lab report daily_market_report`: HTML with the expected sections whose numbers
match the same figures computed independently (DuckDB SQL and numpy loops) on
the same lake; self-contained page; failing cells named; parameters parsed."""

from __future__ import annotations

import math
from pathlib import Path

import nbformat
import numpy as np
import pytest
from bs4 import BeautifulSoup

from lab.apps.report import ReportError, parse_param, run_report
from lab.cli import main as lab_main
from tests.notebooks.conftest import DAY, FEED_EVENTS, SIGNALS

SECTIONS = ["Market summary", "Volumes", "Volatility", "Spreads", "Arbitrage episodes", "Feed health"]


@pytest.fixture(scope="module")
def report(nb_lake, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BeautifulSoup]:
    out = tmp_path_factory.mktemp("reports")
    rc = lab_main(["report", "daily_market_report", "--date", DAY, "--lake", str(nb_lake.root),
                   "--out", str(out), "--no-progress", "--timeout", "300"])
    assert rc == 0
    page = out / "daily_market_report" / f"{DAY}.html"
    assert (out / "daily_market_report" / f"{DAY}.ipynb").exists()
    return page, BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")


def _table(soup: BeautifulSoup, id_: str) -> dict[tuple, dict[str, str]]:
    t = soup.find("table", id=id_)
    assert t is not None, f"table #{id_} missing"
    head = [th.get_text() for th in t.find("thead").find_all("th")]
    rows = {}
    for tr in t.find("tbody").find_all("tr"):
        cells = dict(zip(head, (td.get_text() for td in tr.find_all("td")), strict=True))
        key = tuple(cells[k] for k in head if k in ("venue", "symbol", "kind", "asset", "buy_venue", "sell_venue"))
        rows[key] = cells
    return rows


def _sql(lake, q: str) -> list[tuple]:
    import lab

    con = lab.connect(lake)
    try:
        return con.execute(q).fetchall()
    finally:
        con.close()


def test_report_has_every_section(report) -> None:
    _, soup = report
    heads = [h.get_text().rstrip("¶").strip() for h in soup.find_all("h2")]
    assert heads == SECTIONS
    assert soup.find("h1").get_text().startswith("Daily market report")


def test_market_summary_and_volumes_match_sql(report, nb_lake) -> None:
    _, soup = report
    summary, volumes = _table(soup, "market-summary"), _table(soup, "volumes")
    ref = _sql(nb_lake, f"""
        SELECT venue, symbol,
               first(price ORDER BY ts_exchange, trade_id), max(price), min(price),
               last(price ORDER BY ts_exchange, trade_id), count(*), sum(qty), sum(price * qty),
               coalesce(sum(qty) FILTER (WHERE side = 'buy'), 0)
        FROM trades WHERE ts_exchange >= TIMESTAMPTZ '{DAY} 00:00:00+00'
                      AND ts_exchange < TIMESTAMPTZ '{DAY} 00:00:00+00' + INTERVAL 1 DAY
        GROUP BY venue, symbol ORDER BY venue, symbol""")
    assert len(ref) == len(summary) == len(volumes) > 9  # 3 venues x (3 assets + ETH-BTC)
    for venue, symbol, o, h, lo, c, n, vol, notional, buy in ref:
        s, v = summary[(venue, symbol)], volumes[(venue, symbol)]
        approx = lambda x: pytest.approx(x, rel=2e-7)  # noqa: E731 - 8 significant digits shown
        assert float(s["open"]) == approx(o) and float(s["close"]) == approx(c)
        assert float(s["high"]) == approx(h) and float(s["low"]) == approx(lo)
        assert float(s["return_pct"]) == approx((c / o - 1) * 100)
        assert float(s["vwap"]) == approx(notional / vol)
        assert int(v["trades"]) == n
        assert float(v["volume"]) == approx(vol) and float(v["notional"]) == approx(notional)
        assert float(v["buy_share"]) == approx(buy / vol)


def test_volatility_matches_a_numpy_loop(report, nb_lake) -> None:
    _, soup = report
    table = _table(soup, "volatility")
    trades = nb_lake.read("trades").sort("venue", "symbol", "ts_exchange", "trade_id")
    checked = 0
    for (venue, symbol), part in trades.group_by(["venue", "symbol"]):
        ts = part["ts_exchange"].dt.epoch("us").to_numpy()
        px = part["price"].to_numpy()
        minute = ts // 60_000_000
        closes = []
        for i in range(len(px)):  # last trade of each minute
            if i + 1 == len(px) or minute[i + 1] != minute[i]:
                closes.append(px[i])
        r = [math.log(closes[i] / closes[i - 1]) for i in range(1, len(closes))]
        row = table[(venue, symbol)]
        assert int(row["bars"]) == len(closes)
        assert float(row["rv_pct"]) == pytest.approx(100 * math.sqrt(sum(x * x for x in r)), rel=2e-7)
        assert float(row["max_abs_ret_bps"]) == pytest.approx(max(abs(x) for x in r) * 1e4, rel=2e-7)
        checked += 1
    assert checked == len(table)


def test_spreads_match_numpy(report, nb_lake) -> None:
    _, soup = report
    table = _table(soup, "spreads")
    quotes = nb_lake.read("quotes")
    for (venue, symbol), part in quotes.group_by(["venue", "symbol"]):
        b, a = part["bid_px"].to_numpy(), part["ask_px"].to_numpy()
        ok = ~np.isnan(b) & ~np.isnan(a) & (a >= b)
        s = (a[ok] - b[ok]) / ((a[ok] + b[ok]) / 2) * 1e4
        row = table[(venue, symbol)]
        assert int(row["quotes"]) == ok.sum()
        assert float(row["mean_spread_bps"]) == pytest.approx(s.mean(), rel=2e-7)
        assert float(row["median_spread_bps"]) == pytest.approx(np.median(s), rel=2e-7)
        assert float(row["p95_spread_bps"]) == pytest.approx(np.percentile(s, 95), rel=2e-7)


def test_feed_health_and_arbitrage_show_the_recorded_rows(report) -> None:
    _, soup = report
    health = _table(soup, "feed-health")
    expected: dict[tuple, int] = {}
    for venue, _sym, kind in FEED_EVENTS:
        expected[(venue, kind)] = expected.get((venue, kind), 0) + 1
    assert {k: int(v["events"]) for k, v in health.items()} == expected == {
        ("binance", "gap"): 3, ("binance", "resync"): 1, ("kraken", "reconnect"): 2}
    arb = _table(soup, "arbitrage")
    bk = arb[("cross_venue", "BTC", "binance", "kraken")]
    assert (int(bk["signals"]), float(bk["mean_net_edge_bps"]), float(bk["max_net_edge_bps"]),
            float(bk["profit_quote"])) == (2, 3.0, 4.0, 5.5)
    cb = arb[("cross_venue", "BTC", "coinbase", "binance")]
    assert (int(cb["signals"]), float(cb["profit_quote"])) == (1, SIGNALS[2][3])


def test_report_page_is_self_contained(report) -> None:
    page, soup = report
    external = [t for t in soup.find_all(["script", "link", "img"])
                if (t.get("src") or t.get("href") or "").startswith(("http:", "https:", "//"))]
    assert external == []
    assert len(soup.find_all("div", class_="plotly-graph-div")) >= 4
    # plotly.js itself is embedded (once), so the charts draw offline
    text = page.read_text(encoding="utf-8")
    assert text.count("Plotly=") >= 1 or "plotly.js v" in text
    assert not soup.select(".jp-CodeCell .jp-InputArea")  # code hidden
    assert "import polars" not in soup.get_text()


def test_failing_cell_is_named_and_notebook_kept(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# broken"),
                nbformat.v4.new_code_cell("date = None", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("x = 1"),
                nbformat.v4.new_code_cell("y = x + 1\nraise ValueError(f'boom {y}')")]
    src = tmp_path / "broken.ipynb"
    nbformat.write(nb, src)
    with pytest.raises(ReportError) as e:
        run_report(str(src), "2026-11-22", out=tmp_path / "out", progress=False)
    msg = str(e.value)
    assert "ValueError: boom 2" in msg and "'y = x + 1'" in msg
    assert "cell 4" in msg or "cell 3" in msg  # papermill counts its injected-parameters cell
    assert (tmp_path / "out" / "broken" / "2026-11-22.html").exists()


def test_unknown_report_and_bad_date_are_clear_errors(tmp_path: Path, capsys) -> None:
    with pytest.raises(ReportError, match="available: .*daily_market_report"):
        run_report("no_such_report", "2026-11-22", out=tmp_path)
    assert lab_main(["report", "daily_market_report", "--date", "22/11/2026", "--out", str(tmp_path)]) == 1
    assert "expected YYYY-MM-DD" in capsys.readouterr().err


def test_relative_lab_data_is_read_from_the_callers_folder_not_the_kernels(nb_data: Path, tmp_path: Path) -> None:
    """`LAB_DATA=data lab report ...` from the folder holding data/: the kernel (cwd notebooks/reports)
    must read that lake, not notebooks/reports/data (which rendered "0 trades on 0 venue(s)")."""
    import os
    import re
    import shutil
    import subprocess
    import sys

    shutil.copytree(nb_data / "lake", tmp_path / "data" / "lake")
    env = {**os.environ, "LAB_DATA": "data"}
    env.pop("LAB_LAKE", None)
    proc = subprocess.run([sys.executable, "-m", "lab.cli", "report", "daily_market_report", "--date", DAY,
                           "--out", "out", "--no-progress"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    text = BeautifulSoup((tmp_path / "out" / "daily_market_report" / f"{DAY}.html").read_text(),
                         "html.parser").get_text(" ")
    m = re.search(r"([\d,]+) trades on (\d+) venue", text)
    (n_sql,), = _sql(str(nb_data / "lake"), f"SELECT count(*) FROM trades WHERE ts_exchange::DATE = DATE '{DAY}'")
    assert m and int(m.group(1).replace(",", "")) == n_sql > 0 and int(m.group(2)) == 3


def test_report_on_a_day_without_data_fails_in_one_line_and_writes_no_page(nb_lake, tmp_path: Path,
                                                                           capsys) -> None:
    rc = lab_main(["report", "daily_market_report", "--date", "2026-11-23", "--lake", str(nb_lake.root),
                   "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1
    line = [ln for ln in err.splitlines() if ln.startswith("lab report:")]
    assert len(line) == 1 and "Traceback" not in err, err
    assert "no trades on 2026-11-23" in line[0] and "it has trades from 2026-11-22 12:00" in line[0]
    assert not list(tmp_path.rglob("*.html"))


@pytest.mark.parametrize("lake_kind, needle", [("empty", "has no quotes: record some"),
                                               ("other day", "no quotes on 2026-11-23 (UTC)")])
def test_a_research_notebook_on_a_lake_or_day_without_data_stops_with_one_line(
        nb_lake, tmp_path: Path, capsys, lake_kind: str, needle: str) -> None:
    from tests.notebooks.conftest import NOTEBOOKS

    lake = str(tmp_path / "empty_lake") if lake_kind == "empty" else str(nb_lake.root)
    rc = lab_main(["report", str(NOTEBOOKS / "02_microstructure.ipynb"), "--date", "2026-11-23", "-p", "date",
                   "2026-11-23", "--lake", lake, "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("lab report:")]
    assert rc == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert needle in lines[0]
    assert not list((tmp_path / "out").rglob("*.html"))


def test_report_dates_can_be_relative() -> None:
    import datetime as dt

    from lab.apps.report import _check_date

    today = dt.datetime.now(dt.timezone.utc).date()
    assert _check_date("today") in (today.isoformat(), (today + dt.timedelta(days=1)).isoformat())
    assert _check_date("yesterday") in ((today - dt.timedelta(days=1)).isoformat(), today.isoformat())
    with pytest.raises(ReportError, match="today, yesterday or today-N"):
        _check_date("tomorrow-ish")


def test_param_values_are_read_as_yaml() -> None:
    assert parse_param("venues", "[binance, kraken]") == ("venues", ["binance", "kraken"])
    assert parse_param("depth", "20") == ("depth", 20)
    assert parse_param("lake", "/tmp/x") == ("lake", "/tmp/x")
    assert parse_param("start", "2026-11-22") == ("start", "2026-11-22")
    with pytest.raises(ReportError, match="not a Python identifier"):
        parse_param("bad-key", "1")


@pytest.mark.browser
def test_report_page_draws_its_charts_offline_in_a_browser(report) -> None:
    from playwright.sync_api import sync_playwright

    page_path, soup = report
    n_figs = len(soup.find_all("div", class_="plotly-graph-div"))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-quic"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            network: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: network.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
            page.goto(page_path.as_uri())
            page.wait_for_function(
                f"document.querySelectorAll('.plotly-graph-div .main-svg').length >= {n_figs}", timeout=120_000)
            drawn = page.evaluate("document.querySelectorAll('.plotly-graph-div g.trace').length")
        finally:
            browser.close()
    assert errors == [] and network == []
    assert drawn > 0


@pytest.mark.parametrize("name", ["03_arbitrage", "06_risk"])
def test_research_notebooks_on_an_empty_lake_stop_with_one_line(tmp_path: Path, capsys, name: str) -> None:
    from tests.notebooks.conftest import NOTEBOOKS

    rc = lab_main(["report", str(NOTEBOOKS / f"{name}.ipynb"), "--date", DAY, "--lake", str(tmp_path / "empty"),
                   "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("lab report:")]
    assert rc == 1 and len(lines) == 1, err
    assert "has no quotes: record some (lab record)" in lines[0]
    assert not list((tmp_path / "out").rglob("*.html"))
