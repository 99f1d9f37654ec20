"""DuckDB over the lake: every table is a view with its own name."""

from __future__ import annotations

import duckdb

from lab.lake import Lake
from lab.schema import TABLES

__all__ = ["connect", "refresh", "EXTRA_VIEWS"]

# Column aliases users paste from the seed document: ``timestamp`` and
# ``volume`` on trades; the arbitrage query's names on arbitrage_signals.
_ALIASES: dict[str, str] = {
    "trades": "*, ts_exchange AS timestamp, qty AS volume",
    "quotes": "*, ts_exchange AS timestamp",
    "arbitrage_signals": (
        "*, ts AS timestamp, buy_venue AS exchange_a, sell_venue AS exchange_b, "
        "net_edge_bps / 100.0 AS profit_pct"
    ),
}

# Derived views, defined in SQL so any client sees the same numbers.
EXTRA_VIEWS: dict[str, str] = {
    "ohlcv_1s": """
        SELECT venue, symbol, time_bucket(INTERVAL '1 second', ts_exchange) AS bucket,
               arg_min(price, ts_exchange) AS open, max(price) AS high,
               min(price) AS low, arg_max(price, ts_exchange) AS close,
               sum(qty) AS volume, sum(price * qty) / sum(qty) AS vwap,
               count(*) AS trades,
               sum(CASE WHEN side = 'buy' THEN qty ELSE 0 END) AS buy_volume,
               sum(CASE WHEN side = 'sell' THEN qty ELSE 0 END) AS sell_volume
        FROM trades GROUP BY ALL
    """,
}


def _bind(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    for name in TABLES:
        con.register(f"__lake_{name}", lake.dataset(name))
        cols = _ALIASES.get(name, "*")
        con.execute(f'CREATE OR REPLACE VIEW "{name}" AS SELECT {cols} FROM "__lake_{name}"')
    for name, sql in EXTRA_VIEWS.items():
        con.execute(f'CREATE OR REPLACE VIEW "{name}" AS {sql}')


def connect(lake: Lake | str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection where each lake table is a view.

    The views read the snapshot committed when ``connect`` (or
    :func:`refresh`) ran; call :func:`refresh` on a long-lived connection
    to see newer commits. The session time zone is UTC.

    >>> import tempfile
    >>> con = connect(tempfile.mkdtemp())
    >>> con.sql("select count(*) from trades").fetchall()
    [(0,)]
    """
    lk = lake if isinstance(lake, Lake) else Lake(lake) if lake is not None else Lake()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    _bind(con, lk)
    _LAKES[id(con)] = lk
    return con


_LAKES: dict[int, Lake] = {}


def refresh(con: duckdb.DuckDBPyConnection, lake: Lake | str | None = None) -> None:
    """Rebind every view of ``con`` to the latest committed snapshot."""
    lk = lake if isinstance(lake, Lake) else Lake(lake) if lake is not None else _LAKES.get(id(con), Lake())
    _bind(con, lk)
