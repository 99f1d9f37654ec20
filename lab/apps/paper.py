"""``lab paper STRATEGY``: paper-trade a shipped strategy on the live bus.

The same strategy, fill, queue, latency and fee models as ``lab backtest``,
fed by the rows the recorders publish on the live data bus
(docs/CONTRACTS.md, ``ws://127.0.0.1:50052``); orders, fills and positions go
to the lake tables ``paper_orders``, ``paper_fills``, ``paper_positions``
under one session id. Compare a session with its backtest afterwards::

    lab paper mm -p venue=binance -p symbol=BTC-USDT            # until Ctrl-C
    lab paper mm -p venue=binance -p symbol=BTC-USDT --duration 600 --session demo-mm
    python -c "from lab.backtest.compare import compare_session; print(compare_session('demo-mm').summary)"
    lab paper mm -p venue=binance -p symbol=BTC-USDT --bus grpc://lab-host:50053   # via lab serve
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from lab.apps._bus import add_bus_arguments
from lab.apps.backtest import add_model_arguments, config_from_args, make_strategy, parse_params, print_strategies

if TYPE_CHECKING:
    from lab.apps._stop import Stop

HELP = "paper-trade a strategy on the live stream"
WRITES_DATA = True  # paper_* tables into $LAB_DATA/lake (see lab.cli)

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    add_bus_arguments(p, "book_updates and trades")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")
    p.add_argument("--session", default=None, help="session id written with every row (default: time + random)")
    p.add_argument("--flush", type=float, default=1.0, help="seconds between engine steps and lake writes")
    p.add_argument("--quiet", action="store_true", help="no progress line per step")


def run(a: argparse.Namespace) -> int:
    from lab.apps._stop import service

    with service("lab paper") as stop:  # SIGINT/SIGTERM: process what arrived, write session_end, exit 0
        return _run(a, stop)


def _run(a: argparse.Namespace, stop: Stop) -> int:
    if a.strategy == "list":
        return print_strategies()
    from lab.apps._bus import describe_source, subscribe_kwargs
    from lab.backtest.paper import PaperRunner
    from lab.lake import Lake, default_lake

    live = subscribe_kwargs(a)
    strat = make_strategy(a.strategy, parse_params(a.param))
    lake = Lake(a.lake) if a.lake else default_lake()
    runner = PaperRunner(strat, strat.instruments(), config_from_args(a), lake=lake, session=a.session)
    print(f"paper session {runner.session}: {strat.name} on "
          f"{', '.join(f'{v}:{s}' for v, s in strat.instruments())} from {describe_source(a.bus)} "
          f"→ {lake.root}", flush=True)
    stop.run(lambda ev: runner.run(live["url"], duration_s=a.duration, flush_s=a.flush, progress=not a.quiet,
                                   stop=ev, token=live["token"], tls_root_certs=live["tls_root_certs"]))
    try:
        res = runner.finish()
    except RuntimeError as e:
        print(f"lab paper: {e}", file=sys.stderr)
        return 0 if stop.requested else 1  # stopped before any row: nothing to close
    st = res.stats()
    print(f"session {runner.session} done: {st['n_fills']} fills, {st['n_orders']} orders, "
          f"PnL {st['pnl']:.2f}, fees {st['fees_paid']:.2f}")
    return 0
