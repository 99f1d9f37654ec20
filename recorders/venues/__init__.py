"""Venue adapters: pure parsers and book-sync rules, one module per venue.

No sockets here: feed raw messages (and, for Binance, REST snapshot bodies)
with their receive time and read back the books and the normalised rows.

>>> from recorders.venues import replay
>>> a = replay("bybit", ["BTC-USDT"], [
...     '{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1,"data":{"s":"BTCUSDT",'
...     '"b":[["10","1"]],"a":[["11","2"]],"u":5}}',
...     '{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":2,"data":{"s":"BTCUSDT",'
...     '"b":[["10","0"],["9.5","3"]],"a":[],"u":6}}'])
>>> a.books["BTC-USDT"].top()
(9.5, 3.0, 11.0, 2.0)
>>> a.out.frame("quotes").height
2
"""

from __future__ import annotations

from collections.abc import Iterable

from lab.venues import VENUES, sim_urls
from recorders.venues.base import Adapter, Rows, TradeIds
from recorders.venues.binance import BinanceAdapter
from recorders.venues.bybit import BybitAdapter
from recorders.venues.coinbase import CoinbaseAdapter
from recorders.venues.kraken import KrakenAdapter
from recorders.venues.okx import OkxAdapter

__all__ = ["ADAPTERS", "Adapter", "Rows", "TradeIds", "adapter_for", "replay",
           "BinanceAdapter", "CoinbaseAdapter", "KrakenAdapter", "OkxAdapter", "BybitAdapter",
           "DEFAULT_URLS", "SIM_URLS", "SIM_PORT_OFFSETS"]

ADAPTERS: dict[str, type[Adapter]] = {
    "binance": BinanceAdapter,
    "coinbase": CoinbaseAdapter,
    "kraken": KrakenAdapter,
    "okx": OkxAdapter,
    "bybit": BybitAdapter,
}

# venue -> (websocket base, REST base or None), from the registry (lab/venues.py)
DEFAULT_URLS: dict[str, tuple[str, str | None]] = {n: (v.ws_url, v.rest_url) for n, v in VENUES.items()}
SIM_PORT_OFFSETS = {n: v.sim_offset for n, v in VENUES.items()}
SIM_URLS = sim_urls


def adapter_for(venue: str) -> type[Adapter]:
    try:
        return ADAPTERS[venue.lower()]
    except KeyError:
        raise ValueError(f"unknown venue {venue!r}; known: {', '.join(ADAPTERS)}") from None


def replay(
    venue: str,
    symbols: Iterable[str],
    messages: Iterable[str | bytes | tuple[str, str | bytes]],
    *,
    ts_local: Iterable[int] | None = None,
    **options,
) -> Adapter:
    """Feed ``messages`` through a fresh adapter and return it (books, rows, stats).

    A ``(symbol, body)`` tuple in ``messages`` is a REST snapshot body arriving
    at that point (Binance). Receive times default to 1, 2, 3, ... microseconds.
    """
    a = adapter_for(venue)(symbols, **options)
    times = iter(ts_local) if ts_local is not None else None
    for i, m in enumerate(messages, start=1):
        t = next(times) if times is not None else i
        if isinstance(m, tuple):
            a.on_snapshot(m[0], m[1], t)
        else:
            a.feed(m, t)
    return a
