"""Arbitrage: cross-venue and triangular opportunities, historical and live.

Historical (Polars, lazy in / lazy out): :func:`cross_venue`,
:func:`triangular`, :func:`episodes`, :func:`summary`. Live:
:class:`lab.arbitrage.live.Detector` applies the same rules row by row on the
live bus (``lab arbitrage``). Configuration: :class:`ArbConfig`
(``config/arbitrage.toml``).
"""

from __future__ import annotations

from lab.arbitrage.config import DEFAULT_TAKER_BPS, ArbConfig, load_config
from lab.arbitrage.historical import (
    SIGNAL_COLUMNS,
    as_books,
    books_from_updates,
    cross_venue,
    episodes,
    summary,
    triangular,
    walk_buy,
    walk_sell,
    walk_spend,
)

__all__ = [
    "DEFAULT_TAKER_BPS",
    "ArbConfig",
    "load_config",
    "SIGNAL_COLUMNS",
    "as_books",
    "books_from_updates",
    "cross_venue",
    "triangular",
    "episodes",
    "summary",
    "walk_buy",
    "walk_sell",
    "walk_spend",
]
