"""The ``lab`` console script.

Each subcommand lives in its own module exposing ``add_arguments(parser)``
and ``run(args) -> int``; modules load lazily so ``lab --help`` is instant
and a broken subcommand cannot break the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("recorders.sim.cli", "run the local exchange simulator (or bulk-write simulated days to the lake)"),
    "record": ("recorders.cli", "record venue feeds into the lake"),
    "status": ("lab.status", "recorder health and lake table counts"),
    "maintain": ("lab.maintain", "compact, checkpoint and vacuum the lake (once or continuously)"),
    "rebuild": ("recorders.rebuild", "rebuild normalised tables from the raw_messages journal"),
    "report": ("lab.reports", "run a papermill report to HTML"),
    "schedule": ("lab.schedule", "run configured reports on a cron-like schedule"),
    "promote": ("lab.promote", "turn a notebook into a Streamlit page"),
    "backtest": ("lab.backtest.cli", "backtest a strategy on lake data"),
    "arbitrage": ("lab.arbitrage_cli", "live arbitrage detector"),
    "risk": ("lab.risk_cli", "live risk monitor"),
    "paper": ("lab.paper_cli", "paper-trade a strategy on the live stream"),
    "demo": ("lab.demo", "start every service for a local demo"),
}


def _load(name: str):
    mod, _ = COMMANDS[name]
    try:
        return importlib.import_module(mod)
    except ModuleNotFoundError as e:
        if e.name and (e.name == mod or mod.startswith(e.name + ".")):
            return None
        raise


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show ``(default: X)`` only where the help text does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        h = action.help or ""
        if "default" in h.lower() or action.default in (None, False, argparse.SUPPRESS):
            return h
        return super()._get_help_string(action)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lab",
        description="HFThot Research Lab: record crypto market data, analyse it, "
        "backtest, watch risk. Data lives under $LAB_DATA (default ./data).",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_,
                            formatter_class=_HelpFormatter)
        if only == name:
            m = _load(name)
            if m is not None:
                m.add_arguments(sp)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    name = next((a for a in argv if not a.startswith("-")), None)
    if name is not None and name not in COMMANDS:
        build_parser().parse_args(argv)  # argparse prints the choices and exits 2
    args = build_parser(only=name).parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 0
    m = _load(args.command)
    if m is None:
        print(f"lab {args.command}: not available in this version yet", file=sys.stderr)
        return 2
    try:
        return int(m.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
