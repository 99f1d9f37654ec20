"""The dashboards in a real headless Chromium, served by a real Streamlit server on 127.0.0.1.

`make demo` in small: the simulator and a recorder (3 venues x 3 assets,
gentle faults) write a temp lake while Streamlit serves it (risk snapshots
are added as the risk monitor would write them); one browser session walks
every page of the navigation, desk and promoted, and fails on any Streamlit
exception box or any chart without data. A screenshot per page goes to
``$LAB_ARTIFACTS/streamlit`` (default: test-artifacts/streamlit/); the path is
printed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from st_helpers import APP, ROOT

from recorders.sim.harness import Recording, free_port

pytestmark = pytest.mark.browser

ARTIFACTS = Path(os.environ.get("LAB_ARTIFACTS", ROOT / "test-artifacts")) / "streamlit"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic"]
# (url path, title, what shows when the page is done: None = its charts are drawn, else a text).
# No paper runner runs here: that page explains how to get a session.
PAGES = [("", "Live market", None), ("arbitrage_monitor", "Arbitrage monitor", None),
         ("microstructure", "Microstructure", None), ("feed_health", "Feed health", None),
         ("risk_monitor", "Risk monitor", None), ("paper_vs_backtest", "Paper vs backtest", "No paper sessions"),
         ("nb_02_microstructure", "Microstructure of one market over a day", None)]


def _write_risk_snapshots(lake_root: Path) -> None:
    """Three one-second snapshots ending now, as `lab risk` writes them (it needs a bus, not run here)."""
    import datetime as dt

    import st_synth

    from lab.lake import Lake

    now = dt.datetime.now(dt.timezone.utc)
    Lake(lake_root).append("risk_snapshots", st_synth.risk_snapshots(now - dt.timedelta(seconds=173)))


def _wait_http(url: str, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not up after {timeout} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def _streamlit(base: Path, lab_data: Path, lake: Path | None = None):
    """A Streamlit server on a free port serving the app, as `lab demo` starts it (cwd = the project)."""
    port = free_port()
    env = os.environ | {"LAB_DATA": str(lab_data), "PYTHONUNBUFFERED": "1"}
    env.pop("LAB_LAKE", None)
    if lake is not None:
        env["LAB_LAKE"] = str(lake)
    log = base / "streamlit.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "streamlit"), "run", str(APP),
             "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc, f"http://127.0.0.1:{port}", log
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Simulator + recorder (3 venues x 3 assets) into a temp lake, and a Streamlit server on it."""
    base = tmp_path_factory.mktemp("st_browser")
    with Recording(base / "data", faults="gentle") as rec:
        # Streamlit starts while the recorder syncs its books (both take seconds)
        with _streamlit(base, rec.lab_data) as (proc, url, log):
            rec.wait_rows("quotes")
            _write_risk_snapshots(rec.lake_root)
            _wait_http(f"{url}/_stcore/health", 90, proc, log)
            yield {"url": url, "recording": rec, "log": log}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: run `make chromium` (Debian's chromium, never `playwright install`)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


_LAST_X = """(key) => {
  const el = document.querySelector(`.st-key-${key} .js-plotly-plot`);
  if (!el || !el.data || !el.data.length) return null;
  return el.data.map(t => t.name + '@' + (t.x && t.x.length ? String(t.x[t.x.length - 1]) : '')).join('|');
}"""

# a chart with no trace holding a point; plotly keeps numeric arrays as {dtype, bdata} (base64)
_EMPTY_CHARTS = """() => {
  const n = v => !v ? 0 : (v.length !== undefined ? v.length : (v.bdata ? v.bdata.length : 0));
  return Array.from(document.querySelectorAll('.js-plotly-plot'))
    .filter(p => !p.data || !p.data.length || p.data.every(t => n(t.x) === 0 && n(t.z) === 0))
    .map(p => (p.layout && p.layout.title && p.layout.title.text) || p.id || '?');
}"""

_CHART_DRAWN = """() => {
  const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
  // every chart has data and has drawn it as SVG: a line path with points, bars or a heatmap
  return plots.length > 0 && plots.every(p => p.data && p.data.length > 0 && (
      Array.from(p.querySelectorAll('.scatterlayer .trace path.js-line, .scatterlayer .trace path.point'))
        .some(e => (e.getAttribute('d') || '').length > 10)
      || p.querySelectorAll('.barlayer .point path').length > 0
      || p.querySelectorAll('.heatmaplayer image').length > 0));
}"""


def test_every_page_renders_charts_and_the_live_page_moves(server, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1600, "height": 1100})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(server["url"], wait_until="domcontentloaded", timeout=60_000)
    page.get_by_role("heading", name="Live market").first.wait_for(timeout=60_000)
    links = page.locator('[data-testid="stSidebarNav"] a').evaluate_all("els => els.map(e => e.href)")
    listed = {urllib.parse.urlparse(h).path.strip("/") or "live_market" for h in links}
    walked = {p or "live_market" for p, _, _ in PAGES}
    assert len(listed) >= 7 and listed <= walked, f"pages in the menu the walk does not visit: {listed - walked}"

    for path, title, done in PAGES:
        t0 = time.monotonic()
        page.goto(f"{server['url']}/{path}", wait_until="domcontentloaded", timeout=60_000)
        page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
        t_heading = time.monotonic() - t0
        if done is None:
            page.wait_for_function(_CHART_DRAWN, timeout=60_000)
        else:
            page.get_by_text(done).first.wait_for(timeout=60_000)
        shot = ARTIFACTS / f"{path or 'live_market'}.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"{title}: heading {t_heading:.1f} s, done {time.monotonic() - t0:.1f} s, screenshot {shot}")
        assert page.locator(".stException").count() == 0, f"{title}: {page.locator('.stException').first.inner_text()}"
        assert page.evaluate(_EMPTY_CHARTS) == [], f"{title}: empty charts"
        assert page.get_by_text("Page error").count() == 0, f"{title}: {page.get_by_text('Page error').first.inner_text()}"
        assert page.get_by_text("Deploy", exact=True).count() == 0, "the Deploy button is hidden"
        assert "HFThot Research Lab" in page.title() or title in page.title()
        if path == "feed_health":  # the tape's holes: a table of ranges, or one line saying there are none
            page.get_by_text("No holes in the trade tape").or_(
                page.get_by_text("Ranges with no live trades")).first.wait_for(timeout=30_000)

        if path == "":
            # two looks a few seconds apart: the live chart's newest points move
            first = page.evaluate(_LAST_X, "bid_ask")
            assert first, "the live bid/ask chart has traces"
            page.wait_for_function(f"(prev) => ({_LAST_X})('bid_ask') !== prev", arg=first, timeout=30_000)
            assert page.evaluate(_LAST_X, "bid_ask") != first
            assert page.get_by_text("live —").count() >= 1, "fresh feeds are shown as live"
            page.wait_for_function(_CHART_DRAWN, timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "live_market_later.png"))
            print(f"{title}: moved after {time.monotonic() - t0:.1f} s")

    assert not errors, errors


def test_every_page_on_a_damaged_lake_says_so_in_one_line(tmp_path, browser):
    """A torn newest commit of `quotes` (issue 15): each page reading quotes shows one line, the
    others render as usual; never an exception box."""
    from test_page_defects import damaged_lake

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    lake = damaged_lake(tmp_path)
    unaffected = {"risk_monitor": "No data for risk snapshots", "paper_vs_backtest": "No paper sessions"}
    with _streamlit(tmp_path, tmp_path / "data", Path(lake)) as (proc, url, log):
        _wait_http(f"{url}/_stcore/health", 90, proc, log)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for path, title, _ in PAGES:
            page.goto(f"{url}/{path}", wait_until="domcontentloaded", timeout=60_000)
            shot = ARTIFACTS / f"damaged_{path or 'live_market'}.png"
            want = page.get_by_text(unaffected[path]) if path in unaffected else \
                page.locator('[data-testid="stAlertContentError"]')
            try:
                want.first.wait_for(timeout=30_000)
            finally:
                page.screenshot(path=str(shot))
            print(f"{title} on a damaged lake: screenshot {shot}")
            assert page.locator(".stException").count() == 0, (title, page.locator(".stException").first.inner_text())
            if path not in unaffected:
                text = want.first.inner_text()
                assert "is damaged" in text and "lab doctor" in text and len(text.strip().splitlines()) == 1, (title, text)
        page.close()
