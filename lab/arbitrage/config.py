"""Arbitrage configuration: taker fees, sizes, thresholds (``config/arbitrage.toml``).

Fees are **taker** fees in basis points (both legs of an arbitrage cross the
spread). The defaults are each venue's published base-tier spot taker fee;
override them with your own tier in the config file.

>>> cfg = ArbConfig()
>>> cfg.fee_bps("binance"), cfg.fee_bps("somewhere-new")
(10.0, 10.0)
>>> cfg.size_of("BTC"), cfg.size_of("DOGE")
(0.01, 1.0)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec

from lab.tomlconfig import load_section
from lab.venues import DEFAULT_TAKER_BPS, usd_rates

__all__ = ["DEFAULT_TAKER_BPS", "ArbConfig", "load_config"]



class ArbConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Everything the detector needs; every field has a sensible default.

    ``fees_bps``: taker fee per venue (bps); ``default_fee_bps`` for venues not
    listed. ``sizes``: trade size per asset in base units (``default_size``
    otherwise). ``min_edge_bps``: net edge (after fees and book walking) above
    which an opportunity is signalled. ``max_age_ms``: a quote older than this
    (receive time) is stale and never used. ``quote_rates``: value of one unit
    of each quote currency in USD (USDT≈USD at a configurable rate).
    ``triangles``: currency cycles checked within each venue.
    ``depth``: ``0`` detects on ``quotes`` rows (top of book); ``N > 0``
    rebuilds each book from ``book_updates`` and walks its top ``N`` levels,
    as :func:`lab.arbitrage.cross_venue` and :func:`lab.arbitrage.triangular`
    on ``books_from_updates(updates, depth=N)``.
    ``alerts``: alert sinks (``log``, ``bell``, ``file:<path>``, ``webhook:<url>``).
    ``alert_min_edge_bps``: only episodes whose opening edge reaches this alert.
    """

    fees_bps: dict[str, float] = msgspec.field(default_factory=lambda: dict(DEFAULT_TAKER_BPS))
    default_fee_bps: float = 10.0
    sizes: dict[str, float] = msgspec.field(
        default_factory=lambda: {"BTC": 0.01, "ETH": 0.2, "SOL": 5.0})
    default_size: float = 1.0
    min_edge_bps: float = 0.0
    max_age_ms: float = 2000.0
    quote_rates: dict[str, float] = msgspec.field(
        default_factory=usd_rates)
    triangles: list[list[str]] = msgspec.field(default_factory=lambda: [["USD", "BTC", "ETH"]])
    triangle_notional: float = 1000.0
    alerts: list[str] = msgspec.field(default_factory=lambda: ["log"])
    alert_min_edge_bps: float = 0.0
    flush_every_s: float = 1.0
    depth: Annotated[int, msgspec.Meta(ge=0)] = 0

    def fee_bps(self, venue: str) -> float:
        return float(self.fees_bps.get(venue, self.default_fee_bps))

    def size_of(self, asset: str) -> float:
        return float(self.sizes.get(asset, self.default_size))


def load_config(path: str | Path | None) -> ArbConfig:
    """Read ``[arbitrage]`` (or the top level) of a TOML file; ``None`` → defaults.

    Unknown keys are an error naming the key, so a typo never silently falls
    back to a default.
    """
    return load_section(path, "arbitrage", ArbConfig)
