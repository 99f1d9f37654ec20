"""Scale-out: run a function per (venue, symbol, day) or per parameter chunk, locally or on Ray.

Two pieces, both small on purpose:

* an :class:`Executor` runs ``fn(*args)`` for a list of argument tuples and
  returns the outcomes in input order. :class:`LocalExecutor` runs them in this
  process (the default when no cluster is configured); :class:`RayExecutor`
  submits them as Ray tasks (``ray`` is imported only when it is used). The
  interface is one method so another engine (Dask's ``client.map``) could be
  swapped in without touching the callers.
* :func:`map_days` pins one Delta version of the table at submit time, splits
  ``[start, end)`` into (venue, symbol, UTC day) tasks, has every task read that
  exact version (``DeltaTable(path, version=v)``), and concatenates the results.
  Commits made while the job runs are invisible to it, so a job is reproducible
  from the versions it records.

>>> import tempfile, datetime as dt, polars as pl
>>> from lab.lake import Lake
>>> lake = Lake(tempfile.mkdtemp())
>>> t = dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone.utc)
>>> rows = {"ts_local": [t, t + dt.timedelta(days=1)], "venue": ["binance"] * 2,
...         "symbol": ["BTC-USDT"] * 2, "kind": ["gap", "gap"], "detail": ["a", "b"]}
>>> _ = lake.append("feed_events", pl.DataFrame(rows))
>>> job = map_days(lambda lf: lf.select(pl.len().alias("n")), "feed_events",
...                "2026-01-01", "2026-01-03", lake=lake)
>>> job.frame.select("venue", "day", "n").rows()
[('binance', datetime.date(2026, 1, 1), 1), ('binance', datetime.date(2026, 1, 2), 1)]
>>> job.versions
{'feed_events': 1}
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from lab.errors import ConfigError, DataError, ServiceError

__all__ = [
    "Executor", "LocalExecutor", "RayExecutor", "Progress", "TaskFailure", "JobResult",
    "executor", "map_days", "day_splits", "spans_days", "cluster_configured", "as_utc", "sweep", "parse_grid",
    "pin_versions", "read_pinned",
    "cluster_file", "ray_address", "lease", "leased_versions", "lease_hours", "backtest_days",
]

log = logging.getLogger(__name__)

ProgressFn = Callable[["Progress"], None]


@dataclass
class Progress:
    """Counts of one job, updated as tasks finish (what a progress bar shows)."""

    total: int
    done: int = 0
    failed: int = 0
    retried: int = 0
    last: int = -1  # index (in the job's argument list) of the task that finished or was retried last

    def __str__(self) -> str:
        return f"{self.done}/{self.total} done, {self.failed} failed, {self.retried} retried"


class _Tracker:
    """Forwards progress to the caller's callback and keeps the retry count for the job's result."""

    def __init__(self, progress: ProgressFn | None) -> None:
        self.progress = progress
        self.retried = 0

    def __call__(self, pr: Progress) -> None:
        self.retried = pr.retried
        if self.progress:
            self.progress(pr)


@dataclass(frozen=True)
class TaskFailure:
    """The outcome of a task that raised (after retries for lost workers)."""

    error: str


class Executor(Protocol):
    """Runs ``fn(*args)`` for each tuple of ``args``; outcomes in input order.

    A task that raises yields a :class:`TaskFailure` instead of a value (the
    job goes on); a task lost with its worker is retried, up to the
    executor's own limit, and counted in :attr:`Progress.retried`.
    """

    name: str

    def run(self, fn: Callable[..., Any], args: Sequence[tuple], *,
            progress: ProgressFn | None = None) -> list[Any]: ...


class LocalExecutor:
    """Runs the tasks one after the other in this process (no cluster needed)."""

    name = "local"

    def run(self, fn: Callable[..., Any], args: Sequence[tuple], *,
            progress: ProgressFn | None = None) -> list[Any]:
        pr = Progress(len(args))
        out: list[Any] = []
        for i, a in enumerate(args):
            pr.last = i
            try:
                out.append(fn(*a))
                pr.done += 1
            except Exception as e:  # one bad task must not sink the job
                out.append(TaskFailure(f"{type(e).__name__}: {e}"))
                pr.failed += 1
            if progress:
                progress(pr)
        return out


def _call(fn: Callable[..., Any], args: tuple) -> Any:
    return fn(*args)


class RayExecutor:
    """Runs the tasks as Ray tasks (one CPU each) on the connected cluster.

    ``address``: ``None`` uses the Ray session this process already has (or
    starts none and fails clearly), ``"ray://host:10001"`` joins a cluster
    through Ray Client, ``"host:6379"``/``"auto"`` joins as a driver.
    Tasks lost with a worker node (its process or node died) are resubmitted
    by us, up to ``retries`` times, rather than by Ray, so the progress bar can
    count them; an exception raised by the task itself is a failure at once
    (it would raise again).
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, retries: int = 3, num_cpus: float = 1.0,
                 max_in_flight: int = 2_000) -> None:
        self.address = address
        self.retries = retries
        self.num_cpus = num_cpus
        self.max_in_flight = max_in_flight

    def _ray(self):
        try:
            import ray
        except ImportError as e:  # pragma: no cover - ray is a dependency
            raise ServiceError("ray is not installed: pip install 'ray[data]'") from e
        if not ray.is_initialized():
            if self.address is None:
                raise ServiceError("no Ray cluster: start one with `lab cluster up` or pass an address")
            try:
                ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise ServiceError(f"cannot join the Ray cluster at {self.address}: {e}") from e
        return ray

    def run(self, fn: Callable[..., Any], args: Sequence[tuple], *,
            progress: ProgressFn | None = None) -> list[Any]:
        ray = self._ray()
        from ray.exceptions import RayTaskError

        remote = ray.remote(num_cpus=self.num_cpus, max_retries=0)(_call)
        fn_ref = ray.put(fn)
        pr = Progress(len(args))
        out: list[Any] = [None] * len(args)
        attempts = [0] * len(args)
        pending: dict[Any, int] = {}
        todo = list(range(len(args)))[::-1]

        def submit(i: int) -> None:
            attempts[i] += 1
            pending[remote.remote(fn_ref, args[i])] = i

        while todo or pending:
            while todo and len(pending) < self.max_in_flight:
                submit(todo.pop())
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=None)
            for ref in ready:
                i = pending.pop(ref)
                pr.last = i
                try:
                    out[i] = ray.get(ref)
                    pr.done += 1
                except RayTaskError as e:  # the task itself raised: deterministic, no retry
                    cause = e.cause if getattr(e, "cause", None) is not None else e
                    out[i] = TaskFailure(f"{type(cause).__name__}: {cause}")
                    pr.failed += 1
                except Exception as e:  # worker/node lost, object lost: run it again
                    if attempts[i] <= self.retries:
                        log.warning("task %d lost (%s); retrying", i, type(e).__name__)
                        pr.retried += 1
                        todo.append(i)
                    else:
                        out[i] = TaskFailure(f"{type(e).__name__}: {e}")
                        pr.failed += 1
                if progress:
                    progress(pr)
        return out


# -- which executor -------------------------------------------------------------------------
def cluster_file() -> Path:
    """Where ``lab cluster up`` records the address of the cluster it started."""
    from lab.lake import data_dir

    return data_dir() / "run" / "ray-cluster.json"


def ray_address() -> str | None:
    """The configured Ray cluster: ``$LAB_RAY_ADDRESS``, else the one ``lab cluster up`` started."""
    env = os.environ.get("LAB_RAY_ADDRESS")
    if env:
        return env
    f = cluster_file()
    if f.is_file():
        try:
            return json.loads(f.read_text())["address"]
        except (ValueError, KeyError):
            return None
    return None


def executor(cluster: Executor | str | None = None) -> Executor:
    """Resolve ``cluster`` to an executor.

    ``None`` or ``"auto"``: Ray if a cluster is configured (``LAB_RAY_ADDRESS``,
    ``lab cluster up``) or this process is already connected to one, else local.
    ``"local"``: in this process. ``"ray"``: the connected/configured cluster
    (an error if none). Any other string is a Ray address. An object with a
    ``run`` method is used as is.
    """
    if cluster is not None and not isinstance(cluster, str):
        return cluster
    if cluster == "local":
        return LocalExecutor()
    if cluster in (None, "auto", "ray"):
        import sys

        ray = sys.modules.get("ray")  # not imported: not connected (and importing it costs ~1 s)
        if ray is not None and ray.is_initialized():
            return RayExecutor()
        addr = ray_address()
        if addr is not None:
            return RayExecutor(addr)
        if cluster == "ray":
            raise ConfigError("--cluster ray: no cluster configured (run `lab cluster up` or set LAB_RAY_ADDRESS)")
        return LocalExecutor()
    return RayExecutor(cluster)


# -- pinned reads ------------------------------------------------------------------------------
def _lake(lake: Any) -> Any:
    from lab.lake import Lake

    return lake if isinstance(lake, Lake) else Lake(lake) if lake is not None else Lake()


def _location(lake: Any, table: str) -> tuple[str, dict[str, str] | None]:
    """Table URI and storage options, picklable, for a task on another host."""
    so = getattr(lake, "storage_options", None)
    return str(lake.path(table)), (dict(so) if so else None)


def pin_versions(tables: Iterable[str], lake: Any = None) -> dict[str, int]:
    """The current Delta version of each table (``-1``: the table does not exist yet)."""
    lk = _lake(lake)
    return {t: lk.version(t) for t in tables}


def read_pinned(table: str, uri: str, version: int, storage_options: dict[str, str] | None = None, *,
                venue: str | Iterable[str] | None = None, symbol: str | Iterable[str] | None = None,
                start: dt.datetime | dt.date | str | None = None,
                end: dt.datetime | dt.date | str | None = None) -> pl.LazyFrame:
    """A LazyFrame over ``table`` exactly as of ``version`` (``-1``: empty), with the lake's filters."""
    from lab.lake import scan_filtered

    so = tuple(sorted(storage_options.items())) if storage_options else None
    src = None if version < 0 else _delta_at(uri, version, so)
    return scan_filtered(table, src, venue=venue, symbol=symbol, start=start, end=end, tail=False)


@functools.lru_cache(maxsize=64)
def _delta_at(uri: str, version: int, so: tuple[tuple[str, str], ...] | None) -> Any:
    """``DeltaTable(uri, version)``, opened once per process: a version never changes, and
    replaying its log per task was most of a small task's time (the tasks of one job, or of
    jobs one after the other, on this process or on one Ray worker, share it)."""
    from deltalake import DeltaTable

    return DeltaTable(uri, version=version, storage_options=dict(so) if so else None)


# -- leases: vacuum keeps what running jobs read ----------------------------------------------
LEASE_DIR = "_leases"


def _lease_io(lake: Any) -> tuple[Callable[[str, bytes], None], Callable[[], list[bytes]], Callable[[str], None]]:
    """put(name, data), read_all(), delete(name) for ``<lake root>/_leases/`` (a directory or an S3 prefix)."""
    if getattr(lake, "remote", False):
        from obstore.store import from_url

        from lab.objectstore import _obstore_config

        cfg, client = _obstore_config(lake.storage_options)
        store = from_url(f"{lake.root}/{LEASE_DIR}", config=cfg, client_options=client)

        def put(name: str, data: bytes) -> None:
            store.put(name, data)

        def read_all() -> list[bytes]:
            out = []
            for batch in store.list():
                for meta in batch:
                    try:
                        out.append(bytes(store.get(meta["path"]).bytes()))
                    except FileNotFoundError:  # released meanwhile
                        pass
            return out

        def delete(name: str) -> None:
            store.delete(name)
        return put, read_all, delete

    d = Path(lake.root) / LEASE_DIR

    def put_local(name: str, data: bytes) -> None:
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, d / name)

    def read_local() -> list[bytes]:
        out = []
        for f in sorted(d.glob("*.json")) if d.is_dir() else []:
            try:
                out.append(f.read_bytes())
            except FileNotFoundError:
                pass
        return out

    def delete_local(name: str) -> None:
        (d / name).unlink(missing_ok=True)
    return put_local, read_local, delete_local


class lease:  # noqa: N801 - used as a context manager, like open()
    """Hold the table versions a job reads: ``lab maintain``'s vacuum keeps their files.

    Writes ``<lake>/_leases/<id>.json`` (``{"tables": {table: version}, "expires": iso}``)
    on enter and removes it on exit. While a lease is live, :meth:`lab.lake.Lake.maintain`
    vacuums ``table`` only with a retention longer than the age of the oldest leased
    version, and keeps the log entries (no ``cleanup_metadata``), so a pinned task that
    starts hours later still finds every file and log entry of its version. A lease
    left by a crashed job stops counting at ``expires`` (``ttl``, default 24 h).
    """

    def __init__(self, lake: Any, versions: dict[str, int], ttl: dt.timedelta = dt.timedelta(hours=24)) -> None:
        import uuid

        self.lake = lake
        self.versions = {t: v for t, v in versions.items() if v >= 0}
        self.ttl = ttl
        self.name = f"{uuid.uuid4().hex}.json"

    def __enter__(self) -> lease:
        if self.versions:
            put, _, _ = _lease_io(self.lake)
            exp = dt.datetime.now(dt.timezone.utc) + self.ttl
            put(self.name, json.dumps({"tables": self.versions, "expires": exp.isoformat(),
                                       "pid": os.getpid()}).encode())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.versions:
            _, _, delete = _lease_io(self.lake)
            delete(self.name)


def leased_versions(lake: Any, table: str) -> list[int]:
    """Versions of ``table`` held by live (unexpired) leases."""
    _, read_all, _ = _lease_io(lake)
    now = dt.datetime.now(dt.timezone.utc)
    out = []
    for raw in read_all():
        try:
            doc = json.loads(raw)
            if dt.datetime.fromisoformat(doc["expires"]) > now and table in doc["tables"]:
                out.append(int(doc["tables"][table]))
        except (ValueError, KeyError, TypeError):
            continue  # a torn or foreign file: not a lease
    return out


def lease_hours(lake: Any, table: str) -> int | None:
    """Vacuum retention (whole hours) that keeps every leased version of ``table`` readable;
    ``None`` when no live lease holds it. Age of the oldest leased version's commit, plus one hour."""
    held = leased_versions(lake, table)
    if not held:
        return None
    t = lake.delta(table)
    if t is None:
        return None
    oldest = min(held)
    stamps = [h.get("timestamp") for h in t.history() if h.get("version") == oldest]
    if not stamps or stamps[0] is None:
        return 24 * 365  # that version's entry is gone from the history: keep everything
    age_s = max(0.0, time.time() - stamps[0] / 1000)
    return int(-(-age_s // 3600)) + 1


@dataclass
class JobResult:
    """What a distributed job gave back: the table, the versions it read, how it went."""

    frame: pl.DataFrame
    versions: dict[str, int]
    progress: Progress
    failures: list[tuple[Any, str]] = field(default_factory=list)  # (task key, error)
    executor: str = "local"


def _day_task(fn: Callable[..., Any], specs: list[tuple[str, str, int, dict[str, str] | None]],
              filters: dict[str, Any], on: str | None, lo: dt.datetime, t0: dt.datetime, t1: dt.datetime,
              warmup: bool) -> pl.DataFrame | None:
    lfs = []
    for table, uri, version, so in specs:
        if on is None:
            lfs.append(read_pinned(table, uri, version, so, start=lo, end=t1, **filters))
        else:  # cut on another time column (e.g. ts_local): filter it here, pushed down by the scan
            lf = read_pinned(table, uri, version, so, **filters)
            lfs.append(lf.filter(pl.col(on) >= lo, pl.col(on) < t1))
    res = fn(*lfs, day_start=t0) if warmup else fn(*lfs)
    if isinstance(res, pl.LazyFrame):
        res = res.collect()
    if not isinstance(res, pl.DataFrame):
        raise TypeError(f"map_days: fn must return a polars DataFrame or LazyFrame, got {type(res).__name__}")
    return res


def as_utc(v: dt.datetime | dt.date | str) -> dt.datetime:
    """A date, ISO string or datetime as an aware UTC datetime (naive = UTC)."""
    if isinstance(v, str):
        v = dt.datetime.fromisoformat(v)
    elif not isinstance(v, dt.datetime):
        v = dt.datetime(v.year, v.month, v.day)
    return v.replace(tzinfo=dt.timezone.utc) if v.tzinfo is None else v.astimezone(dt.timezone.utc)


def day_splits(t0: dt.datetime, t1: dt.datetime) -> list[tuple[dt.date, dt.datetime, dt.datetime]]:
    """UTC days overlapping ``[t0, t1)``: ``(date, slice start, slice end)``, clipped to the range."""
    out = []
    d = t0.date()
    while True:
        lo = dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc)
        hi = lo + dt.timedelta(days=1)
        if lo >= t1:
            break
        out.append((d, max(lo, t0), min(hi, t1)))
        d += dt.timedelta(days=1)
    return out


def spans_days(start: dt.datetime | dt.date | str, end: dt.datetime | dt.date | str) -> bool:
    """True when ``[start, end)`` touches more than one UTC day (callers then go through
    :func:`map_days`; a one-day call runs in one pass, with no job around it).

    >>> spans_days("2026-11-20", "2026-11-21"), spans_days("2026-11-20T12:00", "2026-11-21T00:00:01")
    (False, True)
    """
    return len(day_splits(as_utc(start), as_utc(end))) > 1


def cluster_configured(cluster: Executor | str | None = None) -> bool:
    """True when ``cluster`` resolves to something other than this process (see :func:`executor`)."""
    return not isinstance(executor(cluster), LocalExecutor)


def map_days(
    fn: Callable[..., pl.DataFrame | pl.LazyFrame],
    table: str | Sequence[str],
    start: dt.datetime | dt.date | str,
    end: dt.datetime | dt.date | str,
    *,
    venues: str | Iterable[str] | None = None,
    symbols: str | Iterable[str] | None = None,
    version: int | dict[str, int] | None = None,
    cluster: Executor | str | None = None,
    lake: Any = None,
    progress: ProgressFn | None = None,
    by: Sequence[str] = ("venue", "symbol"),
    on: str | None = None,
    warmup: dt.timedelta | None = None,
) -> JobResult:
    """Run ``fn`` on each (venue, symbol, UTC day) slice of ``table`` in ``[start, end)``.

    ``fn`` gets a LazyFrame of one slice (the table's columns, filtered on its
    time column) and returns a DataFrame or LazyFrame; the results are
    concatenated in (venue, symbol, day) order with ``venue``, ``symbol`` and
    ``day`` columns added in front when ``fn`` did not keep them. The table is
    read at ``version`` (default: its version now, pinned before any task
    starts), recorded in :attr:`JobResult.versions`. ``venues``/``symbols``
    default to those present in the range. ``cluster``: see :func:`executor`
    (local unless a Ray cluster is configured). A slice whose ``fn`` raised is
    listed in :attr:`JobResult.failures`; the others still count.

    Several tables (``table=("trades", "quotes")``): ``fn`` gets one LazyFrame
    per table, each cut to the same slice, each table pinned (``version``: a
    dict by table). ``by``: the columns a task is split on besides the day
    (``()``: one task per day with every venue and symbol, e.g. a cross-venue
    scan). ``on``: the time column days are cut on (default: each table's own,
    ``ts_exchange`` for market data). ``warmup``: each slice also holds the rows
    of the ``warmup`` before its day (state a one-pass computation would carry
    over midnight), and ``fn`` is called with ``day_start=`` the day's first
    instant so it can drop its output before it.
    """
    lk = _lake(lake)
    t0, t1 = as_utc(start), as_utc(end)
    if t1 <= t0:
        raise ConfigError(f"map_days: end {t1.isoformat()} must be after start {t0.isoformat()}")
    tables = [table] if isinstance(table, str) else list(table)
    asked = version if isinstance(version, dict) else {tables[0]: version} if version is not None else {}
    specs, pins = [], {}
    for t in tables:
        uri, so = _location(lk, t)
        current = lk.version(t)
        v = int(asked[t]) if asked.get(t) is not None else current
        if v > current:
            raise DataError(f"map_days: {t} has no version {v} (latest is {current})")
        specs.append((t, uri, v, so))
        pins[t] = v
    by = list(by)
    if by:
        found: set[tuple] = set()
        for t, uri, v, so in specs:
            lf = read_pinned(t, uri, v, so, venue=venues, symbol=symbols, start=None if on else t0,
                             end=None if on else t1)
            if on:
                lf = lf.filter(pl.col(on) >= t0, pl.col(on) < t1)
            found |= set(lf.select(by).unique().collect().rows())
        groups = sorted(found, key=lambda g: tuple("" if x is None else str(x) for x in g))
    else:
        groups = [()]
    base = {"venue": venues, "symbol": symbols}
    keys = [(g, d, lo, hi) for g in groups for d, lo, hi in day_splits(t0, t1)]
    ex = executor(cluster)
    track = _Tracker(progress)
    with lease(lk, pins):
        outs = ex.run(_day_task, [(fn, specs, {**base, **dict(zip(by, g, strict=True))}, on,
                                   max(lo - warmup, t0) if warmup is not None else lo, lo, hi, warmup is not None)
                                  for g, _, lo, hi in keys], progress=track)
    frames, failures = [], []
    pr = Progress(len(keys), retried=track.retried)
    for (g, d, _, _), res in zip(keys, outs, strict=True):
        if isinstance(res, TaskFailure):
            failures.append(((*g, d), res.error))
            pr.failed += 1
            continue
        pr.done += 1
        if res.height == 0:
            continue
        front = [pl.lit(x).alias(c) for c, x in (*zip(by, g, strict=True), ("day", d)) if c not in res.columns]
        frames.append(res.select(*front, pl.all()) if front else res)
    frame = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    return JobResult(frame, pins, pr, failures, ex.name)



# -- parameter sweeps ---------------------------------------------------------------------------
def parse_grid(spec: str) -> list[dict[str, float]]:
    """``"a=1:3:1,b=0:1:0.5"`` -> the cartesian grid, ends inclusive; ``a=1|2|5`` lists values.

    >>> parse_grid("a=1:3:1,b=0:1:0.5")[:4]
    [{'a': 1.0, 'b': 0.0}, {'a': 1.0, 'b': 0.5}, {'a': 1.0, 'b': 1.0}, {'a': 2.0, 'b': 0.0}]
    >>> len(parse_grid("a=1:20:1,b=0:1:0.1"))
    220
    """
    import itertools

    axes: dict[str, list[float]] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, rng = part.partition("=")
        name = name.strip()
        try:
            if "|" in rng or ":" not in rng:
                vals = [float(x) for x in rng.split("|")]
            else:
                lo, hi, step = (float(x) for x in rng.split(":"))
                if step <= 0 or hi < lo:
                    raise ValueError
                n = int((hi - lo) / step + 1e-9) + 1
                vals = [round(lo + k * step, 12) for k in range(n)]
        except ValueError:
            raise ConfigError(f"--sweep: {part!r} is not NAME=START:STOP:STEP (inclusive) or NAME=V1|V2|...") from None
        if not name or name in axes:
            raise ConfigError(f"--sweep: bad or repeated parameter name in {part!r}")
        axes[name] = vals
    if not axes:
        raise ConfigError("--sweep: no parameters given")
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]


def _chunk_task(fn: Callable[..., dict[str, Any]], chunk: list[dict[str, Any]], extra: tuple) -> list[dict[str, Any]]:
    return [fn(p, *extra) for p in chunk]


def sweep(
    fn: Callable[..., dict[str, Any]],
    params: Sequence[dict[str, Any]],
    *,
    splits: Sequence[tuple] = ((),),
    chunk_size: int = 50,
    cluster: Executor | str | None = None,
    progress: ProgressFn | None = None,
) -> JobResult:
    """Run ``fn(params, *split)`` for every parameter set and every split; one row each.

    Tasks are (chunk of ``chunk_size`` parameter sets) x (split), e.g. one split
    per day, so a task amortises its data load over many parameter sets. Each
    row holds the parameters, the split's index (``split``) and the dict ``fn``
    returned. A chunk that raised is listed in :attr:`JobResult.failures`.
    """
    chunks = [list(params[i:i + chunk_size]) for i in range(0, len(params), max(1, chunk_size))]
    keys = [(ci, si) for si in range(len(splits)) for ci in range(len(chunks))]
    ex = executor(cluster)
    track = _Tracker(progress)
    outs = ex.run(_chunk_task, [(fn, chunks[ci], tuple(splits[si])) for ci, si in keys], progress=track)
    rows: list[dict[str, Any]] = []
    failures = []
    pr = Progress(len(keys), retried=track.retried)
    for (ci, si), res in zip(keys, outs, strict=True):
        if isinstance(res, TaskFailure):
            failures.append(((ci, si), res.error))
            pr.failed += 1
            continue
        pr.done += 1
        rows.extend({**p, "split": si, **r} for p, r in zip(chunks[ci], res, strict=True))
    return JobResult(pl.DataFrame(rows) if rows else pl.DataFrame(), {}, pr, failures, ex.name)


# -- long backtests: one day in memory at a time -----------------------------------------------
def backtest_days(strategy: Any, start: dt.datetime | dt.date | str, end: dt.datetime | dt.date | str, *,
                  config: Any = None, lake: Any = None, use_quotes: bool = False,
                  versions: dict[str, int] | None = None, progress: Callable[[dt.date, int], None] | None = None,
                  out: str | Path | None = None, keep_orders: bool = False,
                  ticks: dict[tuple[str, str], float] | None = None):
    """Backtest ``strategy`` over ``[start, end)`` reading one UTC day of events at a time.

    One engine (books, resting orders, requests and acks in flight, positions,
    timers) carries over from day to day (:class:`lab.backtest.days.PieceRunner`):
    only one day's events are in memory, and the fill log, order-event log and
    equity samples are streamed to Parquet parts under ``out`` (default: a
    temporary directory) as they fill up, so memory stays bounded however many
    days. The fills, orders and equity equal one :func:`lab.backtest.run_backtest`
    over the whole span, day boundaries included (an order sent before midnight
    and acknowledged after it, a row received after midnight: see the runner).
    Days are split on exchange time; each instrument's tick is inferred over the
    whole span first (``ticks`` overrides it), as one run would. Tables are read at ``versions`` (default:
    pinned now), under a :class:`lease`. Returns a :class:`lab.backtest.Result`
    whose fills and equity are in memory; the order-event log stays on disk
    (``result.orders_file``, ``result.scan_orders()``) unless ``keep_orders``.
    ``progress(day, events)`` after each day (the rows that day added).
    """
    from lab.backtest import build_events, quotes_as_book
    from lab.backtest.days import PieceRunner, infer_ticks

    lk = _lake(lake)
    t0, t1 = as_utc(start), as_utc(end)
    book_table = "quotes" if use_quotes else "book_updates"
    pins = versions or pin_versions((book_table, "trades"), lk)
    keys = strategy.instruments()
    venues, symbols = sorted({v for v, _ in keys}), sorted({s for _, s in keys})
    runner = PieceRunner(strategy, config, out=out, keep_orders=keep_orders)

    def rd(t: str, lo: dt.datetime, hi: dt.datetime) -> pl.LazyFrame:
        uri, so = _location(lk, t)
        return read_pinned(t, uri, pins[t], so, venue=venues, symbol=symbols, start=lo, end=hi)

    with lease(lk, pins):
        # one tick per instrument for the whole span, as one run infers it (a streaming pass)
        book_all = quotes_as_book(rd(book_table, t0, t1)) if use_quotes else rd(book_table, t0, t1)
        ticks = {**infer_ticks(book_all, rd("trades", t0, t1)), **(ticks or {})}
        for d, lo, hi in day_splits(t0, t1):
            book = quotes_as_book(rd(book_table, lo, hi)) if use_quotes else rd(book_table, lo, hi)
            ev = build_events(book, rd("trades", lo, hi), ticks=ticks, instruments=runner.instruments)
            if len(ev) and runner.instruments is None:
                missing = [k for k in keys if k not in {(i.venue, i.symbol) for i in ev.instruments}]
                if missing:
                    raise DataError(f"backtest_days: no data for {missing} on {d} (the first day with data)")
            n = runner.feed(ev, int(hi.timestamp() * 1_000_000))
            if progress and n:
                progress(d, n)
            del ev, book
        if runner.instruments is None:
            raise DataError(f"backtest_days: no events for {keys} between {t0.isoformat()} and {t1.isoformat()}")
        return runner.result()
