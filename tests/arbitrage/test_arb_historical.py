"""Historical arbitrage on hand-built books with answers worked out by hand."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from lab.arbitrage import cross_venue, episodes, summary, triangular, walk_buy, walk_sell, walk_spend
from lab.schema import table_spec

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def t(ms: float) -> dt.datetime:
    return T0 + dt.timedelta(milliseconds=ms)


def quotes(rows: list[tuple]) -> pl.LazyFrame:
    """rows: (ms, venue, symbol, bid, bid_qty, ask, ask_qty)."""
    ms, venue, symbol, bid, bq, ask, aq = zip(*rows)
    return pl.LazyFrame({
        "ts_local": [t(m) for m in ms], "venue": list(venue), "symbol": list(symbol),
        "bid_px": list(bid), "bid_qty": list(bq), "ask_px": list(ask), "ask_qty": list(aq),
    })


def test_signal_schema_matches_the_lake_table():
    q = quotes([(0, "a", "BTC-USDT", 99.0, 1.0, 100.0, 1.0), (5, "b", "BTC-USD", 101.0, 1.0, 102.0, 1.0)])
    out = cross_venue(q, fees=0.0, size=1.0)
    assert out.collect_schema() == table_spec("arbitrage_signals").schema
    assert out.collect().schema == table_spec("arbitrage_signals").schema


def test_fees_turn_an_apparent_edge_negative():
    # a asks 100.00, b bids 100.30: gross +30 bps.
    q = quotes([(0, "a", "BTC-USDT", 99.90, 5.0, 100.00, 5.0),
                (10, "b", "BTC-USD", 100.30, 5.0, 100.40, 5.0)])
    low = cross_venue(q, fees={"a": 10.0, "b": 10.0}, size=1.0).collect()
    # by hand: cost 100*(1.001)=100.1, proceeds 100.3*(0.999)=100.1997, net = 0.0997/100.1
    assert low.height == 1
    r = low.row(0, named=True)
    assert (r["buy_venue"], r["sell_venue"]) == ("a", "b")
    assert r["gross_edge_bps"] == pytest.approx(30.0)
    assert r["net_edge_bps"] == pytest.approx(0.0997 / 100.1 * 1e4)
    assert r["profit_quote"] == pytest.approx(0.0997)
    assert r["volume_usd"] == pytest.approx(100.0)
    # 20 bps a leg: cost 100.2, proceeds 100.0994 -> negative, no signal
    assert cross_venue(q, fees={"a": 20.0, "b": 20.0}, size=1.0).collect().height == 0
    tl = cross_venue(q, fees={"a": 20.0, "b": 20.0}, size=1.0, keep="all").collect()
    ab = tl.filter(buy_venue="a", sell_venue="b")
    assert ab["net_edge_bps"].item() == pytest.approx((100.3 * 0.998 - 100.2) / 100.2 * 1e4)


def test_book_too_thin_for_the_size_gives_no_signal_and_walks_levels():
    # wide books: a's asks 100 x 1, 101 x 1; b's bids 102 x 3
    books = pl.LazyFrame({
        "ts_local": [t(0), t(1)], "venue": ["a", "b"], "symbol": ["ETH-USD", "ETH-USD"],
        "bid_px_0": [99.0, 102.0], "bid_qty_0": [5.0, 3.0], "ask_px_0": [100.0, 103.0],
        "ask_qty_0": [1.0, 5.0], "bid_px_1": [98.0, None], "bid_qty_1": [5.0, None],
        "ask_px_1": [101.0, None], "ask_qty_1": [1.0, None],
    })
    two = cross_venue(books, fees=0.0, size=2.0).collect()
    assert two.height == 1
    assert two["buy_px"].item() == pytest.approx(100.5)  # (100 + 101) / 2
    assert two["net_edge_bps"].item() == pytest.approx((102 - 100.5) / 100.5 * 1e4)
    # 3 units: a has only 2 on the asks -> nothing, although top of book shows +200 bps
    assert cross_venue(books, fees=0.0, size=3.0).collect().height == 0
    # per-asset sizes: an asset without a size is skipped
    assert cross_venue(books, fees=0.0, size={"BTC": 1.0}).collect().height == 0


def test_stale_quote_is_never_used():
    # b's quote is 3 s old when a updates: the cross is fake.
    q = quotes([(0, "b", "BTC-USD", 101.0, 5.0, 101.5, 5.0),
                (3000, "a", "BTC-USDT", 99.0, 5.0, 100.0, 5.0)])
    assert cross_venue(q, fees=0.0, size=1.0, max_age="2s").collect().height == 0
    fresh = cross_venue(q, fees=0.0, size=1.0, max_age=3500.0).collect()
    assert fresh.select("buy_venue", "sell_venue").rows() == [("a", "b")]
    tl = cross_venue(q, fees=0.0, size=1.0, max_age=dt.timedelta(seconds=2), keep="all").collect()
    assert not tl["fresh"].any()


def test_usdt_rate_converts_before_comparing():
    q = quotes([(0, "a", "BTC-USDT", 99.0, 5.0, 100.0, 5.0),
                (1, "b", "BTC-USD", 100.2, 5.0, 100.5, 5.0)])
    # at par: +20 bps; if 1 USDT = 1.003 USD, a's ask is 100.3 USD: no edge
    assert cross_venue(q, fees=0.0, size=1.0).collect().height == 1
    rated = cross_venue(q, fees=0.0, size=1.0, quote_rates={"USD": 1.0, "USDT": 1.003}).collect()
    assert rated.height == 0


def test_triangular_cycle_with_known_product_of_rates():
    # USD->BTC at ask 50,000; BTC->ETH at ask 0.04 BTC; ETH->USD at bid 2,030
    # product = 1/50000 / 0.04 * 2030 = 1.015 (+150 bps); three 10 bps fees: *0.999**3
    q = quotes([(0, "v", "BTC-USDT", 49_990.0, 10.0, 50_000.0, 10.0),
                (1, "v", "ETH-BTC", 0.0399, 100.0, 0.04, 100.0),
                (2, "v", "ETH-USDT", 2_030.0, 100.0, 2_031.0, 100.0)])
    r = triangular(q, fees=10.0, notional=1000.0, both_directions=False).collect()
    assert r.height == 1
    row = r.row(0, named=True)
    product = 1 / 50_000 / 0.04 * 2030
    assert row["gross_edge_bps"] == pytest.approx((product - 1) * 1e4)
    assert row["net_edge_bps"] == pytest.approx((product * 0.999 ** 3 - 1) * 1e4)
    assert row["profit_quote"] == pytest.approx(1000 * (product * 0.999 ** 3 - 1))
    assert (row["asset"], row["buy_symbol"], row["sell_symbol"]) == (
        "USD>BTC>ETH>USD", "BTC-USDT", "ETH-USDT")
    # the reverse cycle loses both spreads: no signal from it
    both = triangular(q, fees=10.0, notional=1000.0).collect()
    assert both["asset"].to_list() == ["USD>BTC>ETH>USD"]
    # too thin: 1,000,000 USD buys 20 BTC but the ask holds 10
    assert triangular(q, fees=10.0, notional=1_000_000.0).collect().height == 0


def _walk_loop(px: list[float], qty: list[float], size: float) -> float | None:
    left, cost = size, 0.0
    for p, q in zip(px, qty):
        take = min(left, q)
        cost += take * p
        left -= take
        if left <= 0:
            break
    return None if left > 1e-9 * size else cost / size


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.01, 5.0), st.floats(0.0, 3.0)), min_size=1, max_size=5),
       st.floats(0.01, 8.0))
def test_walk_matches_a_plain_loop(levels, size):
    gaps, qtys = zip(*levels)
    asks = list(np.cumsum(gaps) + 100.0)
    bids = [200.0 - a for a in asks]
    cols = {}
    for i, (a, b, q) in enumerate(zip(asks, bids, qtys)):
        cols |= {f"ask_px_{i}": [a], f"ask_qty_{i}": [q], f"bid_px_{i}": [b], f"bid_qty_{i}": [q]}
    df = pl.DataFrame(cols)
    got_b = df.select(walk_buy(size, len(asks))).item()
    got_s = df.select(walk_sell(size, len(asks))).item()
    want_b, want_s = _walk_loop(asks, list(qtys), size), _walk_loop(bids, list(qtys), size)
    assert (got_b is None) == (want_b is None)
    if want_b is not None:
        assert got_b == pytest.approx(want_b, rel=1e-12)
        assert got_s == pytest.approx(want_s, rel=1e-12)
        # spending what the buy cost buys back the size
        assert df.select(walk_spend(want_b * size, len(asks))).item() == pytest.approx(size, rel=1e-9)


def test_episodes_start_end_peak_and_profit_by_hand():
    # a asks 100; b's bid moves 100.1 (t=100) -> 100.3 (t=200) -> 99.9 (t=450)
    q = quotes([(0, "a", "BTC-USD", 99.5, 5.0, 100.0, 5.0),
                (100, "b", "BTC-USD", 100.1, 5.0, 100.6, 5.0),
                (200, "b", "BTC-USD", 100.3, 5.0, 100.8, 5.0),
                (450, "b", "BTC-USD", 99.9, 5.0, 100.4, 5.0)])
    tl = cross_venue(q, fees=0.0, size=2.0, keep="episodes")
    e = episodes(tl).collect()
    assert e.height == 1
    r = e.row(0, named=True)
    assert (r["start"], r["end"], r["duration_ms"]) == (t(100), t(450), 350.0)
    assert r["peak_net_edge_bps"] == pytest.approx(30.0)
    # 10 bps for 100 ms, 30 bps for 250 ms
    assert r["avg_net_edge_bps"] == pytest.approx((10 * 100 + 30 * 250) / 350)
    assert r["profit_quote"] == pytest.approx(2 * 0.1)
    assert r["peak_profit_quote"] == pytest.approx(2 * 0.3)
    assert (r["opened_by"], r["closed_by"], r["updates"]) == ("b", "b", 2)
    s = summary(tl, latencies_ms=(50.0, 200.0, 400.0))
    lat = s["latency"].collect()
    # at +50 ms the edge is 10 bps, at +200 ms 30 bps, at +400 ms (t=500) it is gone
    assert lat["still_profitable"].to_list() == [1.0, 1.0, 0.0]
    assert lat["mean_edge_bps"].to_list() == pytest.approx([10.0, 30.0, 0.0])
    assert s["duration"].collect()["q0.5"].item() == 350.0


def test_helpers_reject_bad_input_with_clear_messages():
    q = pl.LazyFrame({"ts_local": [t(0)], "venue": ["a"], "symbol": ["BTC-USD"], "bid_px": [1.0]})
    with pytest.raises(ValueError, match="missing"):
        cross_venue(q)
    with pytest.raises(ValueError, match="keep"):
        cross_venue(q, keep="everything")
    with pytest.raises(ValueError, match="max_age"):
        cross_venue(quotes([(0, "a", "BTC-USD", 1.0, 1.0, 2.0, 1.0)]), max_age="soon").collect()


def test_lazy_schema_equals_collected_for_episodes():
    q = quotes([(0, "a", "BTC-USD", 99.5, 5.0, 100.0, 5.0), (100, "b", "BTC-USD", 100.1, 5.0, 100.6, 5.0)])
    e = episodes(cross_venue(q, fees=0.0, keep="episodes"))
    assert e.collect_schema() == e.collect().schema
    tl = cross_venue(q, fees=0.0, keep="episodes").collect()
    assert_frame_equal(tl.filter("profitable").select(cross_venue(q, fees=0.0).collect_schema().names()),
                       cross_venue(q, fees=0.0).collect())


def test_books_rebuilt_from_updates_are_walked_beyond_the_top_level():
    # venue a: asks 100 x 1, 101 x 1 (snapshot); venue b: bids 102.5 x 5; then a's
    # best ask is removed: the 2-unit walk on a costs 101 (only level left) -> thin
    ts = [t(0), t(0), t(0), t(1), t(50)]
    upd = pl.LazyFrame({
        "ts_exchange": ts, "ts_local": ts, "venue": ["a", "a", "a", "b", "a"],
        "symbol": ["BTC-USD"] * 5, "side": ["ask", "ask", "bid", "bid", "ask"],
        "price": [100.0, 101.0, 99.0, 102.5, 100.0], "qty": [1.0, 1.0, 1.0, 5.0, 0.0],
        "is_snapshot": [True, True, True, True, False], "seq": [1, 1, 1, 7, 2]})
    from lab.arbitrage import books_from_updates

    books = books_from_updates(upd, depth=5)
    sig = cross_venue(books, fees=0.0, size=2.0).collect()
    # at t=1 ms: buy 2 on a = (100 + 101)/2 = 100.5, sell on b at 102.5
    assert sig.select("ts", "buy_venue", "sell_venue").rows() == [(t(1), "a", "b")]
    assert sig["buy_px"].item() == pytest.approx(100.5)
    # 1 unit still pays after the removal (101 < 102.5), 2 units do not (too thin)
    one = cross_venue(books, fees=0.0, size=1.0).collect()
    assert one["buy_px"].to_list() == [100.0, 101.0]


def test_triangular_never_reuses_a_level_a_book_no_longer_has():
    # Two-level wide books. BTC-USDT asks: 50,000 x 0.01 then 50,100 x 1; 1,000 USD needs
    # 0.02 BTC, so it walks both levels. At 10 ms the BTC book has one level only: the
    # cycle is too thin then, and must not walk the vanished 50,100 level.
    nan = None
    rows = [
        # ms, symbol, bids [(px, qty), (px, qty)], asks [(px, qty), (px, qty)]
        (0, "BTC-USDT", [(49_990.0, 10.0), (49_980.0, 10.0)], [(50_000.0, 0.01), (50_100.0, 1.0)]),
        (1, "ETH-BTC", [(0.0399, 100.0), (0.0398, 100.0)], [(0.04, 100.0), (0.0401, 100.0)]),
        (2, "ETH-USDT", [(2_030.0, 100.0), (2_029.0, 100.0)], [(2_031.0, 100.0), (2_032.0, 100.0)]),
        (10, "BTC-USDT", [(49_990.0, 10.0), (nan, nan)], [(50_000.0, 0.01), (nan, nan)]),
    ]
    data: dict[str, list] = {"ts_local": [], "venue": [], "symbol": []}
    for side in ("bid", "ask"):
        for i in range(2):
            data[f"{side}_px_{i}"] = []
            data[f"{side}_qty_{i}"] = []
    for ms, sym, bids, asks in rows:
        data["ts_local"].append(t(ms)); data["venue"].append("v"); data["symbol"].append(sym)
        for side, lv in (("bid", bids), ("ask", asks)):
            for i, (p, q) in enumerate(lv):
                data[f"{side}_px_{i}"].append(p); data[f"{side}_qty_{i}"].append(q)
    books = pl.LazyFrame(data, schema_overrides={k: pl.Float64 for k in data if "_px_" in k or "_qty_" in k})
    r = triangular(books, fees=0.0, notional=1000.0, both_directions=False, keep="all").collect()
    by_ts = {row["ts"]: row for row in r.iter_rows(named=True)}
    # at 2 ms: 500 USD buys 0.01 BTC at 50,000, 500 USD buys 500/50,100 BTC at 50,100
    btc = 0.01 + 500 / 50_100
    product = btc / 0.04 * 2030 / 1000
    assert by_ts[t(2)]["net_edge_bps"] == pytest.approx((product - 1) * 1e4)
    # at 10 ms the book is too thin: no edge, whatever the old second level said
    assert t(10) not in by_ts or by_ts[t(10)]["net_edge_bps"] is None or np.isnan(by_ts[t(10)]["net_edge_bps"])
