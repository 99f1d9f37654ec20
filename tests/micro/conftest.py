"""Small hand-made market data for the microstructure tests (independent of the simulator)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

T0 = dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone.utc)


def make_quotes(n: int = 600, seed: int = 3, venues=("binance", "kraken")) -> pl.DataFrame:
    """Random-walk top of book on a 0.5 tick grid, irregular times, per venue, one symbol."""
    rng = np.random.default_rng(seed)
    frames = []
    for k, v in enumerate(venues):
        ms = np.sort(rng.choice(120_000, n, replace=False))
        mid2 = 200_000 + np.cumsum(rng.choice([-1, 0, 0, 1], n))  # mid in half ticks
        spread = rng.choice([1, 1, 2, 3], n)  # ticks
        bid = (mid2 - spread) / 2 * 0.5
        ask = (mid2 + spread) / 2 * 0.5
        frames.append(pl.DataFrame({
            "ts_exchange": [T0 + dt.timedelta(milliseconds=int(m)) for m in ms],
            "venue": v, "symbol": "BTC-USDT",
            "bid_px": bid, "bid_qty": rng.integers(1, 20, n) * 0.1,
            "ask_px": ask, "ask_qty": rng.integers(1, 20, n) * 0.1,
        }))
    return pl.concat(frames)


def make_trades(quotes: pl.DataFrame, n: int = 800, seed: int = 4) -> pl.DataFrame:
    """Trades at the prevailing bid/ask (sometimes inside), with an aggressor flag."""
    rng = np.random.default_rng(seed)
    out = []
    for (v,), q in quotes.group_by(["venue"], maintain_order=True):
        q = q.sort("ts_exchange")
        ms = np.sort(rng.choice(np.arange(500, 120_000), n, replace=False))
        qms = np.array([(t - T0).total_seconds() * 1000 for t in q["ts_exchange"]])
        idx = np.searchsorted(qms, ms, side="right") - 1
        idx = np.clip(idx, 0, len(qms) - 1)
        buy = rng.random(n) < 0.5
        px = np.where(buy, q["ask_px"].to_numpy()[idx], q["bid_px"].to_numpy()[idx])
        inside = rng.random(n) < 0.1
        px = np.where(inside, (q["ask_px"].to_numpy()[idx] + q["bid_px"].to_numpy()[idx]) / 2, px)
        out.append(pl.DataFrame({
            "ts_exchange": [T0 + dt.timedelta(milliseconds=int(m)) for m in ms],
            "venue": v, "symbol": "BTC-USDT", "trade_id": [f"{i:07d}" for i in range(n)],
            "price": px, "qty": rng.integers(1, 50, n) * 0.01,
            "side": np.where(buy, "buy", "sell"),
        }))
    return pl.concat(out)


@pytest.fixture(scope="module")
def quotes() -> pl.DataFrame:
    return make_quotes()


@pytest.fixture(scope="module")
def trades(quotes) -> pl.DataFrame:
    return make_trades(quotes)
