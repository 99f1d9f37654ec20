"""The soak's "trades lost while connected" (recorders/sim/truth.py, bench/bench_soak.py) counts
what the recorder lost while it was receiving, not what a REST backfill could not bring back.

Found in the soak: after a kill -9 the restarted recorder's backfill brings back the newest part
of the hole (Bybit serves only its last 60 trades), and those rows reached into the stretch the
killed process was connected in; its last received, never committed trades then counted as lost
while connected. Likewise a silence's own trades, backfilled, made the silence end at once.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from recorders.sim.truth import iso_us, silences, trades_due

T0 = dt.datetime(2026, 11, 30, 0, 0, tzinfo=dt.timezone.utc)


def _ts(s: float) -> str:
    return (T0 + dt.timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _truth(n: int, close_at: float) -> dict[str, list[dict]]:
    trades = [{"venue": "bybit", "symbol": "SOL-USDT", "trade_id": 100 + i, "ts_exchange": _ts(i)} for i in range(n)]
    conns = [{"venue": "bybit", "conn_id": "c1", "event": "open", "ts": _ts(-1)},
             {"venue": "bybit", "conn_id": "c1", "event": "close", "ts": _ts(close_at)},
             {"venue": "bybit", "conn_id": "c2", "event": "open", "ts": _ts(close_at + 5)}]
    return {"trades": trades, "connections": conns, "faults": [], "books": []}


def _frame(rows: list[tuple[int, float, str | None]]) -> pl.DataFrame:
    return pl.DataFrame({
        "venue": ["bybit"] * len(rows), "symbol": ["SOL-USDT"] * len(rows),
        "trade_id": [str(i) for i, _, _ in rows],
        "ts_exchange": [T0 + dt.timedelta(seconds=s) for _, s, _ in rows],
        "source": [src for _, _, src in rows],
    }, schema_overrides={"source": pl.String})


def test_a_killed_recorders_uncommitted_tail_is_not_lost_while_connected():
    # Arrange: connection c1 carries trades 100..109 (exchange times 0..9 s), closes at 9.5 s (kill -9);
    # the recorder committed 100..106 live; the restart's backfill found 108..109 but not 107
    truth = _truth(10, close_at=9.5)
    live = {("bybit", "SOL-USDT", str(i)) for i in range(100, 107)}
    recorded = live | {("bybit", "SOL-USDT", "108"), ("bybit", "SOL-USDT", "109")}
    # Act
    due = trades_due(truth, "bybit", recorded, [], live)
    # Assert: 107 was never committed by the process that received it: a backfill matter, not a live loss
    assert [t["trade_id"] for t in due] == list(range(100, 107))
    # a trade missing between two trades received live is still lost while connected
    gap = live - {("bybit", "SOL-USDT", "103")}
    due = trades_due(truth, "bybit", gap | {("bybit", "SOL-USDT", "108")}, [], gap)
    missing = [t["trade_id"] for t in due if ("bybit", "SOL-USDT", str(t["trade_id"])) not in gap]
    assert missing == [103]


def test_a_silence_ends_at_the_first_trade_received_live_not_at_a_backfilled_one():
    # Arrange: a silent fault at 3 s; its trades at 3.5 s and 4 s were fetched over REST afterwards;
    # the venue spoke again at 6 s (the first trade received live after the fault)
    faults = [{"venue": "bybit", "symbol": "", "kind": "silent", "ts": _ts(3), "detail": "no messages for 3 s"}]
    trades = _frame([(101, 1.0, None), (102, 3.5, "rest"), (103, 4.0, "rest"), (104, 6.0, None)])
    # Act
    (q,) = silences(faults, trades)
    # Assert
    assert q == ("bybit", iso_us(_ts(3)) - 200_000, iso_us(_ts(6)))
