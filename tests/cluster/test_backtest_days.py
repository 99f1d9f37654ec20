"""Long backtests day by day: bounded outputs, and the result of one run across midnight."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

from lab.backtest import BacktestConfig, Latency, Strategy, build_events, run_backtest
from lab.backtest.days import PieceRunner, _take
from lab.lake import Lake

MIDNIGHT = dt.datetime(2026, 11, 21, tzinfo=dt.timezone.utc)
CFG = BacktestConfig(latency=Latency(entry_us=800, response_us=400))


def at(us: int) -> dt.datetime:
    return MIDNIGHT + dt.timedelta(microseconds=us)


def book_row(x_us: int, l_us: int, side: str, price: float, qty: float, snap: bool = False) -> dict:
    return {"ts_exchange": at(x_us), "ts_local": at(l_us), "venue": "binance", "symbol": "BTC-USDT",
            "side": side, "price": price, "qty": qty, "is_snapshot": snap, "seq": None}


class JoinAfterReject(Strategy):
    """Sends a post-only buy at 100.5 on the first book change after ``M - 1 ms`` (local); when it
    is rejected, joins the bid at 100.0 instead."""

    name = "join"
    defaults = {"venue": "binance", "symbol": "BTC-USDT"}
    callbacks = frozenset({"book", "order"})

    def on_start(self, ctx) -> None:
        self.sent = False

    def on_book(self, ctx, venue: str, symbol: str) -> None:
        if not self.sent and ctx.now >= int(at(-1000).timestamp() * 1e6):
            self.sent = True
            ctx.buy(venue, symbol, 0.1, 100.5, tif="post_only")

    def on_order(self, ctx, update) -> None:
        if update.event == "rejected":
            ctx.buy(update.venue, update.symbol, 0.1, 100.0)


def midnight_lake(root: Path) -> Lake:
    """Two days of a tiny book around midnight M (times in µs from M):

    * day 1: a snapshot at -1 s (bid 100.0, ask 101.0); at -600 (received -500) the bid grows,
      which makes the strategy send its buy at 100.5: it reaches the exchange at +300, after
      midnight; a row sent at -100 is received at +500, after midnight as well;
    * day 2: at +100 (received +150) an ask appears at 100.5, so at +300 the post-only buy
      crosses and is rejected (at the exchange: ack times are response latency later); a sell
      trade of 5 at 100.0 at +5000 then fills the bid the strategy joined after the reject.
    """
    lake = Lake(root)
    book = pl.DataFrame([
        book_row(-1_000_000, -999_000, "bid", 100.0, 1.0, True),
        book_row(-1_000_000, -999_000, "ask", 101.0, 1.0, True),
        book_row(-600, -500, "bid", 100.0, 2.0),
        book_row(-100, 500, "ask", 101.0, 3.0),
        book_row(100, 150, "ask", 100.5, 1.0),
        book_row(4_000, 4_100, "ask", 100.5, 0.0),
        book_row(9_000, 9_100, "bid", 100.0, 2.5),
    ])
    trades = pl.DataFrame({"ts_exchange": [at(5_000)], "ts_local": [at(5_050)], "venue": ["binance"],
                           "symbol": ["BTC-USDT"], "trade_id": ["t1"], "price": [100.0], "qty": [5.0],
                           "side": ["sell"]})
    lake.append("book_updates", book.with_columns(pl.col("seq").cast(pl.Int64)))
    lake.append("trades", trades)
    return lake


def test_an_order_in_flight_across_midnight_gives_the_result_of_one_run(tmp_path):
    from lab.distributed import backtest_days

    lake = midnight_lake(tmp_path / "lake")
    span = build_events(lake.scan("book_updates"), lake.scan("trades"))
    one = run_backtest(JoinAfterReject(), span, CFG)

    days = backtest_days(JoinAfterReject(), MIDNIGHT - dt.timedelta(days=1), MIDNIGHT + dt.timedelta(days=1),
                         config=CFG, lake=lake, keep_orders=True)

    # the scenario, worked out by hand from the latencies (independent of the engine's split)
    us = lambda t: int((t - MIDNIGHT) / dt.timedelta(microseconds=1))  # noqa: E731
    ev = [(r["order_id"], r["event"], us(r["ts"])) for r in one.orders.iter_rows(named=True)]
    assert ev == [(1, "new", -500), (1, "rejected", 700), (2, "new", 700), (2, "ack", 700 + 800 + 400),
                  (2, "fill", 5_000 + 400)]
    assert one.fills.select("price", "qty", "liquidity").rows() == [(100.0, 0.1, "maker")]
    # and the day-by-day run is the same run
    assert_frame_equal(days.orders, one.orders)
    assert_frame_equal(days.fills, one.fills)
    assert_frame_equal(days.equity, one.equity)
    assert days.events == one.events == len(span)


def test_piece_runner_streams_full_logs_and_equals_one_run(lake3, tmp_path):
    from lab.backtest import load_events
    from lab.backtest.strategies import MarketMaker
    from tests.cluster.conftest import DAY0

    ev = load_events(venues=["binance"], symbols=["BTC-USDT"], start=DAY0, end=DAY0 + dt.timedelta(days=1),
                     lake=lake3)
    one = run_backtest(MarketMaker(interval_s="0.005"), ev)
    # three pieces of the day, and logs so small that they are handed to the sink many times a piece
    cut = [int(ev.ts_x[0]), int(ev.ts_x[len(ev) // 3]) + 1, int(ev.ts_x[2 * len(ev) // 3]) + 1, int(ev.ts_x[-1]) + 1]
    runner = PieceRunner(MarketMaker(interval_s="0.005"), out=tmp_path / "out", max_log=20_000, max_fills=9_300)
    for a, b in zip(cut, cut[1:], strict=False):
        runner.feed(_take(ev, ((ev.ts_x >= a) & (ev.ts_x < b)).nonzero()[0]), b)
    res = runner.result()

    assert one.orders.height > 30_000 and one.fills.height > 2 * 68  # several drains of each log
    assert len(list((tmp_path / "out" / "orders").glob("part-*.parquet"))) >= 3
    assert_frame_equal(res.scan_orders().collect(), one.orders)
    assert_frame_equal(res.fills, one.fills)
    assert_frame_equal(res.equity, one.equity)
    assert_frame_equal(res.venue_equity, one.venue_equity)
