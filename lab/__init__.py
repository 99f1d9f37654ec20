"""HFThot Research Lab: the analysis library.

>>> import lab
>>> con = lab.connect()            # DuckDB, one view per lake table   # doctest: +SKIP
>>> lf = lab.scan("trades", venue="binance", symbol="BTC-USDT")     # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

    from lab.lake import Lake, data_dir, default_lake
    from lab.schema import TABLES, SchemaError

# Everything loads on first use (module __getattr__ below): lab.sql (DuckDB, ~28 MiB) on
# lab.connect / lab.refresh, so processes that never query (the recorder) do not carry it;
# and Polars itself on lab.Lake, lab.scan..., so `lab --help` is quick and `lab record` can
# size Polars' thread pool before Polars starts (lab.cli).
_LAZY = {"Lake": "lab.lake", "data_dir": "lab.lake", "default_lake": "lab.lake",
         "TABLES": "lab.schema", "SchemaError": "lab.schema"}

__all__ = ["Lake", "SchemaError", "TABLES", "connect", "refresh", "scan", "data_dir",
           "default_lake", "start_recorder", "subscribe"]


def scan(
    table: str,
    *,
    venue: str | Iterable[str] | None = None,
    symbol: str | Iterable[str] | None = None,
    start: dt.datetime | dt.date | str | None = None,
    end: dt.datetime | dt.date | str | None = None,
    lake: Lake | str | None = None,
) -> pl.LazyFrame:
    """Polars LazyFrame over a lake table, filters pushed down (see :meth:`Lake.scan`)."""
    from lab.lake import Lake, default_lake

    lk = lake if isinstance(lake, Lake) else Lake(lake) if lake is not None else default_lake()
    return lk.scan(table, venue=venue, symbol=symbol, start=start, end=end)


def start_recorder(*args, **kwargs):
    """Launch a recorder in a background process (see :mod:`lab.recorder`)."""
    from lab.recorder import start_recorder as _start

    return _start(*args, **kwargs)


def subscribe(table: str, url: str | None = None, **kwargs):
    """Live rows of ``table`` from the data service (``$LAB_SERVICE`` by default), as an
    async iterator of Arrow batches: see :func:`lab.service.subscribe`."""
    from lab.service.client import subscribe as _subscribe

    return _subscribe(table, url, **kwargs)


_SUBMODULES = {"bars", "book", "l2", "micro", "volatility", "leadlag", "arbitrage", "risk", "backtest", "plots", "widgets", "reports", "bus", "errors", "service"}


def __getattr__(name: str):
    """``lab.micro``, ``lab.arbitrage``, ... import on first use."""
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"lab.{name}")
    if name in _LAZY:
        import importlib

        value = globals()[name] = getattr(importlib.import_module(_LAZY[name]), name)
        return value
    if name in ("connect", "refresh"):
        from lab import sql

        globals()["connect"], globals()["refresh"] = sql.connect, sql.refresh
        return globals()[name]
    raise AttributeError(f"module 'lab' has no attribute {name!r}")
