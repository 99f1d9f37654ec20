"""The live detector in depth mode: book_updates rebuilt into L2 books and walked for the
size, against hand-worked VWAPs and against the historical scan of the same rows."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from arbrows import T0_US, quote, replay_into, run_live_on_a_bus, update
from arbrows import feed as _feed
from arbrows import frame as _frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from lab.alerts import make_sinks
from lab.arbitrage import ArbConfig, books_from_updates, cross_venue
from lab.arbitrage.live import Detector, signals_frame
from lab.lake import Lake

FEES = {"a": 5.0, "b": 5.0}


def _u(ms: float, venue: str, side: str, price: float, qty: float, *, snap: bool = False,
       seq: int = 1, symbol: str = "BTC-USD") -> dict:
    return update(ms, venue, symbol, side, price, qty, snap=snap, seq=seq)


def _q(ms: float, venue: str, bid: float, bid_qty: float, ask: float, ask_qty: float) -> dict:
    return quote(ms, venue, "BTC-USD", bid, bid_qty, ask, ask_qty)


# a's best ask (100 x 0.5) is too thin for 1 BTC; its first two levels are not
THIN_TOP = [
    _u(0, "a", "ask", 100.0, 0.5, snap=True), _u(0, "a", "ask", 100.4, 1.0, snap=True),
    _u(0, "a", "bid", 99.0, 1.0, snap=True),
    _u(10, "b", "bid", 101.0, 2.0, snap=True, seq=7), _u(10, "b", "ask", 101.5, 2.0, snap=True, seq=7),
]


def test_depth_mode_signals_the_walked_vwap_when_the_top_level_is_too_thin():
    cfg = ArbConfig(fees_bps=FEES, sizes={"BTC": 1.0}, triangles=[], depth=10)

    got = _feed(Detector(cfg), THIN_TOP)

    # by hand: buy 0.5 at 100 and 0.5 at 100.4 on a, sell 1 at 101 on b, 5 bps each leg
    buy = (0.5 * 100.0 + 0.5 * 100.4) / 1.0
    cost, proceeds = buy * 1.0005, 101.0 * 0.9995
    assert [(s["ts"], s["buy_venue"], s["sell_venue"]) for s in got] == [(T0_US + 10_000, "a", "b")]
    s = got[0]
    assert s["buy_px"] == pytest.approx(100.2) and s["sell_px"] == pytest.approx(101.0)
    assert s["gross_edge_bps"] == pytest.approx((101.0 - 100.2) / 100.2 * 1e4)
    assert s["net_edge_bps"] == pytest.approx((proceeds - cost) / cost * 1e4)
    assert s["net_edge_bps"] == pytest.approx(69.7655, abs=1e-4)
    assert s["profit_quote"] == pytest.approx(1.0 * (proceeds - cost))
    assert s["volume_usd"] == pytest.approx(100.2)


def test_quote_mode_does_not_signal_a_size_beyond_the_top_level():
    cfg = ArbConfig(fees_bps=FEES, sizes={"BTC": 1.0}, triangles=[])  # depth = 0
    det = Detector(cfg)

    got = det.on_quote(_q(0, "a", 99.0, 1.0, 100.0, 0.5)) + det.on_quote(_q(10, "b", 101.0, 2.0, 101.5, 2.0))
    book_rows = _feed(det, THIN_TOP)  # book_updates are not read in quote mode

    assert got == [] and book_rows == []
    # half a BTC fits the top level: quote mode does see that one
    det = Detector(ArbConfig(fees_bps=FEES, sizes={"BTC": 0.5}, triangles=[]))
    det.on_quote(_q(0, "a", 99.0, 1.0, 100.0, 0.5))
    assert [s["buy_px"] for s in det.on_quote(_q(10, "b", 101.0, 2.0, 101.5, 2.0))] == [100.0]


def test_book_too_thin_even_at_depth_gives_no_signal():
    rows = [_u(0, "a", "ask", 100.0, 0.5, snap=True), _u(0, "a", "ask", 100.4, 0.3, snap=True),
            _u(0, "a", "bid", 99.0, 1.0, snap=True),
            _u(10, "b", "bid", 101.0, 2.0, snap=True, seq=7)]
    cfg = ArbConfig(fees_bps=FEES, sizes={"BTC": 1.0}, triangles=[], depth=10)

    assert _feed(Detector(cfg), rows) == []
    # enough size exists two levels down, but a depth-1 detector does not look there
    assert _feed(Detector(msgspec.structs.replace(cfg, depth=1)), THIN_TOP) == []
    # ... nor does the historical scan of 1-level books
    assert cross_venue(books_from_updates(_frame(THIN_TOP), depth=1), fees=FEES,
                       size=1.0).collect().height == 0


def test_books_of_one_receive_time_are_evaluated_in_venue_order_as_historical():
    # a and b re-price in the same microsecond; b's rows arrive first. The historical
    # rebuild orders the two books by name: a's new book meets b's old one (buy a at
    # 98, sell b at 99.5), then b's new book crosses nothing. Arrival order would have
    # paired b's new book with a's old one instead (buy b at 98.9, sell a at 99).
    rows = [_u(0, "a", "ask", 100.0, 1.0, snap=True), _u(0, "a", "bid", 99.0, 1.0, snap=True),
            _u(5, "b", "bid", 99.5, 1.0, snap=True), _u(5, "b", "ask", 100.5, 1.0, snap=True),
            _u(10, "b", "bid", 97.9, 1.0, seq=2), _u(10, "b", "bid", 99.5, 0.0, seq=2),
            _u(10, "b", "ask", 98.9, 1.0, seq=2), _u(10, "b", "ask", 100.5, 0.0, seq=2),
            _u(10, "a", "ask", 98.0, 1.0, seq=2), _u(10, "a", "ask", 100.0, 0.0, seq=2),
            _u(10, "a", "bid", 97.5, 1.0, seq=2), _u(10, "a", "bid", 99.0, 0.0, seq=2)]
    cfg = ArbConfig(fees_bps={"a": 0.0, "b": 0.0}, sizes={"BTC": 1.0}, triangles=[], depth=5)

    got = _feed(Detector(cfg), rows)

    assert [(s["ts"], s["buy_venue"], s["sell_venue"], s["buy_px"], s["sell_px"]) for s in got] == [
        (T0_US + 10_000, "a", "b", 98.0, 99.5)]
    hist = cross_venue(books_from_updates(_frame(rows), depth=5), fees=0.0, size=1.0).collect()
    assert_frame_equal(signals_frame(got), hist)


def test_live_depth_mode_equals_historical_scan_on_the_simulator(sim_lake):
    # sizes several times the simulator's top level, so most prices walk the book
    sizes = {"BTC": 1.0, "ETH": 10.0, "SOL": 100.0}
    updates = sim_lake.scan("book_updates")
    for depth in (3, 10):
        cfg = ArbConfig(fees_bps={}, default_fee_bps=1.0, sizes=sizes, triangles=[], depth=depth)
        live = replay_into(Detector(cfg), updates)

        hist = cross_venue(books_from_updates(updates, depth=depth), fees={}, default_fee_bps=1.0,
                           size=sizes, max_age=cfg.max_age_ms).collect()

        top_only = cross_venue(books_from_updates(updates, depth=1), fees={}, default_fee_bps=1.0,
                               size=sizes, max_age=cfg.max_age_ms).collect()
        assert hist.height > 10 and top_only.height < hist.height / 2
        assert_frame_equal(signals_frame(live), hist, check_exact=False, rel_tol=1e-12)


_PX = st.sampled_from([99.0, 99.5, 100.0, 100.5, 101.0])


@st.composite
def _streams(draw) -> list[dict]:
    """Receive-ordered book_updates of 3 venues (ties, split messages, re-snapshots)."""
    rows = []
    ms = 0
    for _ in range(draw(st.integers(1, 25))):
        ms += draw(st.sampled_from([0, 0, 1, 3, 500, 3000]))
        venue = draw(st.sampled_from(["a", "b", "c"]))
        symbol = "BTC-USDT" if venue == "c" else "BTC-USD"
        snap = draw(st.booleans())
        seq = draw(st.integers(1, 3))
        for _ in range(draw(st.integers(1, 4))):
            rows.append(_u(ms, venue, draw(st.sampled_from(["bid", "ask"])), draw(_PX),
                           draw(st.sampled_from([0.0, 0.3, 1.0, 2.0])), snap=snap, seq=seq,
                           symbol=symbol))
    return rows


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_streams(), st.sampled_from([0.5, 1.0, 2.5]), st.integers(1, 3))
def test_live_depth_mode_equals_historical_on_random_streams(rows, size, depth):
    cfg = ArbConfig(fees_bps={}, default_fee_bps=0.0, sizes={"BTC": size}, triangles=[],
                    depth=depth, max_age_ms=2000.0)

    got = signals_frame(_feed(Detector(cfg), rows))

    books = books_from_updates(_frame(rows), depth=depth)
    if books.collect().height == 0:
        assert got.height == 0
        return
    want = cross_venue(books, fees=0.0, size=size, max_age=2000.0).collect()
    assert_frame_equal(got, want, check_exact=False, rel_tol=1e-12)


def test_run_live_in_depth_mode_reads_book_updates_from_a_real_bus(tmp_path):

    lake = Lake(tmp_path / "lake")
    cfg = ArbConfig(fees_bps=FEES, sizes={"BTC": 1.0}, triangles=[], depth=10, alerts=[],
                    flush_every_s=0.0)

    # the top-of-book quotes are too thin: they are not what signals here
    frames = [("quotes", [_q(0, "a", 99.0, 1.0, 100.0, 0.5)]), ("book_updates", THIN_TOP[:3]),
              ("quotes", [_q(10, "b", 101.0, 2.0, 101.5, 2.0)]), ("book_updates", THIN_TOP[3:])]
    det = asyncio.run(run_live_on_a_bus(cfg, lake, ["quotes", "book_updates"], frames,
                                        ("book_updates", len(THIN_TOP)), sinks=make_sinks([])))
    got = lake.scan("arbitrage_signals").collect()
    assert got.select("buy_venue", "sell_venue").rows() == [("a", "b")]
    assert got["buy_px"].item() == pytest.approx(100.2)
    assert det.signals_out == 1


def test_lab_arbitrage_replay_in_depth_mode_replays_book_updates(tmp_path, sim_lake, capsys):
    lake = Lake(tmp_path / "lake")
    updates = sim_lake.scan("book_updates").sort("ts_local", maintain_order=True).head(60_000).collect()
    lake.append("book_updates", updates)
    lake.append("quotes", sim_lake.scan("quotes").head(10).collect())  # not read: no triangles
    cfg = tmp_path / "arb.toml"
    cfg.write_text("""
[arbitrage]
fees_bps = { binance = 0.5, coinbase = 0.5, kraken = 0.5 }
sizes = { BTC = 1.0, ETH = 10.0, SOL = 100.0 }
triangles = []
alerts = []
depth = 10
""")
    from lab.cli import main

    assert main(["arbitrage", "--replay", "--lake", str(lake.root), "--config", str(cfg)]) == 0

    want = cross_venue(books_from_updates(updates, depth=10), fees=0.5,
                       size={"BTC": 1.0, "ETH": 10.0, "SOL": 100.0}).collect()
    got = lake.scan("arbitrage_signals").collect()
    assert want.height > 0
    assert_frame_equal(got.sort("ts", maintain_order=True), want, check_exact=False, rel_tol=1e-12)
    assert "book_updates, 10 levels" in capsys.readouterr().err
    assert main(["arbitrage", "--replay", "--lake", str(lake.root), "--depth", "-1"]) == 2
