"""The venue registry: one entry per venue, read by everything that needs a venue fact.

The adapters (``recorders/venues``) take their real URLs from here, the
simulator its ports, paths and lags, the arbitrage detector, the backtester
and the dashboards their fees, and ``docs/CONTRACTS.md`` lists the same.
Adding a venue: its adapter (``recorders/venues/NAME.py``), its simulated
venue (``recorders/sim/NAME.py``) and one :class:`Venue` entry below.

>>> VENUES["kraken"].ws_url
'wss://ws.kraken.com/v2'
>>> sim_urls("kraken")
('ws://127.0.0.1:9445/v2', 'http://127.0.0.1:9445')
>>> taker_bps("coinbase"), taker_bps("somewhere-new")
(60.0, 10.0)
"""

from __future__ import annotations

import msgspec

__all__ = ["Venue", "VENUES", "names", "sim_urls", "taker_bps", "fees", "QUOTE_ALIASES", "same_quote",
           "DEFAULT_TAKER_BPS", "USD_LIKE", "usd_rates"]


class Venue(msgspec.Struct, frozen=True):
    """Facts about one venue.

    ``ws_url``/``rest_url``: the real public endpoints (REST: Binance snapshots and
    every venue's public trade history, used by the backfill; the simulator serves
    REST on the venue's WebSocket port). ``sim_offset``: the simulator's
    port is ``port_base + sim_offset``; ``sim_path``: the WebSocket path a client
    appends to the simulator's base; ``sim_ws_paths``: every path the simulator
    serves. ``maker``/``taker``: base-tier spot fees as fractions of notional
    (negative = rebate; check your own tier). ``sim_lag_ms``: how far the
    simulated venue's prices lag the latent price; ``sim_wire_ms``: its mean
    ``ts_local - ts_exchange``.
    """

    name: str
    ws_url: str
    rest_url: str | None
    sim_offset: int
    sim_path: str
    sim_ws_paths: tuple[str, ...]
    maker: float
    taker: float
    sim_lag_ms: float
    sim_wire_ms: float


VENUES: dict[str, Venue] = {v.name: v for v in (
    Venue("binance", "wss://stream.binance.com:9443", "https://api.binance.com", 0, "",
          ("/ws", "/stream"), 0.001, 0.001, 0.0, 20.0),
    Venue("coinbase", "wss://advanced-trade-ws.coinbase.com", "https://api.coinbase.com", 1, "",
          ("/",), 0.004, 0.006, 50.0, 15.0),
    Venue("kraken", "wss://ws.kraken.com/v2", "https://api.kraken.com", 2, "/v2",
          ("/v2",), 0.0025, 0.004, 150.0, 30.0),
    Venue("okx", "wss://ws.okx.com:8443/ws/v5/public", "https://www.okx.com", 3, "/ws/v5/public",
          ("/ws/v5/public",), 0.0008, 0.001, 25.0, 25.0),
    Venue("bybit", "wss://stream.bybit.com/v5/public/spot", "https://api.bybit.com", 4, "/v5/public/spot",
          ("/v5/public/spot",), 0.001, 0.001, 35.0, 22.0),
)}

#: Taker fee (bps) for a venue not in the registry.
UNKNOWN_TAKER_BPS = 10.0

#: Base-tier taker fees in bps, by venue.
DEFAULT_TAKER_BPS: dict[str, float] = {n: round(v.taker * 1e4, 6) for n, v in VENUES.items()}

#: Quote assets treated as one for cross-venue work (at a configurable rate, default 1.0).
USD_LIKE: tuple[str, ...] = ("USD", "USDT", "USDC")
QUOTE_ALIASES: dict[str, str] = {q: "USD" for q in USD_LIKE}


def usd_rates() -> dict[str, float]:
    """The default conversion of each USD-like quote asset to USD (1.0 each)."""
    return dict.fromkeys(USD_LIKE, 1.0)


def names() -> tuple[str, ...]:
    """Every registered venue, in registry order."""
    return tuple(VENUES)


def sim_urls(venue: str, port_base: int = 9443, host: str = "127.0.0.1") -> tuple[str, str | None]:
    """The simulator's (ws, rest) base URLs for ``venue`` (REST where the venue has one)."""
    v = VENUES[venue]
    port = port_base + v.sim_offset
    rest = f"http://{host}:{port}" if v.rest_url else None
    return f"ws://{host}:{port}{v.sim_path}", rest


def taker_bps(venue: str) -> float:
    """Base-tier taker fee of ``venue`` in basis points."""
    return DEFAULT_TAKER_BPS.get(venue, UNKNOWN_TAKER_BPS)


def fees(venue: str) -> tuple[float, float]:
    """(maker, taker) base-tier fees of ``venue`` as fractions of notional; (0, 0) if unknown."""
    v = VENUES.get(venue)
    return (v.maker, v.taker) if v else (0.0, 0.0)


def same_quote(a: str, b: str) -> bool:
    """Whether quote assets ``a`` and ``b`` count as one (USD ≈ USDT ≈ USDC).

    >>> same_quote("USDT", "USD"), same_quote("BTC", "USD")
    (True, False)
    """
    return QUOTE_ALIASES.get(a, a) == QUOTE_ALIASES.get(b, b)
