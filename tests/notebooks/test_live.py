"""Live widgets: the live figure follows the lake as rows arrive, from a writer
in this process and from a real recorder recording the simulator."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

import lab
from lab.lake import Lake
from lab.widgets import BookReplay, LiveMarket, recorder_status, status_html
from tests.recorders.simrun import wait_for

T0 = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.timezone.utc)


def _quotes(venue: str, symbol: str, start: int, n: int, px: float) -> pl.DataFrame:
    ts = [T0 + dt.timedelta(seconds=s) for s in range(start, start + n)]
    return pl.DataFrame({"ts_exchange": ts, "ts_local": ts, "venue": venue, "symbol": symbol,
                         "bid_px": [px + i for i in range(n)], "bid_qty": 1.0,
                         "ask_px": [px + i + 1.0 for i in range(n)], "ask_qty": 2.0})


def _trades(venue: str, symbol: str, start: int, n: int) -> pl.DataFrame:
    ts = [T0 + dt.timedelta(seconds=s, milliseconds=500) for s in range(start, start + n)]
    return pl.DataFrame({"ts_exchange": ts, "ts_local": ts, "venue": venue, "symbol": symbol,
                         "trade_id": [f"{venue}-{s}" for s in range(start, start + n)],
                         "price": 100.0, "qty": 0.5, "side": ["buy", "sell"] * (n // 2) + ["buy"] * (n % 2)})


def _trace(fig, name: str):
    return next(t for t in fig.data if t.name == name)


def test_live_figure_merges_usd_and_usdt_and_follows_new_rows(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.append("quotes", pl.concat([_quotes("binance", "BTC-USDT", 0, 10, 100.0),
                                     _quotes("coinbase", "BTC-USD", 0, 10, 200.0),
                                     _quotes("binance", "ETH-USDT", 0, 10, 5.0)]))
    lake.append("trades", _trades("binance", "BTC-USDT", 0, 10))
    live = LiveMarket(lake, symbol="BTC-USDT", window=30)
    assert live.symbol == "BTC-USD" and list(live.symbol_picker.options) == ["BTC-USD", "ETH-USD"]
    assert sorted(t.name for t in live.quotes_fig.data) == ["binance ask", "binance bid",
                                                            "coinbase ask", "coinbase bid"]
    assert list(_trace(live.quotes_fig, "coinbase bid").y) == [200.0 + i for i in range(10)]
    assert len(_trace(live.trades_fig, "binance buy").x) == 5

    # Act: 5 more seconds arrive; the window (30 s) ends at the newest row
    lake.append("quotes", _quotes("binance", "BTC-USDT", 10, 5, 110.0))
    lake.append("trades", _trades("binance", "BTC-USDT", 10, 5))
    got = live.refresh()

    assert got["quotes"] == 25 and got["trades"] == 15
    bid = _trace(live.quotes_fig, "binance bid")
    assert len(bid.x) == 15 and bid.y[-1] == 114.0
    assert got["end"] == T0 + dt.timedelta(seconds=14)

    # a 5-second window keeps only the newest rows; picking one venue drops the other
    live.window_slider.value = 5
    live.venue_picker.value = ("binance",)
    assert sorted(t.name for t in live.quotes_fig.data) == ["binance ask", "binance bid"]
    assert list(_trace(live.quotes_fig, "binance bid").y) == [110.0, 111.0, 112.0, 113.0, 114.0]


def test_book_replay_slider_draws_the_book_at_that_time(tmp_path: Path) -> None:
    from lab.book import rebuild

    ts = [T0, T0, T0, T0 + dt.timedelta(seconds=1)]
    upd = pl.DataFrame({"ts_exchange": ts, "venue": "x", "symbol": "BTC-USDT",
                        "side": ["bid", "bid", "ask", "bid"], "price": [99.0, 98.0, 101.0, 98.0],
                        "qty": [1.0, 2.0, 3.0, 5.0], "is_snapshot": [True, True, True, False],
                        "seq": [1, 1, 1, 2]})
    replay = BookReplay(rebuild(upd, depth=5), title="x")
    bid = replay.depth_fig.data[0]
    assert list(bid.y) == [1.0, 3.0]  # cumulative from the best bid
    replay.slider.value = 1
    assert list(replay.depth_fig.data[0].y) == [1.0, 6.0]
    assert list(replay.depth_fig.data[1].y) == [3.0]


def test_recorder_status_html_lists_venues(tmp_path: Path) -> None:
    f = tmp_path / "recorder-r.json"
    f.write_text('{"name": "r", "updated": "2000-01-01T00:00:00+00:00", "rows_written": {"trades": 7}, '
                 '"venues": {"kraken": {"connected": false, "msgs_per_s": 0, "gaps": 2}}}')
    st = recorder_status(f)
    assert st["state"].startswith("silent for")
    html = status_html(st)
    assert "kraken" in html and "🔴" in html and "rows written trades 7" in html


@pytest.fixture
def simulator():
    from recorders.sim import SimConfig, Simulator

    sim = Simulator(SimConfig(venues=("binance",), assets=("BTC",), cross=False, port_base=0, seed=3))
    with sim.running_in_thread():
        yield sim


def test_live_figure_shows_new_points_from_a_recorder_on_the_simulator(simulator, lab_data: Path) -> None:
    urls = simulator.urls()
    lake_dir = lab_data / "lake"
    rec = lab.start_recorder("binance", ["BTC-USDT"], base_url=urls["binance"], rest_url=urls["binance_rest"],
                             lake=lake_dir, name="nbtest", flush_interval=0.2,
                             extra_args=["--maintain-every", "0"])
    try:
        lake = Lake(lake_dir)
        wait_for(lambda: lake.exists("quotes") and lake.exists("trades"), 90,
                 what="the recorder's first quotes and trades")
        live = LiveMarket(lake, symbol="BTC-USDT", window=600, anchor="now", recorder=rec)
        first = wait_for(lambda: (r := live.refresh()).get("quotes") and r, 60, what="quotes in the live figure")
        n0, end0 = first["quotes"], first["end"]
        x0 = list(_trace(live.quotes_fig, "binance bid").x)

        live.start(interval=0.3)  # the notebook's one-second loop, faster
        try:
            wait_for(lambda: live.last.get("quotes", 0) > n0 and live.last["end"] > end0, 60,
                     what="new quotes in the live figure")
        finally:
            live.stop()
        bid = _trace(live.quotes_fig, "binance bid")
        assert len(bid.x) > len(x0) and max(bid.x) > max(x0)
        assert "binance" in live.status.value
        st = wait_for(lambda: (s := recorder_status(rec)).get("venues") and s, 30, what="the recorder status file")
        assert st["venues"]["binance"]["messages"] > 0 and st["state"] == "running"
    finally:
        rec.stop()
    assert not rec.running()
