"""The ``lab`` console script.

Each subcommand is a module of :mod:`lab.apps` exposing ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; adding a command is adding
that module (no list to edit). Modules load lazily so ``lab --help`` is
instant and a broken subcommand cannot break the others. A
:class:`~lab.errors.LabError` from a command prints as one line and exits 2.

``LAB_DATA`` (default ``./data``) is made absolute here, once, and put back in
the environment, so every child (papermill kernels started in
``notebooks/reports``, Jupyter, Streamlit, the services) sees the same folder
whatever its working directory. A command module that writes there says so with
``WRITES_DATA = True`` (or a function of the parsed arguments); such a command
fails at start, in one line naming the path, when ``LAB_DATA`` is not a
writable directory.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import os
import sys
import uuid
from importlib import resources
from pathlib import Path

from lab.errors import ConfigError, LabError


def _discover() -> dict[str, tuple[str, str]]:
    """Every command module in :mod:`lab.apps`: name -> (module, one-line help).

    A module ``lab/apps/NAME.py`` (not starting with ``_``) is the command
    ``lab NAME`` (``_`` -> ``-``; a trailing ``_`` is dropped, for ``import_``).
    Its help is its ``HELP = "..."`` constant, read from the source without
    importing it, so ``lab --help`` stays instant.
    """
    out: dict[str, tuple[str, str]] = {}
    for f in sorted(resources.files("lab.apps").iterdir(), key=lambda f: f.name):
        if not f.name.endswith(".py") or f.name.startswith("_"):
            continue
        stem = f.name[:-3]
        help_ = ""
        for node in ast.parse(f.read_text(encoding="utf-8")).body:
            if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "HELP" for t in node.targets)
                    and isinstance(node.value, ast.Constant)):
                help_ = str(node.value.value)
                break
        out[stem.rstrip("_").replace("_", "-")] = (f"lab.apps.{stem}", help_)
    return out


COMMANDS: dict[str, tuple[str, str]] = _discover()


def _load(name: str):
    return importlib.import_module(COMMANDS[name][0])


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
            _load(name).add_arguments(sp)
    return p


def resolve_data_env() -> Path:
    """Make ``$LAB_DATA`` (and ``$LAB_LAKE``, ``$LAB_REPORTS`` when set) absolute in ``os.environ``.

    Relative values are read against the current directory, as the user meant
    them; children that start elsewhere (a report kernel runs in
    ``notebooks/reports``) then find the same folder.
    """
    data = Path(os.environ.get("LAB_DATA") or "data").expanduser().resolve()
    os.environ["LAB_DATA"] = str(data)
    for var in ("LAB_LAKE", "LAB_REPORTS"):
        if os.environ.get(var):
            os.environ[var] = str(Path(os.environ[var]).expanduser().resolve())
    return data


def check_writable_dir(path: Path, what: str = "LAB_DATA") -> None:
    """Raise a one-line :class:`ConfigError` unless ``path`` is (or can be made) a writable directory."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what}={path}: not a directory (set {what} to a writable folder)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".lab-write-check-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise ConfigError(f"{what}={path}: not a writable directory ({reason}); "
                          f"set {what} to a folder you can write") from None


def _writes_data(module, args: argparse.Namespace) -> bool:
    w = getattr(module, "WRITES_DATA", False)
    return bool(w(args) if callable(w) else w)


#: Environment defaults per command, set before Polars and delta-rs load (both read them once,
#: when they load) unless the user already set them (option lists merged option by option:
#: :func:`tune_process`). ``lab record`` runs all day beside the
#: user's work, so it is sized for memory (measured side by side on one simulator, 5 venues x 3
#: symbols, RSS sampled 20 times a second; bench/bench_recorder_memory.py for the hour):
#:
#: - ``POLARS_MAX_THREADS=1``: it writes small frames; one thread encodes a tail file's few
#:   hundred rows as fast, and two pools' threads with their allocator caches and in-flight
#:   row groups held ~2 MiB more resident.
#: - ``_RJEM_MALLOC_CONF=tcache:false``: Polars and delta-rs each bring their own jemalloc, which
#:   reads this variable. Their per-thread caches, on delta-rs' ~10 runtime threads that each run
#:   a commit now and then, held 4-5 MiB more resident all through an hour's recording (in one
#:   process, 600 Delta commits retained +9.5 MiB with them, +1.5 to +3.3 without). Without them a
#:   commit costs a few ms more CPU in a microbenchmark; the recorder's CPU did not change
#:   measurably (bench/bench_recorder_cost.py).
#: - ``narenas:1``: one jemalloc arena instead of 4 per CPU. delta-rs' runtime starts ~12 short-lived
#:   I/O threads at every commit round, each bound to one of the arenas, so freed memory was spread
#:   over 8 of them. Side by side for 11 minutes: median RSS 3 MiB lower, peaks 5 MiB lower, same
#:   CPU (27.0 vs 27.7 s).
PROCESS_ENV: dict[str, dict[str, str]] = {
    "record": {"POLARS_MAX_THREADS": "1", "_RJEM_MALLOC_CONF": "tcache:false,narenas:1"},
}


#: variables holding ``key:value`` options separated by commas: merged by option, not replaced
_OPTION_LISTS = ("_RJEM_MALLOC_CONF",)


def tune_process(command: str | None) -> None:
    """Apply :data:`PROCESS_ENV` for ``command``: only before Polars and delta-rs are loaded
    (after, the variables would change nothing) and never over a value the user set. An option
    list (``_RJEM_MALLOC_CONF``) gets each option it does not name yet: a parent process that
    imported Polars passes on Polars' own ``dirty_decay_ms``/``muzzy_decay_ms``, which must not
    count as the user's choice of every option (tests/foundation/test_process_env.py).
    """
    if command not in PROCESS_ENV or {"polars", "deltalake"} & set(sys.modules):
        return
    for k, v in PROCESS_ENV[command].items():
        have = os.environ.get(k)
        if not have:
            os.environ[k] = v
        elif k in _OPTION_LISTS:
            named = {o.split(":", 1)[0].strip() for o in have.split(",")}
            add = [o for o in v.split(",") if o.split(":", 1)[0] not in named]
            if add:
                os.environ[k] = ",".join([have, *add])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    name = next((a for a in argv if not a.startswith("-")), None)
    tune_process(name)
    if name is not None and name not in COMMANDS:
        build_parser().parse_args(argv)  # argparse prints the choices and exits 2
    args = build_parser(only=name).parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 0
    m = _load(args.command)
    saved = {k: os.environ.get(k) for k in ("LAB_DATA", "LAB_LAKE", "LAB_REPORTS")}
    try:
        data = resolve_data_env()
        if _writes_data(m, args):
            check_writable_dir(data)
        return int(m.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except LabError as e:
        print(f"lab {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # `lab status | head`: the reader went away, not an error
        sys.stderr.close()
        return 0
    finally:  # main() called in-process (tests, notebooks) leaves the environment as it found it
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


if __name__ == "__main__":
    sys.exit(main())
