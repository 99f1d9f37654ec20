"""Read-only data access for the dashboards: where the lake is, cached reads.

Every page reads the lake through :func:`lab.scan` (Polars) or
:func:`lab.connect` (DuckDB) and nothing else. User choices (a symbol, a
venue, a window) reach DuckDB only as bound parameters (``?``), never as SQL
text. Results are cached for a short TTL keyed by the lake path, so a page
refreshing every second shares one read between browser sessions, and a
new commit by a recorder is visible within the TTL.

The lake is ``$LAB_LAKE`` when set, else ``$LAB_DATA/lake`` (default
``./data/lake``), read at every call so tests can point it at a temp lake.

>>> import os, tempfile
>>> os.environ["LAB_LAKE"] = tempfile.mkdtemp()
>>> lake_root() == os.environ["LAB_LAKE"]
True
>>> latest_ts("quotes") is None          # an empty lake has no data yet
True
>>> del os.environ["LAB_LAKE"]
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import polars as pl
import streamlit as st

import lab
from lab.errors import DataError
from lab.lake import WRITER_REOPEN_EVERY, Lake, data_dir, scan_filtered
from lab.recorder import read_status
from lab.schema import table_spec
from lab.venues import USD_LIKE
from lab.widgets import latest_time, market_of

if TYPE_CHECKING:  # tables are opened by lab.lake (Lake.delta), never here
    from deltalake import DeltaTable

__all__ = [
    "UTC",
    "data_dir",
    "lake_root",
    "lake",
    "now",
    "latest_ts",
    "window_end",
    "markets",
    "market_symbols",
    "venue_health",
    "recorder_status",
    "sql",
    "scan_window",
    "retry_read",
    "venues_of",
    "arbitrage_config_path",
]

UTC = dt.timezone.utc
QUOTE_ALIASES = USD_LIKE  # one quote asset across venues (lab.venues)


def lake_root() -> str:
    """The lake directory: ``$LAB_LAKE``, else ``$LAB_DATA/lake``."""
    env = os.environ.get("LAB_LAKE")
    return env if env else str(data_dir() / "lake")


def lake() -> Lake:
    return Lake(lake_root())


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


def retry_read(fn, *args: Any, attempts: int = 3, **kwargs: Any) -> Any:
    """Call a read, retrying a couple of times on an I/O race with the writer.

    A reader can plan a Delta snapshot just before compaction replaces its
    files; retrying reads the new snapshot. Any other error is raised.
    """
    for i in range(attempts):
        try:
            return fn(*args, **kwargs)
        except (OSError, pl.exceptions.ComputeError) as e:  # file vanished mid-read
            if i == attempts - 1:
                raise
            time.sleep(0.05 * (i + 1))
            last = e  # noqa: F841
    raise AssertionError("unreachable")


# -- open tables ----------------------------------------------------------------
# One DeltaTable per (lake, table) for the whole server process, brought up to
# the latest commit with ``update_incremental`` (reads only the new log
# entries: ~1 ms, where opening the table afresh reads the whole log since the
# last checkpoint: ~20 ms and growing between compactions). A lock per table
# keeps one thread from updating it while another plans a scan on it.
_OPEN: dict[tuple[str, str], tuple[DeltaTable, threading.Lock, list[float]]] = {}
_OPEN_LOCK = threading.Lock()
_UPDATE_EVERY_S = 0.2


def _open(root: str, table: str) -> tuple[DeltaTable, threading.Lock, list[float]] | None:
    key = (str(root), table)
    with _OPEN_LOCK:
        entry = _OPEN.get(key)
        if entry is None:
            t = Lake(root).delta(table)
            if t is None:
                return None
            entry = _OPEN[key] = (t, threading.Lock(), [time.monotonic(), t.version()])
    return entry


def _with_table(root: str, table: str, fn: Callable[[DeltaTable | None], Any]) -> Any:
    """Run ``fn`` on the table's latest snapshot (``None`` if the table does not exist yet).

    After :data:`lab.lake.WRITER_REOPEN_EVERY` commits applied incrementally the table is
    opened afresh (from its newest checkpoint): delta-rs' incremental snapshot keeps every
    commit it applied (the same growth that made writers re-open, ~50 MiB per 1,000 small
    commits), and a server with the live pages open applies a recorder's commits all day.
    """
    entry = _open(root, table)
    if entry is None:
        return fn(None)
    t, lock, stamp = entry
    with lock:
        if time.monotonic() - stamp[0] > _UPDATE_EVERY_S:
            t.update_incremental()
            stamp[0] = time.monotonic()
            if t.version() - stamp[1] >= WRITER_REOPEN_EVERY:
                fresh = Lake(root).delta(table)
                if fresh is not None:
                    t = fresh
                    with _OPEN_LOCK:
                        _OPEN[(str(root), table)] = (t, lock, [stamp[0], t.version()])
        return fn(t)


# -- time anchors -------------------------------------------------------------
def _max_stat(root: str, table: str, column: str) -> dt.datetime | None:
    """:func:`lab.widgets.latest_time` on the process's open table (file statistics, no scan)."""
    return retry_read(_with_table, root, table,
                      lambda t: None if t is None else latest_time(Lake(root), table, column, delta=t))


@st.cache_data(ttl=1, show_spinner=False, max_entries=64)
def _latest_ts_cached(root: str, table: str, column: str) -> dt.datetime | None:
    return _max_stat(root, table, column)


def latest_ts(table: str, column: str | None = None) -> dt.datetime | None:
    """Newest time in ``table`` from the Delta file statistics (no scan)."""
    col = column or table_spec(table).time_column
    return _latest_ts_cached(lake_root(), table, col)


def window_end(*tables: str, fresh_s: float = 120.0) -> dt.datetime:
    """End of a "last N minutes" window: now while data is fresh, else the newest row.

    A live recording shows the last minute up to now; a historical lake
    (a simulated day, yesterday's recording) shows its own last minute.
    The newest row over all ``tables`` counts; an empty lake gives now.
    """
    t = now()
    lasts = [x for x in (latest_ts(tb) for tb in tables or ("quotes",)) if x is not None]
    if not lasts:
        return t
    last = max(lasts)
    return t if (t - last).total_seconds() <= fresh_s else last


# -- listings -----------------------------------------------------------------

@st.cache_data(ttl=30, show_spinner=False, max_entries=32)
def _recent_symbols(root: str, table: str) -> pl.DataFrame:
    end = _max_stat(root, table, table_spec(table).time_column)
    if end is None:
        return pl.DataFrame(schema={"venue": pl.String, "symbol": pl.String})
    lf = lab.scan(table, lake=root, start=end - dt.timedelta(minutes=10))
    return retry_read(lambda: lf.select("venue", "symbol").unique().sort("venue", "symbol").collect())


def markets(table: str = "quotes") -> list[str]:
    """Markets seen in the last 10 minutes of data; USD/USDT/USDC quotes merge.

    ``BTC-USDT`` on binance and ``BTC-USD`` on coinbase are both ``BTC-USD``;
    a cross pair such as ``ETH-BTC`` stays itself.
    """
    syms = _recent_symbols(lake_root(), table)["symbol"].to_list()
    out = sorted({market_of(s) for s in syms})
    # Majors first: BTC, ETH, then the rest alphabetically.
    rank = {"BTC-USD": 0, "ETH-USD": 1}
    return sorted(out, key=lambda m: (rank.get(m, 2), m))


def market_symbols(market: str) -> list[str]:
    """Venue symbols of a market (``BTC-USD`` -> ``BTC-USD``, ``BTC-USDT``, ``BTC-USDC``).

    >>> market_symbols("ETH-USD")
    ['ETH-USD', 'ETH-USDT', 'ETH-USDC']
    >>> market_symbols("ETH-BTC")
    ['ETH-BTC']
    """
    base, _, quote = market.partition("-")
    if quote in QUOTE_ALIASES:
        return [f"{base}-{q}" for q in QUOTE_ALIASES]
    return [market]


def venues_of(market: str, table: str = "quotes") -> list[str]:
    """Venues with rows of ``market`` in the last 10 minutes of ``table`` (the venue pickers' options)."""
    df = _recent_symbols(lake_root(), table)
    syms = set(market_symbols(market))
    return sorted({v for v, s in df.iter_rows() if s in syms})


def arbitrage_config_path() -> str | None:
    """The live detector's config: ``$LAB_ARBITRAGE_CONFIG`` (``lab demo`` sets it to the file its
    detector runs with), else the project's ``config/arbitrage.toml``, else ``None`` (defaults)."""
    env = os.environ.get("LAB_ARBITRAGE_CONFIG")
    if env:
        return env
    from lab.apps._project import project_dir
    from lab.errors import ConfigError

    try:
        p = project_dir() / "config" / "arbitrage.toml"
    except ConfigError:
        return None
    return str(p) if p.exists() else None


# -- reads --------------------------------------------------------------------
def scan_window(
    table: str,
    *,
    start: dt.datetime,
    end: dt.datetime | None = None,
    symbols: Sequence[str] | None = None,
    venues: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Rows of ``table`` in ``[start, end)`` for some symbols/venues, collected.

    Same filters as :func:`lab.scan` (pushed down to file statistics), on the
    process's open table (see :func:`_with_table`).
    """
    def read(t: DeltaTable | None) -> pl.DataFrame:
        lf = scan_filtered(table, t, start=start, end=end, symbol=symbols, venue=venues)
        return (lf.select(columns) if columns is not None else lf).collect()

    return retry_read(_with_table, lake_root(), table, read)


@st.cache_data(ttl=5, show_spinner=False, max_entries=32)
def _sql_cached(root: str, query: str, params: tuple) -> pl.DataFrame:
    def run() -> pl.DataFrame:
        con = lab.connect(root)
        try:
            return pl.from_arrow(con.sql(query, params=list(params)).to_arrow_table())
        finally:
            con.close()
    return retry_read(run)


def sql(query: str, params: Iterable[Any] = ()) -> pl.DataFrame:
    """Run a parameterised query on :func:`lab.connect` (cached 5 s).

    ``query`` is fixed text written in the page; every user value goes in
    ``params`` and binds to a ``?``.
    """
    return _sql_cached(lake_root(), query, tuple(params))


# -- health -------------------------------------------------------------------
_HEALTH_SCHEMA = {"venue": pl.String, "last_local": pl.Datetime("us", "UTC"), "rows_last_min": pl.UInt32}


def _last_rows(root: str, since: dt.datetime) -> pl.DataFrame:
    """Per venue: newest receive time and rows received since ``since`` (quotes + trades)."""
    frames = []
    for table in ("quotes", "trades"):
        def read(t: DeltaTable | None, table: str = table) -> pl.DataFrame:
            return (scan_filtered(table, t, start=since).group_by("venue")
                    .agg(pl.col("ts_local").max().alias("last_local"), pl.len().cast(pl.UInt32).alias("rows_last_min"))
                    .collect())
        frames.append(retry_read(_with_table, root, table, read))
    df = pl.concat([f.cast(_HEALTH_SCHEMA) for f in frames])
    return df.group_by("venue").agg(pl.col("last_local").max(), pl.col("rows_last_min").sum())


@st.cache_data(ttl=30, show_spinner=False, max_entries=8)
def _venues_seen(root: str, end_key: str) -> pl.DataFrame:
    """Every venue of the last 10 minutes of data (the slow, rarely refreshed part of the health)."""
    end = dt.datetime.fromisoformat(end_key)
    return _last_rows(root, end - dt.timedelta(minutes=10)).select("venue", "last_local")


def _health(root: str, t_now: dt.datetime, stale_s: float) -> pl.DataFrame:
    end = _max_stat(root, "quotes", "ts_exchange")
    if end is None:
        return pl.DataFrame(schema=_HEALTH_SCHEMA | {"age_s": pl.Float64, "stale": pl.Boolean})
    recent = _last_rows(root, end - dt.timedelta(seconds=60))
    seen = _venues_seen(root, end.replace(second=0, microsecond=0).isoformat())
    missing = seen.filter(~pl.col("venue").is_in(recent["venue"].implode()))
    df = pl.concat([recent, missing.with_columns(rows_last_min=pl.lit(0, pl.UInt32))], how="diagonal_relaxed")
    return (
        df.with_columns(age_s=(pl.lit(t_now) - pl.col("last_local")).dt.total_microseconds() / 1e6)
        .with_columns(stale=pl.col("age_s") > stale_s)
        .sort("venue")
    )


@st.cache_data(ttl=1, show_spinner=False, max_entries=8)
def _health_cached(root: str, bucket: int, stale_s: float) -> pl.DataFrame:
    return _health(root, now(), stale_s)


def venue_health(stale_s: float = 5.0) -> pl.DataFrame:
    """Per venue: newest receive time, its age in seconds, rows in the last minute, stale flag.

    A venue is stale when its newest ``quotes``/``trades`` row was received
    more than ``stale_s`` seconds ago (a silent socket, a dead recorder).
    Venues seen in the last 10 minutes of data but not in its last minute
    are listed (stale) too.
    """
    return _health_cached(lake_root(), int(time.time() / 2), stale_s)  # recomputed every 2 s at most


def recorder_status() -> list[dict[str, Any]]:
    """One row per recorder and venue from the status files ``$LAB_DATA/run/recorder-*.json``.

    Columns: recorder, venue, connected, msgs_per_s, gaps, resyncs, reconnects,
    rejected, checksum_failures, stale, last_error, updated_age_s (how long
    ago the recorder last wrote its status: a dead recorder stops updating).
    Unreadable files (a write in flight) are skipped.
    """
    run = data_dir() / "run"
    out: list[dict[str, Any]] = []
    t = now()
    for f in sorted(run.glob("recorder-*.json")) if run.is_dir() else []:
        try:
            d = read_status(f)
        except (OSError, DataError):
            continue
        age = d.age_s(t)
        if age is None:
            continue
        for venue, v in d.venues.items():
            out.append({
                "recorder": d.name or f.stem, "venue": venue,
                "connected": v.connected, "msgs_per_s": v.msgs_per_s,
                "gaps": v.gaps, "resyncs": v.resyncs, "reconnects": v.reconnects,
                "rejected": v.rejected, "checksum_failures": v.checksum_failures,
                "stale": v.stale, "last_error": v.last_error or "",
                "updated_age_s": round(age, 1),
            })
    return out
