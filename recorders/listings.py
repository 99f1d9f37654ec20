"""Which symbols a venue lists, from its public instrument endpoint.

``lab record`` checks the symbols it is asked for against the listing before it
connects, so a typo (``NOSUCH-USDT``) is a one-line error instead of a recorder that
records nothing. The listing is known for Binance through the REST base the recorder
already uses (``/api/v3/exchangeInfo``; the simulator serves it too), and for the other
venues through their public endpoints when the recorder points at the real venue
(its default URLs). When the endpoint cannot be reached the check is skipped: the
listing is a courtesy, never a reason not to record.

Each ``parse_*`` turns the endpoint's JSON (shapes from the venues' API docs) into
canonical ``BASE-QUOTE`` symbols.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from recorders.config import VenueConfig

__all__ = ["listing_url", "parse_listing", "fetch_listing", "unknown_symbols"]

log = logging.getLogger("recorders.listings")

# Public instrument endpoints of the real venues (used only with their default URLs).
PUBLIC = {
    "coinbase": "https://api.coinbase.com/api/v3/brokerage/market/products",
    "kraken": "https://api.kraken.com/0/public/AssetPairs",
    "okx": "https://www.okx.com/api/v5/public/instruments?instType=SPOT",
    "bybit": "https://api.bybit.com/v5/market/instruments-info?category=spot",
}
_KRAKEN_ASSETS = {"XBT": "BTC", "XDG": "DOGE"}


def parse_binance(doc: dict[str, Any]) -> set[str]:
    """``/api/v3/exchangeInfo``.

    >>> sorted(parse_binance({"symbols": [{"symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC",
    ...                                    "quoteAsset": "USDT"}]}))
    ['BTC-USDT']
    """
    return {f"{s['baseAsset']}-{s['quoteAsset']}".upper() for s in doc.get("symbols", [])
            if s.get("status", "TRADING") == "TRADING"}


def parse_coinbase(doc: dict[str, Any]) -> set[str]:
    """``/api/v3/brokerage/market/products``.

    >>> parse_coinbase({"products": [{"product_id": "BTC-USD", "status": "online"}]})
    {'BTC-USD'}
    """
    return {p["product_id"].upper() for p in doc.get("products", []) if p.get("product_id")}


def parse_kraken(doc: dict[str, Any]) -> set[str]:
    """``/0/public/AssetPairs`` (``wsname`` ``XBT/USD`` is ``BTC-USD``).

    >>> parse_kraken({"error": [], "result": {"XXBTZUSD": {"altname": "XBTUSD", "wsname": "XBT/USD"}}})
    {'BTC-USD'}
    """
    out = set()
    for pair in (doc.get("result") or {}).values():
        ws = pair.get("wsname")
        if ws and "/" in ws:
            b, q = ws.upper().split("/", 1)
            out.add(f"{_KRAKEN_ASSETS.get(b, b)}-{_KRAKEN_ASSETS.get(q, q)}")
    return out


def parse_okx(doc: dict[str, Any]) -> set[str]:
    """``/api/v5/public/instruments?instType=SPOT``.

    >>> parse_okx({"code": "0", "data": [{"instId": "BTC-USDT", "state": "live"}]})
    {'BTC-USDT'}
    """
    return {d["instId"].upper() for d in doc.get("data", []) if d.get("instId")}


def parse_bybit(doc: dict[str, Any]) -> set[str]:
    """``/v5/market/instruments-info?category=spot``.

    >>> parse_bybit({"retCode": 0, "result": {"list": [{"symbol": "BTCUSDT", "baseCoin": "BTC",
    ...                                                 "quoteCoin": "USDT", "status": "Trading"}]}})
    {'BTC-USDT'}
    """
    return {f"{s['baseCoin']}-{s['quoteCoin']}".upper() for s in (doc.get("result") or {}).get("list", [])}


PARSERS: dict[str, Callable[[dict[str, Any]], set[str]]] = {
    "binance": parse_binance, "coinbase": parse_coinbase, "kraken": parse_kraken, "okx": parse_okx,
    "bybit": parse_bybit,
}


def listing_url(vc: VenueConfig) -> str | None:
    """Where ``vc``'s listing is, or None when unknown (a non-Binance venue on a non-default URL).

    >>> listing_url(VenueConfig("binance", ["BTC-USDT"], rest_url="http://127.0.0.1:9443"))
    'http://127.0.0.1:9443/api/v3/exchangeInfo'
    >>> listing_url(VenueConfig("kraken", ["BTC-USD"], base_url="ws://127.0.0.1:9445/v2")) is None
    True
    """
    if vc.venue == "binance":
        return vc.urls()[1].rstrip("/") + "/api/v3/exchangeInfo"
    if vc.base_url is None:
        return PUBLIC.get(vc.venue)
    return None


def parse_listing(venue: str, body: bytes | str) -> set[str]:
    return PARSERS[venue](json.loads(body))


def fetch_listing(vc: VenueConfig, timeout: float = 5.0) -> set[str] | None:
    """The canonical symbols ``vc``'s venue lists, or None when the listing is unknown or unreachable."""
    url = listing_url(vc)
    if url is None:
        return None
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "hfthot-lab-recorder"})
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - http(s) URLs of our config
            symbols = parse_listing(vc.venue, r.read())
    except (OSError, urllib.error.URLError, ValueError, KeyError, TypeError, AttributeError) as e:
        log.warning("%s: cannot read the listing at %s (%s); symbols not checked", vc.venue, url, e)
        return None
    return symbols or None


def unknown_symbols(vc: VenueConfig, listing: set[str]) -> list[str]:
    """Symbols of ``vc`` the listing lacks.

    >>> unknown_symbols(VenueConfig("binance", ["BTC-USDT", "NOSUCH-USDT"]), {"BTC-USDT"})
    ['NOSUCH-USDT']
    """
    return [s for s in vc.symbols if s.upper() not in listing]
