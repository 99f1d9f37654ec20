"""``lab export hftbacktest``: one venue/symbol's tape as hftbacktest's event file.

Writes ``FILE.npz`` (key ``data``) in hftbacktest's event format from the lake's
``trades`` and ``book_updates`` between ``--start`` and ``--end`` (see
:mod:`lab.backtest.export` for the rules). Load it in hftbacktest with
``BacktestAsset().data(["FILE.npz"])``. Example::

    lab export hftbacktest --venue binance --symbol BTC-USDT \\
        --start 2026-11-22T12:00 --end 2026-11-22T13:00 --out btc.npz
    lab export hftbacktest --venue binance --symbol BTC-USDT --last 1h --out btc.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lab.errors import ConfigError, DataError
from lab.lake import Lake, default_lake

HELP = "export lake data for other tools (hftbacktest .npz)"

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Export one venue/symbol's trades and L2 book updates between --start and --end as "
                     "hftbacktest's event array (.npz, key 'data'): trades, depth changes, and each book "
                     "snapshot as a clear plus snapshot events, ordered for both clocks.")
    p.add_argument("format", choices=["hftbacktest"], help="the target format")
    p.add_argument("--venue", required=True, help="venue, e.g. binance")
    p.add_argument("--symbol", required=True, help="canonical symbol, e.g. BTC-USDT")
    p.add_argument("--start", default=None, help="first time (inclusive, UTC), e.g. 2026-11-22T12:00")
    p.add_argument("--end", default=None, help="last time (exclusive, UTC)")
    p.add_argument("--last", default=None, metavar="DURATION",
                   help="instead of --start: this much before --end (default: the newest row), e.g. 1h")
    p.add_argument("--out", required=True, help="output file (.npz)")
    p.add_argument("--lake", default=None, help="lake directory (default: $LAB_DATA/lake)")


def run(args: argparse.Namespace) -> int:
    from lab.apps.backtest import time_range
    from lab.backtest.export import to_hftbacktest_events

    lake = Lake(args.lake) if args.lake else default_lake()
    args.quotes = False  # --last counts back from the newest book_updates row
    t0, t1 = time_range(args, [(args.venue, args.symbol)], lake)
    if t0 is None or t1 is None:
        raise ConfigError("give --start and --end, or --last")
    kw = {"venue": args.venue, "symbol": args.symbol, "start": t0, "end": t1}
    trades = lake.scan("trades", **kw).collect()
    book = lake.scan("book_updates", **kw).collect()
    if trades.height == 0 and book.height == 0:
        raise DataError(f"no trades or book_updates for {args.venue} {args.symbol} between {t0:%Y-%m-%d %H:%M} "
                        f"and {t1:%Y-%m-%d %H:%M} UTC")
    data = to_hftbacktest_events(trades, book)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, data=data)
    print(f"{out}: {len(data):,} events ({trades.height:,} trades, {book.height:,} book rows)")
    return 0
