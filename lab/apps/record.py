"""``lab record``: record venue feeds into the lake.

Examples::

    lab record --venue binance --symbols BTC-USDT,ETH-USDT            # the real venue
    lab record --venue kraken --symbols BTC-USD --sim                 # the local simulator
    lab record --config recorders/demo.toml --bus ws://127.0.0.1:50052
"""

from __future__ import annotations

import argparse
import logging
import sys

from lab import eventloop
from recorders.config import ConfigError, RecorderConfig, VenueConfig, load_config, sim_venue
from recorders.venues import ADAPTERS

HELP = "record venue feeds into the lake"
WRITES_DATA = True  # the lake, the journal and the status file under $LAB_DATA (see lab.cli)

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Record venue WebSocket feeds (trades, L2 book, quotes, top-25 snapshots, raw "
                     "journal, feed events) into the lake, with book sync, reconnects and a status "
                     "file under $LAB_DATA/run/. Stop with Ctrl-C or SIGTERM (pending rows are flushed).")
    p.add_argument("--venue", choices=sorted(ADAPTERS), help="one venue to record (or use --config)")
    p.add_argument("--symbols", help="comma-separated canonical symbols, e.g. BTC-USDT,ETH-USDT")
    p.add_argument("--config", help="TOML file listing several venues (see recorders/recorders.example.toml)")
    p.add_argument("--base-url", help="WebSocket base URL (default: the real venue, see docs/CONTRACTS.md)")
    p.add_argument("--rest-url", help="REST base URL for snapshots (Binance; default: the real venue)")
    p.add_argument("--sim", action="store_true", help="use the local simulator's URLs (127.0.0.1:9443+)")
    p.add_argument("--sim-port-base", type=int, default=9443, help="first simulator port with --sim")
    p.add_argument("--depth", type=int, help="book depth to subscribe (Kraken) / snapshot limit (Binance)")
    p.add_argument("--lake", help="lake directory (default: $LAB_DATA/lake)")
    p.add_argument("--name", help="recorder name, used for the status file (default: venue or config name)")
    p.add_argument("--status-dir", help="where the status file goes (default: $LAB_DATA/run)")
    p.add_argument("--flush-interval", type=float, help="seconds between lake writes: rows are visible to "
                   "lab.connect() this soon (default 1.0)")
    p.add_argument("--commit-interval", type=float, help="seconds between Delta commits of the rows written "
                   "(they are readable before, from the table's _tail folder); 0 = commit every flush "
                   "(default 30)")
    p.add_argument("--committer", choices=("recorder", "maintainer"),
                   help="who makes those Delta commits: this process (recorder, the default), or `lab maintain` "
                   "and this recorder's maintenance pass (maintainer: the recorder never loads delta-rs, ~50 MiB "
                   "less memory; lab demo's setting)")
    p.add_argument("--queue-batches", type=int, help="batches queued for the writer before rows are "
                   "dropped (and the loss recorded) (default 16)")
    p.add_argument("--rotate-after", type=float, help="planned, overlapped reconnect after this many "
                   "seconds (default 23.5 h; Binance cuts at 24 h)")
    p.add_argument("--maintain-every", type=float, help="compact the lake every N seconds (0 = never; default 120)")
    p.add_argument("--bus", help="publish quotes/trades/book_updates to the live bus at this URL "
                   "(e.g. ws://127.0.0.1:50052)")
    p.add_argument("--bus-serve", action="store_true", help="also run the bus hub in this process "
                   "(on --bus's port, default 50052)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--no-data-after", type=float, help="seconds a subscribed symbol may stay silent before a "
                   "no_data feed event and a warning (0 = never; default 60)")
    p.add_argument("--writer-delay", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--no-symbol-check", action="store_true",
                   help="do not check the symbols against the venue's listing before connecting")
    p.add_argument("-v", "--verbose", action="store_true", help="log connection events to stderr")


def build_config(args: argparse.Namespace) -> RecorderConfig:
    over = dict(lake=args.lake, name=args.name, status_dir=args.status_dir,
                flush_interval=args.flush_interval, commit_interval=args.commit_interval,
                committer=args.committer, queue_batches=args.queue_batches,
                rotate_after=args.rotate_after, maintain_every=args.maintain_every,
                bus=args.bus, duration=args.duration, no_data_after=args.no_data_after)
    if args.config:
        if args.venue or args.symbols:
            raise ConfigError("give either --config or --venue/--symbols, not both")
        cfg = load_config(args.config, **over)
        if args.sim:
            import msgspec
            venues = [msgspec.structs.replace(sim_venue(v.venue, v.symbols, args.sim_port_base),
                                              depth=v.depth) for v in cfg.venues]
            cfg = msgspec.structs.replace(cfg, venues=venues)
        return cfg
    if not args.venue or not args.symbols:
        raise ConfigError("--venue and --symbols are required (or --config FILE)")
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    if args.sim:
        vc = sim_venue(args.venue, symbols, args.sim_port_base)
        vc = VenueConfig(venue=vc.venue, symbols=symbols, base_url=args.base_url or vc.base_url,
                         rest_url=args.rest_url or vc.rest_url, depth=args.depth)
    else:
        vc = VenueConfig(venue=args.venue, symbols=symbols, base_url=args.base_url,
                         rest_url=args.rest_url, depth=args.depth)
    over["name"] = over["name"] or args.venue
    return RecorderConfig(venues=[vc], **{k: v for k, v in over.items() if v is not None})


def check_symbols(cfg: RecorderConfig) -> None:
    """Refuse, before connecting, symbols the venue's listing lacks (when the listing is known)."""
    from lab.errors import ConfigError as LabConfigError
    from recorders.listings import fetch_listing, unknown_symbols

    for vc in cfg.venues:
        listing = fetch_listing(vc)
        if listing is None:
            continue
        bad = unknown_symbols(vc, listing)
        if bad:
            some = ", ".join(sorted(listing)[:8]) + (", ..." if len(listing) > 8 else "")
            raise LabConfigError(f"{vc.venue} does not list {', '.join(bad)}; it lists {len(listing)} symbols: "
                                 f"{some} (--no-symbol-check to record anyway)")


async def _main(cfg: RecorderConfig, args: argparse.Namespace) -> int:
    from recorders.runtime import Recorder

    hub = None
    if args.bus_serve:
        from urllib.parse import urlsplit

        from lab.bus import Hub
        port = urlsplit(cfg.bus).port if cfg.bus else 50052
        hub = await Hub("127.0.0.1", port or 50052).start()
        if not cfg.bus:
            import msgspec
            cfg = msgspec.structs.replace(cfg, bus=hub.url)
    try:
        return await Recorder(cfg, writer_delay=args.writer_delay).run()
    finally:
        if hub is not None:
            await hub.stop()


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        cfg = build_config(args)
    except (ConfigError, ValueError) as e:
        print(f"lab record: {e}", file=sys.stderr)
        return 2
    if not args.no_symbol_check:
        check_symbols(cfg)
    names = ", ".join(f"{v.venue}[{','.join(v.symbols)}]" for v in cfg.venues)
    print(f"recording {names} -> {cfg.lake or '$LAB_DATA/lake'} (status: lab status)", file=sys.stderr)
    return eventloop.run(_main(cfg, args))
