"""``lab backtest STRATEGY --sweep ... --cluster ...``: a parameter sweep split by chunk and by day.

Each task is (a chunk of parameter sets) x (one UTC day of ``[--start, --end)``):
it reads that day's ``book_updates`` (or ``quotes``) and ``trades`` at the lake
versions pinned when the sweep was submitted, builds the events once, and runs
the strategy for every parameter set of its chunk. The rows (parameters, day,
stats) are printed as one table and appended to the lake table ``backtest_runs``
with the run id and the versions read, so a sweep can be reproduced exactly.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import math
import sys
import uuid
from typing import Any

import polars as pl

from lab.errors import ConfigError

__all__ = ["add_sweep_arguments", "run_sweep", "run_one"]

_STAT_COLS = ("pnl", "total_return", "sharpe", "max_drawdown", "turnover", "fees_paid")
_INT_COLS = ("n_orders", "n_fills", "events")


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sweeps (lab.distributed)")
    g.add_argument("--sweep", default=None, metavar="NAME=START:STOP:STEP,...",
                   help="sweep strategy parameters over a grid (ends inclusive; NAME=V1|V2 lists values), "
                   "e.g. half_spread=0:4:1,skew_ticks=0:1:0.1; needs --start and --end; one run per "
                   "parameter set and UTC day, appended to the lake table backtest_runs")
    g.add_argument("--cluster", default="auto", metavar="auto|local|ray|ADDRESS",
                   help="where sweep tasks run: auto (a Ray cluster if `lab cluster up` or LAB_RAY_ADDRESS "
                   "configured one, else this process), local, ray, or a Ray address (ray://host:10001)")
    g.add_argument("--chunk-size", type=int, default=25, help="parameter sets per task")
    g.add_argument("--no-record", action="store_true", help="do not append the sweep to backtest_runs")


@functools.lru_cache(maxsize=2)
def _events(locs: tuple, versions: tuple, venues: tuple, symbols: tuple, t0: dt.datetime, t1: dt.datetime,
            use_quotes: bool):
    """One day's events at the pinned versions, kept for the next parameter sets of this worker."""
    from lab.backtest import build_events, quotes_as_book
    from lab.distributed import read_pinned

    loc, ver = dict(locs), dict(versions)

    def rd(t: str) -> pl.LazyFrame:
        uri, so = loc[t]
        return read_pinned(t, uri, ver[t], dict(so) if so else None, venue=list(venues), symbol=list(symbols),
                           start=t0, end=t1)

    book = quotes_as_book(rd("quotes")) if use_quotes else rd("book_updates")
    return build_events(book, rd("trades"))


def run_one(params: dict[str, Any], t0: dt.datetime, t1: dt.datetime, *, strategy: str, base: dict[str, str],
            config: Any, locs: tuple, versions: tuple, use_quotes: bool, capital: float) -> dict[str, Any]:
    """Backtest ``strategy`` with ``base`` overridden by ``params`` on ``[t0, t1)``; its stats."""
    from lab.backtest import run_backtest
    from lab.backtest.stats import summary
    from lab.backtest.strategies import STRATEGIES

    cls = STRATEGIES[strategy]
    strat = cls(**{**base, **{k: _param_text(v) for k, v in params.items()}})
    keys = strat.instruments()
    ev = _events(locs, versions, tuple(sorted({v for v, _ in keys})), tuple(sorted({s for _, s in keys})),
                 t0, t1, use_quotes)
    if len(ev) == 0:
        return {"events": 0}
    res = run_backtest(strat, ev, config)
    st = summary(res, capital)
    st["events"] = res.events
    return st


def _param_text(v: Any) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _bar(total: int):
    from tqdm import tqdm

    bar = tqdm(total=total, unit="task", file=sys.stderr, dynamic_ncols=True, disable=None)

    def update(pr) -> None:
        bar.n = pr.done + pr.failed
        bar.set_postfix(done=pr.done, failed=pr.failed, retried=pr.retried, refresh=False)
        bar.refresh()
    return bar, update


def _row_stats(r: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in _STAT_COLS:
        v = r.get(c)
        out[c] = float(v) if isinstance(v, int | float) else None
    for c in _INT_COLS:
        v = r.get(c)
        out[c] = int(v) if isinstance(v, int | float) and not (isinstance(v, float) and math.isnan(v)) else None
    return out


def run_sweep(a: argparse.Namespace) -> int:
    """The ``--sweep`` path of ``lab backtest``."""
    from lab.apps.backtest import config_from_args, make_strategy, parse_params
    from lab.backtest.strategies import STRATEGIES
    from lab.distributed import as_utc, day_splits, lease, parse_grid, pin_versions, sweep
    from lab.lake import Lake

    if a.start is None or a.end is None:
        raise ConfigError("--sweep needs --start and --end (the sweep runs one task per UTC day of that range)")
    if a.chunk_size < 1:
        raise ConfigError(f"--chunk-size must be at least 1, got {a.chunk_size}")
    base = parse_params(a.param)
    make_strategy(a.strategy, base)  # validates the base parameters
    grid = parse_grid(a.sweep)
    known = STRATEGIES[a.strategy].defaults
    unknown = sorted(set(grid[0]) - set(known))
    if unknown:
        raise ConfigError(f"--sweep: {a.strategy} has no parameter(s) {unknown}; it has {sorted(known)}")
    cfg = config_from_args(a)
    t0, t1 = as_utc(a.start), as_utc(a.end)
    splits = [(lo, hi) for _, lo, hi in day_splits(t0, t1)]
    if not splits:
        raise ConfigError(f"--end {a.end} must be after --start {a.start}")
    lake = Lake(a.lake) if a.lake else Lake()
    tables = ("quotes" if a.quotes else "book_updates", "trades")
    versions = pin_versions(tables, lake)
    so = getattr(lake, "storage_options", None)
    locs = tuple((t, (str(lake.path(t)), tuple(sorted(so.items())) if so else None)) for t in tables)
    fn = functools.partial(run_one, strategy=a.strategy, base=base, config=cfg, locs=locs,
                           versions=tuple(sorted(versions.items())), use_quotes=a.quotes, capital=a.capital)
    n_tasks = -(-len(grid) // a.chunk_size) * len(splits)
    print(f"sweep {a.strategy}: {len(grid)} parameter sets x {len(splits)} day(s) = {len(grid) * len(splits)} "
          f"runs in {n_tasks} tasks; lake versions {versions}", file=sys.stderr)
    bar, update = _bar(n_tasks)
    try:
        with lease(lake, versions):  # vacuum keeps these versions' files while the sweep runs
            job = sweep(fn, grid, splits=splits, chunk_size=a.chunk_size, cluster=a.cluster, progress=update)
    finally:
        bar.close()
    run_id = uuid.uuid4().hex[:12]
    now = dt.datetime.now(dt.timezone.utc)
    names = list(grid[0])
    rows = []
    for r in job.frame.iter_rows(named=True) if job.frame.height else []:
        lo, hi = splits[r["split"]]
        stats = {k: v for k, v in r.items() if k not in names and k != "split"}
        rows.append({"ts": now, "run_id": run_id, "strategy": a.strategy,
                     "params": json.dumps({k: r[k] for k in names}), "split_start": lo, "split_end": hi,
                     **_row_stats(stats), "stats": json.dumps(stats, default=str), "versions": json.dumps(versions),
                     "executor": job.executor, "error": None})
    for (ci, si), err in job.failures:
        lo, hi = splits[si]
        for p in grid[ci * a.chunk_size:(ci + 1) * a.chunk_size]:
            rows.append({"ts": now, "run_id": run_id, "strategy": a.strategy, "params": json.dumps(p),
                         "split_start": lo, "split_end": hi, **_row_stats({}), "stats": None,
                         "versions": json.dumps(versions), "executor": job.executor, "error": err[:2000]})
    table = pl.DataFrame(rows, schema=pl.Schema({c: d for c, d in _schema().items()}))
    params = pl.DataFrame([json.loads(x) for x in table["params"]], schema={n: pl.Float64 for n in names})
    show = pl.concat([params, table.select(pl.col("split_start").dt.date().alias("day"), *_STAT_COLS, *_INT_COLS,
                                           "error")], how="horizontal")
    with pl.Config(tbl_rows=40, tbl_cols=20, tbl_width_chars=200):
        print(show.sort(*names, "day"))
    print(f"run {run_id} on {job.executor}: {job.progress}", file=sys.stderr)
    if not a.no_record and table.height:
        v = lake.append("backtest_runs", table)
        print(f"appended {table.height} rows to backtest_runs (version {v}), run_id {run_id}", file=sys.stderr)
    return 1 if job.failures else 0


def _schema() -> dict[str, pl.DataType]:
    from lab.schema import table_spec

    return dict(table_spec("backtest_runs").columns)
