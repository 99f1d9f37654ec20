"""Backtesting and paper trading: one strategy API, two runners.

* :func:`run_backtest` replays lake data (``book_updates`` + ``trades``) through
  a compiled event loop with feed latency (recorded), order latency, queue
  models, partial fills, book-walking takers and per-venue fees.
* :class:`PaperRunner` runs the same strategy on the live bus with the same models.
* :mod:`lab.backtest.vector` is the vectorised Polars research mode with sweeps.
"""

from lab.backtest.data import Events, Instrument, build_events, infer_tick, load_events, quotes_as_book
from lab.backtest.engine import DEFAULT_FEES, BacktestConfig, Engine, Fees, Latency, Result, run_backtest
from lab.backtest.strategy import Context, FastStrategy, Fill, OrderUpdate, Strategy, Trade

__all__ = [
    "Events", "Instrument", "build_events", "infer_tick", "load_events", "quotes_as_book",
    "DEFAULT_FEES", "BacktestConfig", "Engine", "Fees", "Latency", "Result", "run_backtest",
    "Context", "FastStrategy", "Fill", "OrderUpdate", "Strategy", "Trade",
]
