"""Triangles in depth mode: each leg walks the L2 book rebuilt from book_updates, against
a hand-worked cycle and against the historical triangular scan of the same rows."""

from __future__ import annotations

import msgspec
import polars as pl
import pytest
from arbrows import T0_US, quote, replay_into, update
from arbrows import feed as _feed
from arbrows import frame as _frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from lab.arbitrage import ArbConfig, books_from_updates, cross_venue, triangular
from lab.arbitrage.live import Detector, bus_tables, signals_frame

CYCLE = ["USD", "BTC", "ETH"]


def _u(ms: float, symbol: str, side: str, price: float, qty: float, *, snap: bool = False,
       seq: int = 1, venue: str = "v") -> dict:
    return update(ms, venue, symbol, side, price, qty, snap=snap, seq=seq)


def _q(ms: float, symbol: str, bid: float, bid_qty: float, ask: float, ask_qty: float) -> dict:
    return quote(ms, "v", symbol, bid, bid_qty, ask, ask_qty)


def _kind(rows: list[dict], kind: str) -> pl.DataFrame:
    return signals_frame([r for r in rows if r["kind"] == kind])


# 1,000 USD buys 0.01 BTC at 50,000 (500 USD) and the rest at 50,100: two levels of BTC-USD
TWO_LEVELS = [
    _u(0, "BTC-USD", "ask", 50_000.0, 0.01, snap=True), _u(0, "BTC-USD", "ask", 50_100.0, 1.0, snap=True),
    _u(0, "BTC-USD", "bid", 49_990.0, 10.0, snap=True),
    _u(1, "ETH-BTC", "ask", 0.04, 100.0, snap=True), _u(1, "ETH-BTC", "bid", 0.0399, 100.0, snap=True),
    _u(2, "ETH-USD", "bid", 2_030.0, 100.0, snap=True), _u(2, "ETH-USD", "ask", 2_031.0, 100.0, snap=True),
    # the 50,100 level goes: 1,000 USD no longer fits in the BTC book
    _u(10, "BTC-USD", "ask", 50_100.0, 0.0, seq=2),
]


def test_depth_mode_triangle_walks_two_levels_of_a_leg():
    cfg = ArbConfig(fees_bps={"v": 1.0}, triangles=[CYCLE], triangle_notional=1000.0, depth=10)

    got = _feed(Detector(cfg), TWO_LEVELS)

    # by hand, 1 bp per leg: USD -> BTC over two ask levels, BTC -> ETH on the 0.04 ask,
    # ETH -> USD into the 2,030 bid
    btc = 0.01 + 500.0 / 50_100.0
    gross_end = btc / 0.04 * 2_030.0
    net_end = btc * 0.9999 / 0.04 * 0.9999 * 2_030.0 * 0.9999
    assert [(s["ts"], s["kind"], s["asset"]) for s in got] == [
        (T0_US + 2_000, "triangular", "USD>BTC>ETH>USD")]
    s = got[0]
    assert (s["buy_venue"], s["sell_venue"], s["buy_symbol"], s["sell_symbol"]) == (
        "v", "v", "BTC-USD", "ETH-USD")
    assert s["net_edge_bps"] == pytest.approx((net_end / 1000.0 - 1) * 1e4, rel=1e-12)
    # 1,013.98703 USD back before fees (+139.87 bps), × 0.9999³ after: +136.83 bps
    assert s["net_edge_bps"] == pytest.approx(136.8286, abs=1e-4)
    assert s["gross_edge_bps"] == pytest.approx((gross_end / 1000.0 - 1) * 1e4, rel=1e-12)
    assert s["gross_edge_bps"] == pytest.approx(139.8703, abs=1e-4)
    assert s["profit_quote"] == pytest.approx(net_end - 1000.0, rel=1e-12)
    assert (s["size"], s["buy_px"], s["sell_px"], s["volume_usd"]) == (1000.0, 50_000.0, 2_030.0, 1000.0)


def test_quote_mode_triangle_does_not_signal_when_the_top_level_is_too_thin():
    cfg = ArbConfig(fees_bps={"v": 1.0}, triangles=[CYCLE], triangle_notional=1000.0)  # depth 0
    quotes = [_q(0, "BTC-USD", 49_990.0, 10.0, 50_000.0, 0.01),
              _q(1, "ETH-BTC", 0.0399, 100.0, 0.04, 100.0),
              _q(2, "ETH-USD", 2_030.0, 100.0, 2_031.0, 100.0)]

    det = Detector(cfg)
    got = [s for q in quotes for s in det.on_quote(q)]

    assert got == []
    # nor a depth-1 detector on the books: the second level is what makes it fit
    assert _feed(Detector(msgspec.structs.replace(cfg, depth=1)), TWO_LEVELS) == []
    # half the notional fits the top level, and quote mode does see that cycle
    det = Detector(msgspec.structs.replace(cfg, triangle_notional=400.0))
    assert [s["asset"] for q in quotes for s in det.on_quote(q)] == ["USD>BTC>ETH>USD"]


def test_depth_mode_reads_only_book_updates():
    cfg = ArbConfig(fees_bps={"v": 1.0}, triangles=[CYCLE], triangle_notional=400.0, depth=10)
    det = Detector(cfg)

    got = [s for q in (_q(0, "BTC-USD", 49_990.0, 10.0, 50_000.0, 0.01),
                       _q(1, "ETH-BTC", 0.0399, 100.0, 0.04, 100.0),
                       _q(2, "ETH-USD", 2_030.0, 100.0, 2_031.0, 100.0)) for s in det.on_quote(q)]

    assert got == [] and det.books == {} and det.tbooks == {}
    assert bus_tables(cfg) == ["book_updates"]


def test_depth_mode_triangles_equal_historical_on_the_hand_stream():
    cfg = ArbConfig(fees_bps={"v": 1.0}, triangles=[CYCLE], triangle_notional=1000.0, depth=10)

    got = _feed(Detector(cfg), TWO_LEVELS)

    want = triangular(books_from_updates(_frame(TWO_LEVELS), depth=10), cycles=[CYCLE],
                      fees={"v": 1.0}, notional=1000.0, max_age=cfg.max_age_ms).collect()
    assert want.height == 1
    assert_frame_equal(signals_frame(got), want, check_exact=False, rel_tol=1e-12)


def test_signals_of_one_receive_time_come_cycle_by_cycle_as_historical():
    # every book arrives in the same microsecond; books are applied in (venue, symbol)
    # order, so a's reverse cycle is found before b's forward one, but the historical
    # scan lists one time's rows cycle by cycle: forward (b) first, then reverse (a)
    def book(venue: str, symbol: str, bid: float, ask: float) -> list[dict]:
        return [_u(0, symbol, "bid", bid, 100.0, snap=True, venue=venue),
                _u(0, symbol, "ask", ask, 100.0, snap=True, venue=venue)]
    rows = (book("b", "BTC-USD", 49_990.0, 50_000.0) + book("b", "ETH-BTC", 0.0399, 0.04)
            + book("b", "ETH-USD", 2_030.0, 2_031.0)
            + book("a", "BTC-USD", 50_000.0, 50_010.0) + book("a", "ETH-BTC", 0.0405, 0.0406)
            + book("a", "ETH-USD", 1_999.0, 2_000.0))
    cfg = ArbConfig(fees_bps={}, default_fee_bps=0.0, triangles=[CYCLE], triangle_notional=1000.0,
                    depth=5)

    got = [s for s in _feed(Detector(cfg), rows) if s["kind"] == "triangular"]

    # by hand: b 1000/50,000/0.04·2,030 = 1,015 (+150 bps); a 1000/2,000·0.0405·50,000 = 1,012.5
    assert [(s["asset"], s["buy_venue"]) for s in got] == [("USD>BTC>ETH>USD", "b"),
                                                           ("USD>ETH>BTC>USD", "a")]
    assert [s["net_edge_bps"] for s in got] == pytest.approx([150.0, 125.0], rel=1e-9)
    want = triangular(books_from_updates(_frame(rows), depth=5), cycles=[CYCLE], fees=0.0,
                      notional=1000.0).collect()
    assert_frame_equal(signals_frame(got), want, check_exact=False, rel_tol=1e-12)


def test_live_depth_mode_triangles_equal_historical_on_the_simulator(sim_lake):
    # 15,000 USD is several times the simulator's top level: the legs walk the books
    sizes = {"BTC": 1.0, "ETH": 10.0, "SOL": 100.0}
    updates = sim_lake.scan("book_updates")
    for depth in (3, 10):
        cfg = ArbConfig(fees_bps={}, default_fee_bps=0.5, sizes=sizes, triangles=[CYCLE],
                        triangle_notional=15_000.0, depth=depth)
        live = replay_into(Detector(cfg), updates)

        books = books_from_updates(updates, depth=depth).collect().lazy()
        hist = triangular(books, cycles=cfg.triangles, fees={}, default_fee_bps=0.5,
                          notional=15_000.0, max_age=cfg.max_age_ms,
                          min_edge_bps=cfg.min_edge_bps, quote_rates=cfg.quote_rates,
                          time_column="ts_local", both_directions=True).collect()
        cross = cross_venue(books, fees={}, default_fee_bps=0.5, size=sizes,
                            max_age=cfg.max_age_ms).collect()

        assert hist.height > 10
        assert_frame_equal(_kind(live, "triangular"), hist, check_exact=False, rel_tol=1e-12)
        assert_frame_equal(_kind(live, "cross_venue"), cross, check_exact=False, rel_tol=1e-12)
    top_only = triangular(books_from_updates(updates, depth=1), cycles=[CYCLE], fees={},
                          default_fee_bps=0.5, notional=15_000.0).collect()
    assert top_only.height == 0


_SYMS = {  # symbol: (prices, sizes); BTC ~ 100 USD, ETH ~ 5 USD ~ 0.05 BTC
    "BTC-USD": ([99.0, 100.0, 101.0], [0.0, 0.3, 1.0, 2.0]),
    "BTC-USDT": ([99.5, 100.5], [0.0, 0.3, 1.0, 2.0]),
    "ETH-BTC": ([0.049, 0.05, 0.051], [0.0, 6.0, 20.0, 40.0]),
    "ETH-USD": ([4.9, 5.0, 5.1], [0.0, 6.0, 20.0, 40.0]),
}


def _message(draw, rows: list[dict], ms: int, venue: str, symbol: str, snap: bool, seq: int,
             most: int = 4) -> None:
    prices, sizes = _SYMS[symbol]
    for _ in range(draw(st.integers(1, most))):
        rows.append(_u(ms, symbol, draw(st.sampled_from(["bid", "ask"])),
                       draw(st.sampled_from(prices)), draw(st.sampled_from(sizes)),
                       snap=snap, seq=seq, venue=venue))


@st.composite
def _streams(draw) -> list[dict]:
    """Receive-ordered book_updates of 2 venues' triangle books (ties, split messages,
    re-snapshots, BTC-USD and BTC-USDT on one venue), venue a's three books first."""
    rows: list[dict] = []
    for symbol in ("BTC-USD", "ETH-BTC", "ETH-USD"):
        _message(draw, rows, 0, "a", symbol, True, 1, most=8)
    ms = 0
    for _ in range(draw(st.integers(0, 30))):
        ms += draw(st.sampled_from([0, 0, 1, 3, 100, 300, 3000]))
        _message(draw, rows, ms, draw(st.sampled_from(["a", "a", "b"])),
                 draw(st.sampled_from(sorted(_SYMS))), draw(st.booleans()), draw(st.integers(1, 3)))
    return rows


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_streams(), st.sampled_from([50.0, 100.0, 250.0]), st.sampled_from([0.0, 3.0]),
       st.integers(1, 3))
def test_live_depth_mode_triangles_equal_historical_on_random_streams(rows, notional, fee, depth):
    cfg = ArbConfig(fees_bps={}, default_fee_bps=fee, triangles=[CYCLE], triangle_notional=notional,
                    depth=depth, max_age_ms=2000.0)

    got = _kind(_feed(Detector(cfg), rows), "triangular")

    books = books_from_updates(_frame(rows), depth=depth)
    if books.collect().height == 0:
        assert got.height == 0
        return
    want = triangular(books, cycles=[CYCLE], fees=fee, notional=notional, max_age=2000.0).collect()
    assert_frame_equal(got, want, check_exact=False, rel_tol=1e-12)


def test_lab_arbitrage_replay_in_depth_mode_walks_triangles_on_book_updates_only(
        tmp_path, sim_lake, capsys):
    from lab.cli import main
    from lab.lake import Lake

    lake = Lake(tmp_path / "lake")
    updates = sim_lake.scan("book_updates").sort("ts_local", maintain_order=True).head(60_000).collect()
    lake.append("book_updates", updates)
    lake.append("quotes", sim_lake.scan("quotes").head(1000).collect())  # not read in depth mode
    cfg = tmp_path / "arb.toml"
    cfg.write_text("""
[arbitrage]
fees_bps = {}
default_fee_bps = 0.0
sizes = { BTC = 1.0, ETH = 10.0, SOL = 100.0 }
triangles = [["USD", "BTC", "ETH"]]
triangle_notional = 15000.0
alerts = []
depth = 3
""")

    assert main(["arbitrage", "--replay", "--lake", str(lake.root), "--config", str(cfg)]) == 0

    books = books_from_updates(updates, depth=3).collect().lazy()
    want = triangular(books, cycles=[CYCLE], fees=0.0, notional=15_000.0).collect()
    got = lake.scan("arbitrage_signals").filter(kind="triangular").collect()
    assert want.height > 0
    assert_frame_equal(got.sort("ts", maintain_order=True), want, check_exact=False, rel_tol=1e-12)
    assert f"lab arbitrage: {updates.height} rows" in capsys.readouterr().err
