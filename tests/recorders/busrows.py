"""Canonical bus rows for the bus tests (the hub forwards only rows that match their table)."""

from __future__ import annotations

from typing import Any

from lab.schema import TABLES

_DEFAULTS: dict[str, Any] = {
    "ts_exchange": 1_700_000_000_000_000, "ts_local": 1_700_000_000_000_100, "venue": "kraken",
    "symbol": "BTC-USD", "trade_id": "1", "price": 100.0, "qty": 1.0, "side": "bid",
    "is_snapshot": False, "seq": 1, "bid_px": 99.0, "bid_qty": 1.0, "ask_px": 101.0,
    "ask_qty": 1.0, "level": 0, "source": None,
}


def row(table: str, **values: Any) -> dict[str, Any]:
    """A row with every column of ``table`` (defaults above), overridden and extended by ``values``."""
    r = {c: _DEFAULTS[c] for c in TABLES[table].columns}
    if table == "trades":
        r["side"] = "buy"
    r.update(values)
    return r
