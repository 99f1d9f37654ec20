"""The book checker the recorder tests and the soak bench use (recorders/sim/truth.py) must
catch a wrong book and must not blame a right one: Bybit stamps messages in milliseconds, so a
simulator checkpoint can fall between two messages of the same millisecond."""

from __future__ import annotations

import datetime as dt

import polars as pl

from lab.lake import Lake
from recorders.sim.truth import book_mismatches

T0 = dt.datetime(2026, 11, 29, 12, tzinfo=dt.timezone.utc)


def _rows(lake: Lake) -> None:
    # message 1 (a snapshot, ms 0), then messages 2 and 3 in the same ms 5 (µs 5100 and 5700)
    msgs = [(0, True, [("bid", 100.0, 1.0), ("ask", 101.0, 1.0)]),
            (5100, False, [("bid", 100.5, 2.0)]),
            (5700, False, [("ask", 101.0, 3.0)])]
    rows = []
    for i, (us, snap, levels) in enumerate(msgs):
        t = T0 + dt.timedelta(microseconds=us)
        for side, px, q in levels:
            rows.append({"ts_exchange": t, "ts_local": t + dt.timedelta(milliseconds=2), "venue": "bybit",
                         "symbol": "BTC-USDT", "side": side, "price": px, "qty": q, "is_snapshot": snap,
                         "seq": 10 + i})
    lake.append("book_updates", pl.DataFrame(rows))


def _cp(us: int, bids, asks) -> dict:
    t = T0 + dt.timedelta(microseconds=us)
    return {"venue": "bybit", "symbol": "BTC-USDT", "seq": 0, "ts_exchange": t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "bids": [list(x) for x in bids], "asks": [list(x) for x in asks]}


def test_a_checkpoint_between_two_messages_of_one_millisecond_is_right(tmp_path):
    lake = Lake(tmp_path)
    _rows(lake)
    between = _cp(5300, [(100.5, 2.0), (100.0, 1.0)], [(101.0, 1.0)])  # after message 2, before 3
    after = _cp(5900, [(100.5, 2.0), (100.0, 1.0)], [(101.0, 3.0)])
    assert book_mismatches(lake, [between], "bybit", ["BTC-USDT"]) == (1, [])
    assert book_mismatches(lake, [after], "bybit", ["BTC-USDT"]) == (1, [])


def test_a_book_that_never_held_the_checkpoints_state_is_wrong(tmp_path):
    lake = Lake(tmp_path)
    _rows(lake)
    wrong = _cp(5300, [(100.5, 9.0), (100.0, 1.0)], [(101.0, 1.0)])  # a size the recorder never had
    n, bad = book_mismatches(lake, [wrong], "bybit", ["BTC-USDT"])
    assert n == 1 and len(bad) == 1
    stale = _cp(5300, [(100.0, 1.0)], [(101.0, 1.0)])  # the state before ms 5 differs from the snapshot's ms 0
    # the state just before the millisecond's first message counts (the checkpoint's own event may
    # have changed nothing the venue shows), so this one is right
    assert book_mismatches(lake, [stale], "bybit", ["BTC-USDT"]) == (1, [])
