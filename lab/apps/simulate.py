"""``lab simulate``: the local exchange simulator.

Three modes:

* live (default): serve the venues' WebSocket/REST protocols on 127.0.0.1,
  ports ``--port-base`` + 0..4 (binance, coinbase, kraken, okx, bybit);
* ``--to-lake``: write ``--days`` of simulated history straight into the lake;
* ``--replay PATH``: serve the ``raw_messages`` journal of the lake at PATH
  through the same WebSocket paths, at the recorded pace or ``--speed`` N.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import signal
from pathlib import Path

from lab import eventloop
from lab.errors import ConfigError, ServiceError

HELP = "run the local exchange simulator (or bulk-write simulated days to the lake)"
WRITES_DATA = lambda a: a.to_lake and a.lake is None  # noqa: E731  (see lab.cli)

__all__ = ["add_arguments", "run"]


def _csv(s: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in s.split(",") if x.strip())


def add_arguments(p: argparse.ArgumentParser) -> None:
    from recorders.sim.config import FAULT_PRESETS, VENUES

    p.add_argument("--venues", type=_csv, default=("binance", "coinbase", "kraken"),
                   help=f"comma-separated venues to simulate, from {','.join(VENUES)}")
    p.add_argument("--assets", type=_csv, default=("BTC", "ETH", "SOL"),
                   help="comma-separated assets (BTC, ETH, SOL); ETH-BTC is listed when both are")
    p.add_argument("--seed", type=int, default=0, help="random seed: same seed, same market")
    p.add_argument("--speed", type=float, default=1.0,
                   help="run the simulated clock N times faster than real time (live and replay)")
    p.add_argument("--port-base", type=int, default=9443,
                   help="first port; venues use port-base+0..4 (binance, coinbase, kraken, okx, bybit)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (loopback by default)")
    p.add_argument("--tls-cert", default=None, metavar="PEM",
                   help="serve wss:// and https:// with this certificate chain (with --tls-key), "
                        "to exercise a recorder's TLS path as against the real venues")
    p.add_argument("--tls-key", default=None, metavar="PEM", help="private key for --tls-cert")
    p.add_argument("--faults", default="off", choices=sorted(FAULT_PRESETS),
                   help="fault-injection preset: off, gentle (demo) or heavy (recorder tests)")
    p.add_argument("--no-arbitrage", action="store_true",
                   help="venues follow the latent price with no lag or noise (no lead-lag, no arbitrage)")
    p.add_argument("--lags", default=None,
                   help="venue information lags in ms, e.g. binance=0,coinbase=50,kraken=150 "
                        "(the smallest lag is the leader)")
    p.add_argument("--lifetime", type=float, default=86400.0,
                   help="seconds after which a Binance connection is closed (the real venue: 24 h)")
    p.add_argument("--truth-dir", default=None,
                   help="write ground truth (faults/trades/books/connections .jsonl) into this directory")
    p.add_argument("--duration", type=float, default=None,
                   help="stop after this many wall-clock seconds (default: run until Ctrl-C)")
    p.add_argument("--continue-ids", nargs="?", const="", default=None, metavar="LAKE",
                   help="start each listing's trade ids after the largest one in LAKE's trades (no LAKE: "
                        "$LAB_LAKE, else $LAB_DATA/lake); the demo uses it, so its seeded history and the "
                        "live trades form one tape with no false backfill hole")
    g = p.add_argument_group("bulk history (--to-lake)")
    g.add_argument("--to-lake", action="store_true",
                   help="write simulated history straight into the lake instead of serving sockets")
    g.add_argument("--days", type=float, default=1.0, help="simulated days to write with --to-lake")
    g.add_argument("--start", default=None,
                   help="first simulated instant (ISO date/time, UTC); default: --days before today 00:00 UTC")
    g.add_argument("--lake", default=None, help="lake directory (default $LAB_DATA/lake)")
    r = p.add_argument_group("replay (--replay)")
    r.add_argument("--replay", default=None, metavar="PATH",
                   help="serve the raw_messages journal of the lake at PATH (a lake root or its "
                        "raw_messages table directory)")
    r.add_argument("--replay-start", default=None, help="replay only messages at/after this ISO time")
    r.add_argument("--replay-end", default=None, help="replay only messages before this ISO time")


def _parse_lags(s: str | None) -> dict[str, float] | None:
    if not s:
        return None
    out: dict[str, float] = {}
    for part in s.split(","):
        k, _, v = part.partition("=")
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise ConfigError(f"--lags: bad entry {part!r}; expected venue=ms") from None
    return out


def make_config(args: argparse.Namespace):

    from recorders.sim.config import ASSETS, DEFAULT_LAGS_MS, FAULT_PRESETS, VENUES, SimConfig

    lags = dict(DEFAULT_LAGS_MS)
    lags.update(_parse_lags(args.lags) or {})
    for flag, given, known in (("--venues", args.venues, VENUES), ("--assets", args.assets, ASSETS)):
        bad = [x for x in given if x not in known]
        if bad or not given:
            raise ConfigError(f"{flag} {','.join(given)!r}: unknown {', '.join(bad) or '(empty)'}; "
                              f"choose from {','.join(known)}")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together")
    try:
        return SimConfig(
            seed=args.seed, venues=tuple(args.venues), assets=tuple(args.assets), speed=args.speed,
        host=args.host, port_base=args.port_base, faults=FAULT_PRESETS[args.faults],
        arbitrage=not args.no_arbitrage, lags_ms=lags, lifetime_s=args.lifetime,
        truth_dir=args.truth_dir, tls_cert=args.tls_cert, tls_key=args.tls_key,
        first_trade_ids=_next_trade_ids(getattr(args, "continue_ids", None)),
        )
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _next_trade_ids(lake_dir: str | None) -> dict[str, int]:
    """``{"venue:SYMBOL": largest numeric trade id + 1}`` of ``lake_dir``'s trades ({} without;
    ``""`` is the default lake)."""
    if lake_dir is None:
        return {}
    import polars as pl

    from lab.lake import Lake

    lake = Lake(lake_dir or None)
    if not lake.exists("trades"):
        return {}
    last = (lake.scan("trades").group_by("venue", "symbol")
            .agg(pl.col("trade_id").cast(pl.Int64, strict=False).max().alias("last"))
            .drop_nulls("last").collect())
    return {f"{v}:{s}": int(n) + 1 for v, s, n in last.iter_rows()}


def _run_bulk(args: argparse.Namespace) -> int:
    from lab.lake import Lake, default_lake
    from recorders.sim.bulk import write_to_lake

    if not args.days > 0:
        raise ConfigError(f"--days must be > 0, got {args.days}")
    if args.start:
        try:
            start = dt.datetime.fromisoformat(args.start)
        except ValueError:
            raise ConfigError(f"--start {args.start!r}: not an ISO date or time (UTC)") from None
        if start.tzinfo is None:
            start = start.replace(tzinfo=dt.timezone.utc)
    else:
        today = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        start = today - dt.timedelta(days=args.days)
    lake = Lake(args.lake) if args.lake else default_lake()
    cfg = make_config(args)
    t = dt.datetime.now()
    n = write_to_lake(lake, start=start, duration=dt.timedelta(days=args.days),
                      venues=cfg.venues, assets=cfg.assets, seed=args.seed, progress=True,
                      config=cfg)
    secs = (dt.datetime.now() - t).total_seconds()
    total = sum(n.values())
    print(f"wrote {total:,} rows to {lake.root} in {secs:.1f} s ({total / secs:,.0f} rows/s): "
          + ", ".join(f"{k} {v:,}" for k, v in n.items()))
    return 0


def server_host(server) -> str:
    cfg = getattr(server, "cfg", None) or getattr(server, "config", None)
    return str(getattr(cfg, "host", None) or getattr(server, "host", "127.0.0.1"))


async def _serve(server, duration: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        await server.start()
    except OSError as e:
        import errno

        if e.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            raise ServiceError(f"cannot serve on {server_host(server)} (ports from --port-base): "
                               f"{e.strerror or e}; pick free ports with --port-base N") from None
        raise ServiceError(f"cannot start the simulator: {e}") from None
    for name, url in server.urls().items():
        print(f"{name:>14}: {url}", flush=True)
    try:
        if duration is None:
            await stop.wait()
        else:
            try:
                await asyncio.wait_for(stop.wait(), duration)
            except TimeoutError:
                pass
    finally:
        await server.stop()


def run(args: argparse.Namespace) -> int:
    if args.duration is not None and not args.duration > 0:
        raise ConfigError(f"--duration must be > 0 seconds, got {args.duration}")
    if not 0 <= args.port_base <= 65535 - 5:
        raise ConfigError(f"--port-base {args.port_base}: expected 0 (free ports) to 65530")
    if args.to_lake:
        return _run_bulk(args)
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together")
    for flag, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{flag} {path}: no such file")
    if args.replay:
        from recorders.sim.replay import Replayer

        try:
            server = Replayer(args.replay, host=args.host, port_base=args.port_base,
                              speed=args.speed, start=args.replay_start, end=args.replay_end)
        except FileNotFoundError as e:
            raise ConfigError(f"--replay {args.replay}: {e}; record a journal first (lab record)") from None
    else:
        from recorders.sim.server import Simulator

        server = Simulator(make_config(args))
    eventloop.run(_serve(server, args.duration))
    return 0
