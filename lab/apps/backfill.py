"""``lab backfill``: fetch a past window of trades from a venue's public REST history.

Example::

    lab backfill --venue binance --symbols BTC-USDT --start 2024-03-01T10:00 --end 2024-03-01T11:00
    lab backfill --venue okx --symbols BTC-USDT --start ... --end ... --rest-url http://127.0.0.1:9446

Trades already in the lake (same venue, symbol, trade id) are not written again;
new ones go to ``trades`` with ``source = 'rest'``, and one ``feed_events`` row of
kind ``backfill`` per symbol records what was asked and found. Only what the venue
still serves can be fetched (Bybit: its last 60 trades); see docs/CONTRACTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import polars as pl

from lab.errors import ConfigError, ServiceError
from lab.lake import Lake, default_lake
from lab.venues import VENUES

HELP = "fetch a past window of trades from a venue's REST history into the lake"
WRITES_DATA = lambda a: a.lake is None  # noqa: E731  (appends to $LAB_DATA/lake; see lab.cli)

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Fetch the trades of [start, end) from the venue's public REST trade history, within "
                     "its page and rate limits, into the lake's trades table (source = 'rest'); trades "
                     "already in the lake are skipped. Times are ISO 8601, UTC unless a zone is given.")
    p.add_argument("--venue", required=True, choices=sorted(VENUES), help="venue")
    p.add_argument("--symbols", required=True, help="comma-separated canonical symbols (BTC-USDT,ETH-USDT)")
    p.add_argument("--start", required=True, help="window start (ISO 8601, inclusive)")
    p.add_argument("--end", required=True, help="window end (ISO 8601, exclusive)")
    p.add_argument("--rest-url", default=None, help="REST base URL (default: the real venue; the simulator "
                                                    "serves REST on each venue's port)")
    p.add_argument("--lake", default=None, help="lake directory (default: $LAB_DATA/lake)")
    p.add_argument("--min-interval", type=float, default=0.1, help="seconds between requests (default 0.1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from recorders.backfill import fetch_window, parse_time, result_frame
    from recorders.rest import RestClient

    try:
        start, end = parse_time(args.start), parse_time(args.end)
    except ValueError as e:
        raise ConfigError(f"bad time: {e}") from None
    if end <= start:
        raise ConfigError(f"--end ({args.end}) must be after --start ({args.start})")
    rest = args.rest_url or VENUES[args.venue].rest_url
    if not rest:
        raise ConfigError(f"{args.venue} has no REST base URL; pass --rest-url")
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    lake = Lake(args.lake) if args.lake else default_lake()

    async def one(sym: str, client: RestClient):
        errors: list[str] = []
        bar = tqdm(unit="trade", desc=f"{args.venue} {sym}", disable=args.no_progress, file=sys.stderr)

        def on_error(detail: str) -> None:
            errors.append(detail)
            if len(errors) > 50 and not any(x in detail for x in ("HTTP 429", "HTTP 418")):
                raise ServiceError(f"{args.venue} REST keeps failing: {detail}")

        async def get(url: str) -> str:
            return await client.get(url, on_error)

        def total(n: int) -> None:
            bar.total = n
            bar.refresh()

        try:
            r = await fetch_window(args.venue, rest, sym, start, end, get, progress=bar.update, total=total)
        finally:
            bar.close()
        return r, errors

    async def main():
        client = RestClient(args.min_interval)
        try:
            return [(s, *(await one(s, client))) for s in symbols]
        finally:
            await client.aclose()

    results = asyncio.run(main())
    for sym, r, errors in results:
        have: set[str] = set()
        if lake.exists("trades") and r.trades:
            have = set(lake.scan("trades", venue=args.venue, symbol=sym)
                       .filter(pl.col("trade_id").is_in([str(t.trade_id) for t in r.trades]))
                       .select("trade_id").collect()["trade_id"].to_list())
        fresh = r._replace(trades=[t for t in r.trades if str(t.trade_id) not in have])
        now = time.time_ns() // 1000
        if fresh.trades:
            lake.append("trades", result_frame(fresh, now))
        detail = f"window {args.start}..{args.end}: " + r.detail() + f"; {len(fresh.trades)} new in the lake"
        lake.append("feed_events", pl.DataFrame({
            "ts_local": pl.Series([now]).cast(pl.Datetime("us", "UTC")), "venue": [args.venue],
            "symbol": [sym], "kind": ["backfill"], "detail": [detail]}))
        rl = sum("HTTP 429" in e for e in errors)
        print(f"{args.venue} {sym}: {len(r.trades):,} trades found ({len(fresh.trades):,} new), "
              f"{r.requests} requests" + (f", {rl} rate-limited and retried" if rl else "")
              + ("" if r.missing == 0 or not r.trades else f"; {r.missing} ids in the range not served"))
    return 0
