"""lab.book: rebuild against a plain-Python dict book, features against hand computations."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from lab import book

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _updates(rows: list[tuple]) -> pl.DataFrame:
    """rows: (ms, venue, symbol, side, price, qty, is_snapshot, seq)."""
    ms, v, s, side, px, q, snap, seq = zip(*rows)
    return pl.DataFrame({
        "ts_exchange": [T0 + dt.timedelta(milliseconds=m) for m in ms],
        "venue": list(v), "symbol": list(s), "side": list(side),
        "price": [float(p) for p in px], "qty": [float(x) for x in q],
        "is_snapshot": list(snap), "seq": list(seq),
    })


def _reference(rows: list[tuple], depth: int) -> list[tuple]:
    """A dict-per-side book, emitted after each message (same ms, seq, snapshot flag)."""
    out, books = [], {}
    order = sorted(range(len(rows)), key=lambda i: (rows[i][1], rows[i][2], rows[i][0], rows[i][7]))
    synced: dict = {}
    prev = None
    for n, i in enumerate(order):
        ms, v, s, side, px, q, snap, seq = rows[i]
        key = (v, s)
        msg = (v, s, ms, seq, snap)
        if snap and msg != prev:
            books[key] = {"bid": {}, "ask": {}}
            synced[key] = True
        b = books.setdefault(key, {"bid": {}, "ask": {}})
        if q > 0:
            b[side][px] = q
        else:
            b[side].pop(px, None)
        prev = msg
        nxt = rows[order[n + 1]] if n + 1 < len(order) else None
        if nxt is None or (nxt[1], nxt[2], nxt[0], nxt[7], nxt[6]) != (v, s, ms, seq, snap):
            if synced.get(key):
                bids = sorted(b["bid"].items(), reverse=True)[:depth]
                asks = sorted(b["ask"].items())[:depth]
                row = [v, s, ms]
                for lv in range(depth):
                    row += [*(bids[lv] if lv < len(bids) else (None, None)),
                            *(asks[lv] if lv < len(asks) else (None, None))]
                out.append(tuple(row))
    return out


def _as_rows(books: pl.LazyFrame, depth: int) -> list[tuple]:
    df = books.collect()
    ms = df.select((pl.col("ts_exchange") - pl.lit(T0)).dt.total_milliseconds()).to_series().to_list()
    lv = df.select(book.wide_columns(depth)).rows()
    return [(v, s, m, *r) for v, s, m, r in zip(df["venue"], df["symbol"], ms, lv)]


def test_rebuild_snapshot_diffs_and_reset_match_hand_worked_book():
    rows = [
        (0, "x", "A", "bid", 99, 1, True, 10), (0, "x", "A", "bid", 98, 2, True, 10),
        (0, "x", "A", "ask", 101, 3, True, 10),
        (5, "x", "A", "bid", 99, 0, False, 11),      # best bid deleted
        (5, "x", "A", "ask", 100.5, 1, False, 11),   # new best ask, same message
        (9, "x", "A", "bid", 97, 4, True, 20),       # new snapshot resets the book
        (9, "x", "A", "ask", 102, 5, True, 20),
    ]
    got = book.rebuild(_updates(rows), depth=2).collect()
    want = pl.DataFrame({
        "bid_px_0": [99.0, 98.0, 97.0], "bid_qty_0": [1.0, 2.0, 4.0],
        "ask_px_0": [101.0, 100.5, 102.0], "ask_qty_0": [3.0, 1.0, 5.0],
        "bid_px_1": [98.0, None, None], "ask_px_1": [None, 101.0, None],
        "seq": [10, 11, 20],
    })
    assert_frame_equal(got.select(want.columns), want)


def test_rebuild_emits_nothing_before_the_first_snapshot():
    rows = [(0, "x", "A", "bid", 99, 1, False, 1), (1, "x", "A", "bid", 98, 1, True, 2),
            (2, "x", "A", "ask", 101, 1, False, 3)]
    got = book.rebuild(_updates(rows), depth=1).collect()
    assert got["seq"].to_list() == [2, 3]
    assert got["bid_px_0"].to_list() == [98.0, 98.0]


def test_rebuild_on_a_grid_holds_the_last_book_at_each_time():
    rows = [(0, "x", "A", "bid", 99, 1, True, 1), (0, "x", "A", "ask", 101, 1, True, 1),
            (1500, "x", "A", "bid", 100, 2, False, 2), (3000, "x", "A", "bid", 100, 0, False, 3)]
    got = book.rebuild(_updates(rows), depth=1, every="1s").collect()
    ms = got.select((pl.col("ts_exchange") - pl.lit(T0)).dt.total_milliseconds()).to_series().to_list()
    assert ms == [0, 1000, 2000, 3000]
    assert got["bid_px_0"].to_list() == [99.0, 99.0, 100.0, 99.0]


def test_rebuild_from_start_replays_from_the_last_snapshot():
    rows = [(0, "x", "A", "bid", 99, 1, True, 1), (0, "x", "A", "ask", 101, 1, True, 1),
            (100, "x", "A", "bid", 99.5, 2, False, 2), (200, "x", "A", "ask", 100.5, 2, False, 3)]
    got = book.rebuild(_updates(rows), depth=1, start=T0 + dt.timedelta(milliseconds=150)).collect()
    assert got.select("bid_px_0", "ask_px_0", "seq").rows() == [(99.5, 100.5, 3)]


def test_rebuild_only_changes_drops_messages_below_the_visible_depth():
    rows = [(0, "x", "A", "bid", 99, 1, True, 1), (0, "x", "A", "ask", 101, 1, True, 1),
            (1, "x", "A", "bid", 90, 5, False, 2), (2, "x", "A", "bid", 99, 3, False, 3)]
    got = book.rebuild(_updates(rows), depth=1, only_changes=True).collect()
    assert got["seq"].to_list() == [1, 3]


def test_rebuild_names_missing_columns():
    with pytest.raises(ValueError, match="is_snapshot"):
        book.rebuild(pl.LazyFrame({"ts_exchange": [T0], "venue": ["x"], "symbol": ["A"],
                                   "side": ["bid"], "price": [1.0], "qty": [1.0], "seq": [1]}))


_level = st.tuples(st.integers(0, 3), st.sampled_from(["x", "y"]), st.sampled_from(["bid", "ask"]),
                   st.integers(0, 8), st.sampled_from([0, 0, 1, 2, 3]), st.booleans())


@settings(max_examples=60, deadline=None)
@given(st.lists(_level, min_size=1, max_size=60))
def test_rebuild_equals_a_dict_book_at_every_message(levels):
    rows = []
    for n, (dms, venue, side, tick, q, snap) in enumerate(levels):
        # bids below 100, asks above, so books never cross
        px = 100 - 1 - tick if side == "bid" else 100 + 1 + tick
        rows.append((n // 3 * 10 + dms, venue, "A", side, px, q, snap and n % 3 == 0, n // 3))
    # a snapshot message must be homogeneous: mark the whole (ms, seq) group
    snap_keys = {(r[1], r[0], r[7]) for r in rows if r[6]}
    rows = [r[:6] + ((r[1], r[0], r[7]) in snap_keys,) + r[7:] for r in rows]
    depth = 3
    got = _as_rows(book.rebuild(_updates(rows), depth=depth), depth)
    want = _reference(rows, depth)
    assert got == [tuple(None if isinstance(x, float) and np.isnan(x) else x for x in r) for r in want]


def test_rebuild_lazy_schema_equals_collected_schema():
    rows = [(0, "x", "A", "bid", 99, 1, True, 1), (0, "x", "A", "ask", 101, 1, True, 1)]
    lf = book.with_book_features(book.rebuild(_updates(rows), depth=3), levels=2)
    assert lf.collect_schema() == lf.collect().schema


# ---------------------------------------------------------------- features
def _wide(bids: list[tuple], asks: list[tuple], depth: int) -> pl.DataFrame:
    d: dict = {}
    for i in range(depth):
        d[f"bid_px_{i}"], d[f"bid_qty_{i}"] = bids[i] if i < len(bids) else (None, None)
        d[f"ask_px_{i}"], d[f"ask_qty_{i}"] = asks[i] if i < len(asks) else (None, None)
    return pl.DataFrame([d], schema={c: pl.Float64 for c in book.wide_columns(depth)})


def _numpy_walk(levels: list[tuple], size: float) -> float | None:
    left, cost = size, 0.0
    for px, q in levels:
        take = min(left, q)
        cost += take * px
        left -= take
        if left <= 0:
            return cost / size
    return None


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(0.01, 5.0), min_size=1, max_size=5),
       st.lists(st.floats(0.01, 5.0), min_size=1, max_size=5), st.floats(0.01, 12.0))
def test_walk_vwap_matches_a_level_by_level_fill(bq, aq, size):
    bids = [(100.0 - i, q) for i, q in enumerate(bq)]
    asks = [(101.0 + i, q) for i, q in enumerate(aq)]
    w = _wide(bids, asks, 5)
    got = w.select(book.walk_vwap(size, "buy", 5), book.walk_vwap(size, "sell", 5)).row(0)
    for g, ref in zip(got, (_numpy_walk(asks, size), _numpy_walk(bids, size))):
        if ref is None:
            assert g is None
        else:
            assert g == pytest.approx(ref, rel=1e-12)
            assert g is not None


def test_depth_imbalance_and_slope_match_hand_values():
    w = _wide([(99.9, 1.0), (99.5, 2.0), (99.0, 4.0)], [(100.1, 3.0), (100.6, 1.0)], 3)
    # mid 100; 45 bps band: bids >= 99.55 -> 1.0; asks <= 100.45 -> 3.0
    r = w.select(book.depth_within_bps(45, "bid", 3), book.depth_within_bps(45, "ask", 3),
                 book.imbalance(1), book.imbalance(2), book.slope("bid", 3),
                 book.slope("ask", 3)).row(0)
    assert r[0] == 1.0 and r[1] == 3.0
    assert r[2] == pytest.approx((1 - 3) / 4)
    assert r[3] == pytest.approx((3 - 4) / 7)
    assert r[4] == pytest.approx(7.0 / 100.0)   # 7 units over 100 bps
    assert r[5] is None                          # only 2 ask levels


def test_to_long_matches_book_snapshots_layout():
    w = _wide([(99.0, 1.0), (98.0, 2.0)], [(101.0, 3.0)], 2).with_columns(
        ts_exchange=pl.lit(T0), venue=pl.lit("x"), symbol=pl.lit("A"))
    got = book.to_long(w.lazy()).collect()
    assert got.select("level", "side", "price", "qty").rows() == [
        (0, "bid", 99.0, 1.0), (0, "ask", 101.0, 3.0), (1, "bid", 98.0, 2.0)]


# ---------------------------------------------------------------- simulated lake
def test_book_rebuilt_from_sim_updates_equals_the_recorded_quotes_at_every_row(sim_lake):
    books = book.rebuild(sim_lake.scan("book_updates"), depth=1, only_changes=True).collect()
    quotes = sim_lake.scan("quotes").collect()
    assert books.height > 10_000
    for (venue, symbol), q in quotes.group_by(["venue", "symbol"], maintain_order=True):
        b = books.filter(pl.col("venue") == venue, pl.col("symbol") == symbol).sort("ts_exchange",
                                                                                    maintain_order=True)
        # the snapshot's own top is the book's first row, not a quote row; every later change is one
        got = b.select("ts_exchange", pl.col("bid_px_0").alias("bid_px"), pl.col("bid_qty_0").alias("bid_qty"),
                       pl.col("ask_px_0").alias("ask_px"), pl.col("ask_qty_0").alias("ask_qty"))[1:]
        want = q.sort("ts_exchange", maintain_order=True).select(got.columns)
        assert_frame_equal(got, want, check_exact=True)


def test_rebuild_a_time_range_from_the_lake_matches_the_full_rebuild(sim_lake):
    upd = sim_lake.scan("book_updates", venue="kraken", symbol="BTC-USD")
    full = book.rebuild(upd, depth=5, every="1s").collect()
    t_start = full["ts_exchange"][100]
    t_end = full["ts_exchange"][160]
    part = book.rebuild(upd, depth=5, every="1s", start=t_start, end=t_end).collect()
    want = full.filter(pl.col("ts_exchange").is_between(t_start, t_end))
    assert_frame_equal(part.drop("seq"), want.drop("seq"))
    # the 1-second grid agrees with the recorded top-25 snapshots on their common levels
    snaps = sim_lake.scan("book_snapshots", venue="kraken", symbol="BTC-USD").filter(
        pl.col("level") < 5).collect()
    long = book.to_long(part.lazy()).collect()
    j = long.join(snaps, on=["ts_exchange", "venue", "symbol", "level", "side"], how="inner", suffix="_snap")
    assert j.height > 0.9 * long.height
    assert (j["price"] == j["price_snap"]).all() and (j["qty"] == j["qty_snap"]).all()
