"""A small, deterministic lake for the dashboard tests (known contents, known answers).

Three venues, two markets (BTC and ETH against USD/USDT), quotes every
100 ms, trades every 500 ms, a book snapshot every second, a fixed list of
feed events and arbitrage signals.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from lab.lake import Lake

UTC = dt.timezone.utc
VENUES = {"binance": "USDT", "coinbase": "USD", "kraken": "USD"}
BASE_PX = {"BTC": 100_000.0, "ETH": 4_000.0}
OFFSET_BPS = {"binance": 0.0, "coinbase": 3.0, "kraken": -3.0}
HALF_SPREAD_BPS = 0.5

# feed_events: (venue, kind, count)
FEED_EVENTS = [
    ("binance", "gap", 3), ("binance", "resync", 2), ("binance", "reconnect", 1),
    ("coinbase", "rejected_message", 1),
    ("kraken", "checksum_failure", 2), ("kraken", "resync", 2),
]


def symbol(venue: str, asset: str) -> str:
    return f"{asset}-{VENUES[venue]}"


def frames(start: dt.datetime, seconds: float, *, seed: int = 0, ts_local_lag_ms: float = 20.0,
           trade_id_base: int = 0) -> dict[str, pl.DataFrame]:
    """Quotes, trades and book snapshots for ``seconds`` from ``start``."""
    rng = np.random.default_rng(seed)
    n_q = int(seconds * 10)
    tq = [start + dt.timedelta(milliseconds=100 * i) for i in range(n_q)]
    lag = dt.timedelta(milliseconds=ts_local_lag_ms)
    quotes, trades, snaps = [], [], []
    for asset, p0 in BASE_PX.items():
        walk = p0 * np.exp(np.cumsum(rng.normal(0, 2e-5, n_q)))
        for venue in VENUES:
            mid = walk * (1 + OFFSET_BPS[venue] / 1e4)
            half = mid * HALF_SPREAD_BPS / 1e4
            bq = rng.uniform(0.5, 3.0, n_q).round(3)
            aq = rng.uniform(0.5, 3.0, n_q).round(3)
            sym = symbol(venue, asset)
            quotes.append(pl.DataFrame({
                "ts_exchange": tq, "ts_local": [t + lag for t in tq],
                "venue": venue, "symbol": sym,
                "bid_px": (mid - half).round(2), "bid_qty": bq,
                "ask_px": (mid + half).round(2), "ask_qty": aq,
            }))
            idx = np.arange(0, n_q, 5)
            sides = np.where(rng.random(len(idx)) < 0.5, "buy", "sell")
            px = np.where(sides == "buy", (mid + half)[idx], (mid - half)[idx]).round(2)
            trades.append(pl.DataFrame({
                "ts_exchange": [tq[i] for i in idx], "ts_local": [tq[i] + lag for i in idx],
                "venue": venue, "symbol": sym,
                "trade_id": [f"{venue}-{asset}-{trade_id_base + k}" for k in range(len(idx))],
                "price": px, "qty": rng.uniform(0.001, 0.5, len(idx)).round(4), "side": sides,
            }))
            for i in range(0, n_q, 10):
                levels = np.arange(5)
                snaps.append(pl.DataFrame({
                    "ts_exchange": tq[i], "ts_local": tq[i] + lag, "venue": venue, "symbol": sym,
                    "level": np.concatenate([levels, levels]).astype(np.int32),
                    "side": ["bid"] * 5 + ["ask"] * 5,
                    "price": np.concatenate([(mid[i] - half[i]) - levels, (mid[i] + half[i]) + levels]),
                    "qty": np.concatenate([np.full(5, 1.0 + (i % 7)), np.full(5, 2.0)]),
                }))
    cast = {"level": pl.Int32}
    return {
        "quotes": pl.concat(quotes).sort("ts_exchange"),
        "trades": pl.concat(trades).sort("ts_exchange"),
        "book_snapshots": pl.concat(snaps).with_columns(pl.col(k).cast(v) for k, v in cast.items()),
    }


def feed_events(start: dt.datetime) -> pl.DataFrame:
    rows = []
    k = 0
    for venue, kind, n in FEED_EVENTS:
        for _ in range(n):
            rows.append({"ts_local": start + dt.timedelta(seconds=5 + 7 * k), "venue": venue,
                         "symbol": symbol(venue, "BTC"), "kind": kind, "detail": f"{kind} #{k}"})
            k += 1
    return pl.DataFrame(rows)


def arbitrage_signals(start: dt.datetime) -> pl.DataFrame:
    """Two signals: coinbase above kraken on BTC (buy kraken, sell coinbase)."""
    rows = [
        {"ts": start + dt.timedelta(seconds=s), "kind": "cross_venue", "asset": "BTC",
         "buy_venue": "kraken", "sell_venue": "coinbase", "buy_symbol": "BTC-USD",
         "sell_symbol": "BTC-USD", "size": 0.1, "buy_px": 99_970.0, "sell_px": 100_030.0,
         "gross_edge_bps": 6.0, "net_edge_bps": e, "profit_quote": e * 1e-4 * 10_000.0,
         "volume_usd": 10_000.0}
        for s, e in ((30, 1.5), (31, 2.5))
    ]
    return pl.DataFrame(rows)


def risk_snapshots(start: dt.datetime, n: int = 3) -> pl.DataFrame:
    """``n`` one-second snapshots: equity 100,000 + 10 k, one position, one breached limit."""
    rows = []
    for k in range(n):
        ts = start + dt.timedelta(seconds=170 + k)
        port = {"equity": 100_000.0 + 10 * k, "total_pnl": 10.0 * k, "daily_pnl": 5.0 * k,
                "net_exposure": 20_000.0, "gross_exposure": 30_000.0 + k, "leverage": 0.3,
                "drawdown_pct": 0.0, "hist_var_99": 1_234.5}
        rows += [(ts, "portfolio", "total", m, v, "") for m, v in port.items()]
        rows += [(ts, "position", "binance:BTC", m, v, "") for m, v in
                 (("mark", 100_000.0), ("exposure", 20_000.0), ("unrealized_pnl", 10.0 * k), ("total_pnl", 10.0 * k))]
        msg = "gross exposure 30,000 > 25,000"
        rows += [(ts, "limit", "gross", "value", 30_000.0, msg), (ts, "limit", "gross", "limit", 25_000.0, msg),
                 (ts, "limit", "gross", "breached", 1.0, msg)]
    return pl.DataFrame(rows, schema=["ts", "scope", "key", "metric", "value", "detail"], orient="row")


def write(lake: Lake, start: dt.datetime, seconds: float = 180.0, seed: int = 0) -> dict[str, pl.DataFrame]:
    """Write the whole synthetic lake; return what was written (for reference values)."""
    out = frames(start, seconds, seed=seed)
    out["feed_events"] = feed_events(start)
    out["arbitrage_signals"] = arbitrage_signals(start)
    out["risk_snapshots"] = risk_snapshots(start)
    for table, df in out.items():
        lake.append(table, df)
    return out
