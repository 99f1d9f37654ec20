"""``lab risk``: the live risk monitor.

Positions come from a positions file (TOML/CSV) and/or the paper runner's
``paper_positions`` table; marks from ``quotes`` on the live bus; return
history (for VaR/ES) from the lake's quotes, refreshed every minute. Every
second a full snapshot is appended to ``risk_snapshots`` and limit breaches
are raised once (and cleared once) through the alert sinks.

Examples::

    lab risk --positions config/positions.example.toml          # bus ws://127.0.0.1:50052
    lab risk --config config/risk.toml --alerts log,webhook:http://127.0.0.1:9000/hook
    lab risk --positions pos.toml --bus grpc+tls://lab-host:50053   # another machine, via lab serve
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import polars as pl

from lab.apps._bus import add_bus_arguments

if TYPE_CHECKING:
    from lab.apps._stop import Stop

HELP = "live risk monitor"
WRITES_DATA = True  # risk_snapshots into $LAB_DATA/lake (see lab.cli)

__all__ = ["add_arguments", "run", "build_monitor"]

DEFAULT_CONFIG = Path("config/risk.toml")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Live risk monitor: marks positions from live quotes, writes a risk snapshot "
                     "(exposure, PnL, VaR/ES, drawdown, limits) to risk_snapshots every second and "
                     "alerts on limit breaches. Stop with Ctrl-C.")
    p.add_argument("--config", default=None,
                   help=f"TOML config (capital, marks, VaR, limits, sinks); default {DEFAULT_CONFIG} "
                   "when it exists, else built-in defaults")
    p.add_argument("--positions", default=None,
                   help="positions file (TOML [[position]] tables or CSV), overriding the config's")
    p.add_argument("--no-paper", action="store_true",
                   help="ignore the paper runner's paper_positions table")
    add_bus_arguments(p, "quotes (marks)")
    p.add_argument("--lake", default=None, help="lake directory (default: $LAB_DATA/lake)")
    p.add_argument("--alerts", default=None,
                   help="comma-separated sinks overriding the config: log, bell, stdout, "
                   "file:<path>, webhook:<url>")
    p.add_argument("--every", type=float, default=None, help="seconds between snapshots (default 1)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--no-write", action="store_true", help="do not append snapshots to the lake")
    p.add_argument("-v", "--verbose", action="store_true", help="print the portfolio line each tick")


def _positions_loader(cfg, lake, positions_file: str | None, paper: bool):
    from lab.risk.core import POSITION_SCHEMA, load_positions, positions_from_paper

    def load() -> pl.DataFrame:
        parts = []
        if positions_file:
            parts.append(load_positions(positions_file))
        if paper and lake.exists("paper_positions"):
            parts.append(positions_from_paper(lake.scan("paper_positions"), cfg.paper_session)
                         .collect())
        if not parts:
            return pl.DataFrame(schema=POSITION_SCHEMA)
        return pl.concat(parts, how="vertical")

    return load


def _returns_loader(cfg, lake):
    from lab.risk.core import returns_matrix

    def load() -> pl.DataFrame:
        if not lake.exists("quotes"):
            return pl.DataFrame({"ts": []})
        start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=cfg.history_days)
        return returns_matrix(lake.scan("quotes", start=start), every=cfg.bar,
                              quote_rates=cfg.quote_rates).collect()

    return load


def build_monitor(args: argparse.Namespace):
    """Config, lake and :class:`RiskMonitor` from the command line (shared with tests)."""
    from lab.alerts import make_sinks
    from lab.lake import Lake, default_lake
    from lab.risk.core import load_risk_config
    from lab.risk.live import RiskMonitor

    cfg = load_risk_config(args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None))
    over = {}
    if args.alerts is not None:
        over["alerts"] = [s for s in args.alerts.split(",") if s.strip()]
    if args.every is not None:
        over["every_s"] = args.every
    if over:
        cfg = msgspec.structs.replace(cfg, **over)
    lake = Lake(args.lake) if args.lake else default_lake()
    positions_file = args.positions or cfg.positions_file
    loader = _positions_loader(cfg, lake, positions_file, cfg.paper and not args.no_paper)
    sinks = make_sinks(cfg.alerts)
    returns = _returns_loader(cfg, lake)
    mon = RiskMonitor(cfg, loader, sinks=sinks, returns=returns(),
                      day_start_pnl=_day_start(lake))
    return cfg, lake, mon, sinks, returns


def _day_start(lake) -> float | None:
    """Today's first portfolio total PnL in ``risk_snapshots`` (a restart keeps the daily loss)."""
    if not lake.exists("risk_snapshots"):
        return None
    today = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    v = (lake.scan("risk_snapshots", start=today)
         .filter((pl.col("scope") == "portfolio") & (pl.col("metric") == "total_pnl"))
         .sort("ts").select(pl.col("value").first()).collect())
    return v.item() if v.height and v.item() is not None else None


def run(args: argparse.Namespace) -> int:
    from lab.apps._stop import service

    with service("lab risk", verbose=args.verbose) as stop:  # SIGINT/SIGTERM: finish the snapshot being written, exit 0
        return _run(args, stop)


def _run(args: argparse.Namespace, stop: Stop) -> int:
    from lab.apps._bus import describe_source, subscribe_kwargs
    from lab.risk.live import run_monitor

    try:
        live = subscribe_kwargs(args)
        cfg, lake, mon, sinks, returns = build_monitor(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"lab risk: {e}", file=sys.stderr)
        return 2
    from lab.alerts import describe_sinks
    from lab.bus import subscribe

    write = None if args.no_write else (lambda df: lake.append("risk_snapshots", df))
    print(f"lab risk: {mon.positions.height} positions, quotes from {describe_source(args.bus)}, snapshot every "
          f"{cfg.every_s:g} s -> {'(not written)' if write is None else lake.root}; sinks "
          f"{describe_sinks(cfg.alerts)}", file=sys.stderr, flush=True)

    def show(rows: pl.DataFrame, secs: float) -> None:
        if args.verbose:
            v = {r["metric"]: r["value"] for r in rows.filter(scope="portfolio").iter_rows(named=True)}
            print(f"equity {v.get('equity', 0):,.2f}  pnl {v.get('total_pnl', 0):,.2f}  gross "
                  f"{v.get('gross_exposure', 0):,.0f}  VaR99 {v.get('hist_var_99', 0):,.2f}  "
                  f"stale {v.get('stale_positions', 0):.0f}  ({secs * 1e3:.0f} ms)", file=sys.stderr)

    try:
        stop.run(lambda ev: run_monitor(mon, subscribe(["quotes"], **live), write=write,
                                        every_s=cfg.every_s, duration=args.duration,
                                        returns_loader=returns, on_tick=show, stop=ev))
    finally:
        for s in sinks:
            s.close()
    return 0
