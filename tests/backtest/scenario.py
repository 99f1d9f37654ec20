"""Hand-built market scenarios: a few book rows and trades at chosen microseconds."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import polars as pl

from lab.backtest import Context, Strategy

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
V, S = "x", "BTC-USD"


def at(us: int) -> dt.datetime:
    return T0 + dt.timedelta(microseconds=us)


def book(rows: list[tuple[int, str, float, float, bool]], feed_us: int = 0,
         venue: str = V, symbol: str = S) -> pl.DataFrame:
    """rows: (t_us, side, price, qty, is_snapshot); ts_local = t + feed_us."""
    return pl.DataFrame({
        "ts_exchange": [at(r[0]) for r in rows], "ts_local": [at(r[0] + feed_us) for r in rows],
        "venue": [venue] * len(rows), "symbol": [symbol] * len(rows),
        "side": [r[1] for r in rows], "price": [float(r[2]) for r in rows],
        "qty": [float(r[3]) for r in rows], "is_snapshot": [r[4] for r in rows],
        "seq": list(range(len(rows))),
    }, schema_overrides={"ts_exchange": pl.Datetime("us", "UTC"), "ts_local": pl.Datetime("us", "UTC")})


def trades(rows: list[tuple[int, str, float, float]], feed_us: int = 0,
           venue: str = V, symbol: str = S) -> pl.DataFrame:
    """rows: (t_us, aggressor side, price, qty)."""
    return pl.DataFrame({
        "ts_exchange": [at(r[0]) for r in rows], "ts_local": [at(r[0] + feed_us) for r in rows],
        "venue": [venue] * len(rows), "symbol": [symbol] * len(rows),
        "trade_id": [str(k) for k in range(len(rows))],
        "price": [float(r[2]) for r in rows], "qty": [float(r[3]) for r in rows],
        "side": [r[1] for r in rows],
    }, schema_overrides={"ts_exchange": pl.Datetime("us", "UTC"), "ts_local": pl.Datetime("us", "UTC")})


class Script(Strategy):
    """Runs ``actions`` [(local t_us, fn(ctx))] on a 10 µs timer; records callbacks."""

    name = "script"
    callbacks = frozenset({"timer", "fill", "order"})

    def __init__(self, actions: list[tuple[int, Callable[[Context], object]]]) -> None:
        super().__init__()
        self.actions = sorted(actions, key=lambda a: a[0])
        self.ids: list[int] = []
        self.seen: list[tuple[str, object]] = []

    def on_start(self, ctx: Context) -> None:
        ctx.set_timer(10e-6)

    def on_timer(self, ctx: Context) -> None:
        t = (ctx.now - int(T0.timestamp() * 1e6))
        while self.actions and self.actions[0][0] <= t:
            _, fn = self.actions.pop(0)
            r = fn(ctx)
            if isinstance(r, int):
                self.ids.append(r)

    def on_fill(self, ctx: Context, fill) -> None:
        self.seen.append(("fill", fill))

    def on_order(self, ctx: Context, update) -> None:
        self.seen.append((update.event, update))
