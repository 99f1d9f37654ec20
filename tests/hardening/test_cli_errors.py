"""Mistakes a new user makes give one line naming the problem and a non-zero exit, never a traceback.

Each test runs the real ``lab`` entry point (``lab.cli.main``) against a real
simulated lake (``sim_lake``: 2026-11-22 12:00-12:10 UTC, 3 venues x 3 assets).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from lab.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line(err: str, cmd: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith(f"lab {cmd}:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


# --------------------------------------------------------------------------- lab backtest
MM = ("backtest", "mm", "-p", "venue=binance", "-p", "symbol=BTC-USDT")


def test_backtest_on_a_range_without_data_names_what_the_lake_has(sim_lake, capsys):
    rc, _, err = _run(capsys, *MM, "--lake", str(sim_lake.root), "--start", "2026-11-23T12:00",
                      "--end", "2026-11-23T13:00")
    line = _one_line(err, "backtest")
    assert rc == 2
    assert "no book_updates for binance BTC-USDT between 2026-11-23 12:00 and 13:00 UTC" in line
    assert "the lake has binance BTC-USDT from 2026-11-22 12:00" in line


@pytest.mark.parametrize("param, shown", [("venue=nosuch", "nosuch BTC-USDT"),
                                          ("symbol=DOGE-USDT", "binance DOGE-USDT")])
def test_backtest_on_a_venue_or_symbol_the_lake_lacks_lists_what_it_has(sim_lake, capsys, param, shown):
    rc, _, err = _run(capsys, *MM, "-p", param, "--lake", str(sim_lake.root))
    line = _one_line(err, "backtest")
    assert rc == 2
    assert f"no book_updates for {shown}" in line
    assert "it has: binance BTC-USDT" in line and "kraken SOL-USD" in line


def test_backtest_on_an_empty_lake_says_so(tmp_path, capsys):
    rc, _, err = _run(capsys, *MM, "--lake", str(tmp_path / "lake"))
    line = _one_line(err, "backtest")
    assert rc == 2 and "has no book_updates table" in line


@pytest.mark.parametrize("args, needle", [
    (("--start", "notadate"), "--start 'notadate': not an ISO date"),
    (("--end", "2026-13-45"), "--end '2026-13-45': not an ISO date"),
    (("--start", "2026-11-22T12:05", "--end", "2026-11-22T12:00"), "--end 2026-11-22T12:00 is not after --start"),
    (("--last=-5m",), "--last '-5m': expected a positive duration"),
    (("--last", "0h"), "--last '0h': expected a positive duration"),
    (("--last", "1h", "--start", "2026-11-22T12:00"), "--start or --last, not both"),
    (("-p", "qty=lots"), "-p qty='lots': expected a number"),
    (("-p", "half_spread=0.5"), "-p half_spread='0.5': expected a whole number"),
    (("-p", "qty"), "-p expects KEY=VALUE"),
    (("--fee", "binance=cheap"), "--fee expects VENUE=MAKER,TAKER"),
])
def test_backtest_bad_arguments_name_the_flag_or_parameter(sim_lake, capsys, args, needle):
    rc, _, err = _run(capsys, *MM, "--lake", str(sim_lake.root), *args)
    line = _one_line(err, "backtest")
    assert rc == 2 and needle in line


def test_backtest_arb_with_malformed_legs_names_the_parameter(sim_lake, capsys):
    rc, _, err = _run(capsys, "backtest", "arb", "-p", "legs=binance-BTC-USDT", "--lake", str(sim_lake.root))
    assert rc == 2 and "legs must be venue:SYMBOL" in _one_line(err, "backtest")


def test_backtest_last_takes_the_newest_span_of_the_data(sim_lake, capsys):
    rc, out, err = _run(capsys, *MM, "--lake", str(sim_lake.root), "--last", "2m", "--json")
    assert rc == 0, err
    import json

    st = json.loads(out)
    t0, t1 = (dt.datetime.fromisoformat(st["data"][k]) for k in ("start", "end"))
    # the seed ends at 12:10; the newest 2 minutes start at 12:08
    assert dt.datetime(2026, 11, 22, 12, 7, 59, tzinfo=dt.timezone.utc) < t0 < dt.datetime(
        2026, 11, 22, 12, 8, 1, tzinfo=dt.timezone.utc)
    assert t1 <= dt.datetime(2026, 11, 22, 12, 10, 1, tzinfo=dt.timezone.utc)
    assert st["events"] > 0


def test_backtest_report_html_is_self_contained(sim_lake, capsys, tmp_path: Path):
    out = tmp_path / "bt"
    rc, _, err = _run(capsys, *MM, "--lake", str(sim_lake.root), "--last", "1m", "--out", str(out))
    assert rc == 0, err
    page = (out / "report.html").read_text()
    assert not re.search(r"<(script|link)[^>]*(src|href)=[\"']?(https?:)?//", page)  # nothing fetched
    assert "Plotly.newPlot" in page and page.count("plotly-graph-div") >= 3


# --------------------------------------------------------------------------- services' arguments
def test_simulate_with_an_unknown_venue_is_one_line(capsys):
    rc, _, err = _run(capsys, "simulate", "--venues", "nosuch", "--port-base", "0", "--duration", "1")
    assert rc == 2 and "--venues 'nosuch': unknown nosuch; choose from binance" in _one_line(err, "simulate")


@pytest.mark.parametrize("args, needle", [
    (("--replay", "/nonexistent/lake"), "--replay /nonexistent/lake: no raw_messages Delta table"),
    (("--tls-cert", "nope.pem", "--tls-key", "nope.pem"), "--tls-cert nope.pem: no such file"),
    (("--tls-cert", "nope.pem"), "--tls-cert and --tls-key go together"),
    (("--assets", "DOGE"), "--assets 'DOGE': unknown DOGE"),
    (("--lags", "binance"), "--lags: bad entry 'binance'"),
    (("--to-lake", "--days", "1", "--start", "yesterday-ish"), "--start 'yesterday-ish': not an ISO date"),
])
def test_simulate_bad_arguments_are_one_line(tmp_path, capsys, args, needle):
    rc, _, err = _run(capsys, "simulate", "--port-base", "0", "--duration", "1", "--lake", str(tmp_path / "l"), *args)
    assert rc == 2 and needle in _one_line(err, "simulate")


def test_simulate_on_a_port_in_use_is_one_line(capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        rc, _, err = _run(capsys, "simulate", "--venues", "binance", "--port-base", str(port), "--duration", "1")
    line = _one_line(err, "simulate")
    assert rc == 1 and "cannot serve on 127.0.0.1" in line and "--port-base" in line


@pytest.mark.parametrize("every", ["-5", "nan"])
def test_maintain_refuses_a_negative_interval(tmp_path, capsys, every):
    rc, _, err = _run(capsys, "maintain", "--lake", str(tmp_path / "lake"), "--every", every)
    assert rc == 2 and f"--every {every}: expected seconds between passes" in _one_line(err, "maintain")


@pytest.mark.parametrize("fan_in", ["1", "0", "-3"])
def test_maintain_refuses_a_fan_in_below_two(tmp_path, capsys, fan_in):
    rc, _, err = _run(capsys, "maintain", "--lake", str(tmp_path / "lake"), "--min-files", fan_in)
    assert rc == 2 and f"--min-files {fan_in}: expected a fan-in of 2 or more" in _one_line(err, "maintain")


# --------------------------------------------------------------------------- LAB_DATA
def _bad_data_dirs(tmp_path: Path) -> list[tuple[Path, str]]:
    f = tmp_path / "a_file"
    f.write_text("not a folder")
    return [(f, "not a directory"), (f / "data", "not a writable directory")]


@pytest.mark.parametrize("argv", [
    ("maintain",),
    ("record", "--venue", "binance", "--symbols", "BTC-USDT", "--sim", "--sim-port-base", "1", "--duration", "1"),
    ("simulate", "--to-lake", "--days", "0.001"),
    ("arbitrage", "--bus", "ws://127.0.0.1:1", "--duration", "1"),
    ("risk", "--bus", "ws://127.0.0.1:1", "--duration", "1"),
    ("paper", "mm", "--bus", "ws://127.0.0.1:1", "--duration", "1"),
    ("import", "tardis", "no_such_file.csv"),
])
def test_commands_that_write_refuse_a_lab_data_that_is_not_a_writable_folder(tmp_path, capsys, monkeypatch, argv):
    for bad, why in _bad_data_dirs(tmp_path):
        monkeypatch.setenv("LAB_DATA", str(bad))
        rc, _, err = _run(capsys, *argv)
        line = _one_line(err, argv[0])
        assert rc == 2 and f"LAB_DATA={bad}: {why}" in line


def test_lab_data_is_absolute_for_children_and_restored_after(tmp_path, monkeypatch, capsys):
    """The entry point resolves a relative LAB_DATA against the caller's folder, for every child."""
    import os
    import subprocess
    import sys

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LAB_DATA", "rel/data")
    from lab.cli import resolve_data_env

    assert resolve_data_env() == tmp_path / "rel" / "data"
    assert os.environ["LAB_DATA"] == str(tmp_path / "rel" / "data")
    monkeypatch.setenv("LAB_DATA", "rel/data")
    assert main(["status", "--no-lake", "--json"]) == 0
    assert os.environ["LAB_DATA"] == "rel/data"  # in-process callers get their environment back
    # a real child: `lab status --json` run from a sub-folder with an absolute LAB_DATA sees the same run dir
    env = {**os.environ, "LAB_DATA": "rel/data"}
    out = subprocess.run([sys.executable, "-c", "import os, lab.cli as c; c.resolve_data_env(); "
                          "print(os.environ['LAB_DATA'])"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip() == str(tmp_path / "rel" / "data")


# --------------------------------------------------------------------------- lab promote
def test_promote_regenerates_an_untouched_page_and_refuses_a_hand_edited_one(tmp_path, capsys):
    nb = Path(__file__).resolve().parents[2] / "notebooks" / "02_microstructure.ipynb"
    page = tmp_path / "nb_02.py"
    assert _run(capsys, "promote", str(nb), "--out", str(page))[0] == 0
    assert "st.caption(" in page.read_text()  # the notebook's print is a caption on the page
    rc, _, err = _run(capsys, "promote", str(nb), "--out", str(page))  # again: nothing hand-made to lose
    assert rc == 0, err
    page.write_text(page.read_text() + "st.write('my polish')\n")
    rc, _, err = _run(capsys, "promote", str(nb), "--out", str(page))
    assert rc == 2 and "has hand edits; pass --force" in _one_line(err, "promote")
    assert "my polish" in page.read_text()


# --------------------------------------------------------------------------- lab record
@pytest.fixture(scope="module")
def sim_urls():
    from recorders.sim import SimConfig, Simulator

    sim = Simulator(SimConfig(port_base=0, venues=("binance", "kraken"), assets=("BTC", "ETH")))
    with sim.running_in_thread():
        yield sim.urls()


def _record(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LAB_DATA": str(tmp_path / "data")}
    return subprocess.run([sys.executable, "-m", "lab.cli", "record", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_record_refuses_a_symbol_the_venue_does_not_list_before_connecting(tmp_path, sim_urls):
    r = _record(tmp_path, "--venue", "binance", "--symbols", "BTC-USDT,NOSUCH-USDT", "--base-url",
                sim_urls["binance"], "--rest-url", sim_urls["binance_rest"], "--duration", "5")
    line = _one_line(r.stderr, "record")
    assert r.returncode == 2
    assert "binance does not list NOSUCH-USDT; it lists 3 symbols: BTC-USDT, ETH-BTC, ETH-USDT" in line
    assert not (tmp_path / "data" / "lake").exists()  # refused before anything was recorded


def test_simulator_serves_its_listing_like_binance_exchange_info(sim_urls):
    import json
    import urllib.request

    with urllib.request.urlopen(sim_urls["binance_rest"] + "/api/v3/exchangeInfo", timeout=10) as r:
        doc = json.loads(r.read())
    assert {(s["symbol"], s["baseAsset"], s["quoteAsset"], s["status"]) for s in doc["symbols"]} == {
        ("BTCUSDT", "BTC", "USDT", "TRADING"), ("ETHUSDT", "ETH", "USDT", "TRADING"),
        ("ETHBTC", "ETH", "BTC", "TRADING")}


def test_a_subscribed_symbol_that_sends_nothing_is_a_no_data_event_and_a_warning(tmp_path, sim_urls):
    # Kraken's listing is not known on a non-default URL: the symbol is subscribed, the venue
    # answers with an error and then nothing; after --no-data-after seconds the recorder says so.
    r = _record(tmp_path, "--venue", "kraken", "--symbols", "BTC-USD,NOSUCH-USD", "--base-url", sim_urls["kraken"],
                "--no-data-after", "2", "--duration", "6")
    assert r.returncode == 0, r.stderr
    warn = [ln for ln in r.stderr.splitlines() if "no_data" in ln or "no message for" in ln]
    assert len(warn) == 1 and "kraken NOSUCH-USD: no message for NOSUCH-USD in 2 s" in warn[0], r.stderr
    from lab.lake import Lake

    ev = Lake(tmp_path / "data" / "lake").read("feed_events").filter(pl.col("kind") == "no_data")
    assert ev.select("venue", "symbol").rows() == [("kraken", "NOSUCH-USD")]  # once, and not for BTC-USD
