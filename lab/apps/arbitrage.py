"""``lab arbitrage``: the live arbitrage detector service.

Subscribes to ``quotes`` on the live bus (``lab.bus``, published by
``lab record --bus ...``), detects cross-venue and triangular opportunities
after taker fees and depth, appends ``arbitrage_signals`` rows to the lake and
raises one alert per opened episode through the configured sinks. With
``depth = N`` in the config (or ``--depth N``) the detector reads only
``book_updates`` and walks the top ``N`` levels of each rebuilt book, for
cross-venue sizes and triangle legs alike; ``--replay`` then replays
``book_updates`` from the lake (books start at the first snapshot inside the
window).

Examples::

    lab arbitrage                                   # bus ws://127.0.0.1:50052, config/arbitrage.toml
    lab arbitrage --alerts log,file:alerts/arbitrage.jsonl --min-edge 1     # file under $LAB_DATA
    lab arbitrage --replay --start 2026-11-22T12:00 --end 2026-11-22T13:00   # replay the lake
    lab arbitrage --depth 10                        # walk 10 levels of book_updates for the size
    lab arbitrage --bus grpc+tls://lab-host:50053 --token-file ~/.lab/service_token   # another machine
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from lab.apps._bus import add_bus_arguments

if TYPE_CHECKING:
    from lab.apps._stop import Stop

HELP = "live arbitrage detector"
WRITES_DATA = True  # signals into $LAB_DATA/lake (see lab.cli)

__all__ = ["add_arguments", "run"]

DEFAULT_CONFIG = Path("config/arbitrage.toml")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Live arbitrage detector: reads quotes from the live bus (not the database), "
                     "writes arbitrage_signals to the lake and raises alerts. Stop with Ctrl-C.")
    p.add_argument("--config", default=None,
                   help=f"TOML config (fees, sizes, thresholds, sinks); default {DEFAULT_CONFIG} "
                   "when it exists, else built-in defaults")
    add_bus_arguments(p, "quotes or book_updates")
    p.add_argument("--lake", default=None, help="lake directory (default: $LAB_DATA/lake)")
    p.add_argument("--alerts", default=None,
                   help="comma-separated sinks overriding the config: log, bell, stdout, "
                   "file:<path>, webhook:<url>")
    p.add_argument("--min-edge", type=float, default=None,
                   help="signal when the net edge (bps, after fees and depth) exceeds this")
    p.add_argument("--alert-min-edge", type=float, default=None,
                   help="alert only episodes opening with at least this net edge (bps)")
    p.add_argument("--max-age-ms", type=float, default=None,
                   help="a quote older than this (ms, receive time) is stale and not used")
    p.add_argument("--depth", type=int, default=None,
                   help="0: cross-venue on quotes (top of book); N > 0: on book_updates, walking "
                   "N levels for the size (default: the config's depth)")
    p.add_argument("--no-write", action="store_true", help="do not append signals to the lake")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--replay", action="store_true",
                   help="replay the lake (quotes, or book_updates in depth mode; receive-time "
                   "order) instead of the bus")
    p.add_argument("--start", default=None, help="replay: first time (ISO 8601, UTC)")
    p.add_argument("--end", default=None, help="replay: last time (ISO 8601, UTC)")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress every 10 s")


def _config(args: argparse.Namespace):
    from lab.arbitrage.config import load_config

    path = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    cfg = load_config(path)
    over = {}
    if args.min_edge is not None:
        over["min_edge_bps"] = args.min_edge
    if args.alert_min_edge is not None:
        over["alert_min_edge_bps"] = args.alert_min_edge
    if args.max_age_ms is not None:
        over["max_age_ms"] = args.max_age_ms
    if args.depth is not None:
        if args.depth < 0:
            raise ValueError(f"--depth must be >= 0, got {args.depth}")
        over["depth"] = args.depth
    if args.alerts is not None:
        over["alerts"] = [s for s in args.alerts.split(",") if s.strip()]
    return msgspec.structs.replace(cfg, **over) if over else cfg


async def _replay_source(lake, table, start, end):
    """``table``'s rows in receive order, as the bus would deliver them."""
    from lab.arbitrage.live import replay_rows

    if not lake.exists(table):
        return
    for rows in replay_rows(lake.scan(table, start=start, end=end), batch=2000):
        yield table, rows
        await asyncio.sleep(0)


def run(args: argparse.Namespace) -> int:
    from lab.apps._stop import service

    with service("lab arbitrage", verbose=args.verbose) as stop:  # SIGINT/SIGTERM: write pending signals, exit 0
        return _run(args, stop)


def _run(args: argparse.Namespace, stop: Stop) -> int:
    from lab.alerts import describe_sinks, make_sinks
    from lab.apps._bus import describe_source, subscribe_kwargs
    from lab.arbitrage.live import bus_tables, run_live
    from lab.lake import Lake, default_lake

    try:
        cfg = _config(args)
        live = None if args.replay else subscribe_kwargs(args)
        sinks = make_sinks(cfg.alerts)
    except (ValueError, FileNotFoundError) as e:
        print(f"lab arbitrage: {e}", file=sys.stderr)
        return 2
    lake = Lake(args.lake) if args.lake else default_lake()
    write = None if args.no_write else (lambda df: lake.append("arbitrage_signals", df))
    if args.replay:
        (table,) = bus_tables(cfg)
        source = _replay_source(lake, table, args.start, args.end)
        where = f"replay of {lake.root}"
    else:
        from lab.bus import SubscribeStats, subscribe

        bus_stats = SubscribeStats()
        source = subscribe(bus_tables(cfg), restate=cfg.depth > 0, stats=bus_stats, **(live or {}))
        where = describe_source(args.bus)
    mode = f"book_updates, {cfg.depth} levels" if cfg.depth else "quotes (top of book)"
    print(f"lab arbitrage: {where}; cross-venue and triangles on {mode}; "
          f"min edge {cfg.min_edge_bps} bps, max age {cfg.max_age_ms} ms, "
          f"sinks {describe_sinks(cfg.alerts)}, "
          f"signals -> {'(not written)' if write is None else lake.root}",
          file=sys.stderr, flush=True)
    t0 = time.monotonic()

    try:
        det = stop.run(lambda ev: run_live(cfg, source, sinks=sinks, write=write, duration=args.duration,
                                           stats_every=10.0 if args.verbose else 0.0, stop=ev))
    finally:
        for s in sinks:
            s.close()
    skipped = f", {det.bad_frames} bad frames skipped" if det.bad_frames else ""
    if not args.replay and bus_stats.bad_frames:
        skipped += f", {bus_stats.bad_frames} malformed bus frames skipped"
    print(f"lab arbitrage: {det.rows_in} rows, {det.signals_out} signals in "
          f"{time.monotonic() - t0:.1f} s{skipped}", file=sys.stderr)
    return 0
