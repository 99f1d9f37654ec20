"""DuckDB over the lake: every table is a view with its own name.

A damaged table (unreadable or empty commit, missing, truncated or non-Parquet
file: see :meth:`lab.lake.Lake.inspect`) does not stop the others: its view
still exists, with the table's columns, but any query that reads it fails with
``lake table 'NAME' is damaged (...): run `lab doctor```. :func:`connect` warns
a :class:`~lab.lake.LakeWarning` naming each damaged table, file and cause, and
:func:`damaged` returns them.
"""

from __future__ import annotations

import glob
import os
import warnings
import weakref
from pathlib import Path

import duckdb
import polars as pl
from deltalake import DeltaTable

from lab.lake import Damage, Lake, LakeWarning, local_dir, snapshot_files
from lab.schema import TABLES, table_spec
from lab.tail import uncommitted

__all__ = ["connect", "refresh", "damaged", "duckdb_path", "EXTRA_VIEWS", "MACROS", "LakeWarning"]

# Column aliases users paste from the seed document: ``timestamp`` and
# ``volume`` on trades; the arbitrage query's names on arbitrage_signals.
_ALIASES: dict[str, str] = {
    "trades": "*, ts_exchange AS timestamp, qty AS volume",
    "quotes": "*, ts_exchange AS timestamp",
    "arbitrage_signals": (
        "*, ts AS timestamp, buy_venue AS exchange_a, sell_venue AS exchange_b, "
        "net_edge_bps / 100.0 AS profit_pct"
    ),
}

# Derived views, defined in SQL so any client sees the same numbers.
# Bars: the same columns and numbers as ``lab.bars`` (trades ordered
# by ts_exchange then trade_id; buckets aligned on the Unix epoch like Polars).
_BAR_AGGS = """
    first(price ORDER BY ts_exchange, trade_id) AS open, max(price) AS high,
    min(price) AS low, last(price ORDER BY ts_exchange, trade_id) AS close,
    sum(qty) AS volume, sum(price * qty) AS notional, sum(price * qty) / sum(qty) AS vwap,
    count(*) AS trades,
    coalesce(sum(qty) FILTER (WHERE side = 'buy'), 0.0) AS buy_volume,
    coalesce(sum(qty) FILTER (WHERE side = 'sell'), 0.0) AS sell_volume
"""
_EPOCH = "TIMESTAMPTZ '1970-01-01 00:00:00+00'"

EXTRA_VIEWS: dict[str, str] = {
    "ohlcv_1s": f"""
        SELECT venue, symbol, time_bucket(INTERVAL '1 second', ts_exchange, {_EPOCH}) AS bucket,
               {_BAR_AGGS}
        FROM trades GROUP BY venue, symbol, bucket
    """,
}

# Table macros, e.g. ``SELECT * FROM ohlcv(INTERVAL 1 MINUTE)``,
# ``ohlcv_rolling(INTERVAL 1 SECOND, INTERVAL 5 SECOND)``, ``tick_bars(100)``,
# ``volume_bars(10.0)``, ``dollar_bars(1e6)``: see lab.bars for the semantics.
MACROS: dict[str, str] = {
    "ohlcv": f"""(every) AS TABLE
        SELECT venue, symbol, time_bucket(CAST(every AS INTERVAL), ts_exchange, {_EPOCH}) AS bucket,
               {_BAR_AGGS}
        FROM trades GROUP BY venue, symbol, bucket ORDER BY venue, symbol, bucket
    """,
    "ohlcv_rolling": f"""(every, period) AS TABLE
        WITH t AS (
            SELECT *, time_bucket(CAST(every AS INTERVAL), ts_exchange, {_EPOCH}) AS b0
            FROM trades),
        f AS (SELECT *, min(b0) OVER (PARTITION BY venue, symbol) AS first_b FROM t),
        w AS (
            SELECT f.*, b0 - CAST(k AS BIGINT) * CAST(every AS INTERVAL) AS bucket
            FROM f, range(0, CAST(ceil(epoch(CAST(period AS INTERVAL))
                                       / epoch(CAST(every AS INTERVAL))) AS BIGINT)) r(k))
        SELECT venue, symbol, bucket, {_BAR_AGGS}
        FROM w
        WHERE ts_exchange < bucket + CAST(period AS INTERVAL) AND bucket >= first_b
        GROUP BY venue, symbol, bucket ORDER BY venue, symbol, bucket
    """,
    "tick_bars": f"""(n) AS TABLE
        SELECT venue, symbol, bar, min(ts_exchange) AS start, max(ts_exchange) AS "end", {_BAR_AGGS}
        FROM (SELECT *, (row_number() OVER (PARTITION BY venue, symbol
                                            ORDER BY ts_exchange, trade_id) - 1) // n AS bar
              FROM trades)
        GROUP BY venue, symbol, bar ORDER BY venue, symbol, bar
    """,
    "volume_bars": f"""(v) AS TABLE
        SELECT venue, symbol, bar, min(ts_exchange) AS start, max(ts_exchange) AS "end", {_BAR_AGGS}
        FROM (SELECT *, CAST(floor((sum(qty) OVER (PARTITION BY venue, symbol
                  ORDER BY ts_exchange, trade_id ROWS UNBOUNDED PRECEDING) - qty) / v) AS BIGINT) AS bar
              FROM trades)
        GROUP BY venue, symbol, bar ORDER BY venue, symbol, bar
    """,
    "dollar_bars": f"""(d) AS TABLE
        SELECT venue, symbol, bar, min(ts_exchange) AS start, max(ts_exchange) AS "end", {_BAR_AGGS}
        FROM (SELECT *, CAST(floor((sum(price * qty) OVER (PARTITION BY venue, symbol
                  ORDER BY ts_exchange, trade_id ROWS UNBOUNDED PRECEDING) - price * qty) / d) AS BIGINT) AS bar
              FROM trades)
        GROUP BY venue, symbol, bar ORDER BY venue, symbol, bar
    """,
}


def duckdb_path(path: str | os.PathLike[str]) -> str:
    """``path`` as DuckDB's file readers (``read_parquet`` & co.) take it literally.

    DuckDB reads every path it is given, alone or in a list, as a glob pattern: ``*``, ``?``
    and ``[...]`` are wildcards. So ``/data/run*1/t/f.parquet`` also reads
    ``/data/run01/t/f.parquet``, and a lake under ``/data/lake[v2]`` reads the files of a copy
    in ``/data/lakev``. DuckDB has no switch to turn globbing off; its glob follows bash's
    bracket rules (a bracket holding one character matches that character), so each of the
    three is escaped as ``[*]``, ``[?]``, ``[[]`` - what :func:`glob.escape` does, for the same
    three characters. ``{``, ``}``, ``]``, ``'`` and spaces are no wildcards to DuckDB and are
    left alone (quote the result as any SQL string, or pass it as a parameter). A path
    without wildcards comes back unchanged, so DuckDB opens it without listing a folder;
    an escaped one costs DuckDB a listing of the folder holding the first wildcard, per file.
    The ``filename`` column of a read names the real file (unescaped).

    >>> duckdb_path("/data/lake[v2]/run*1/what?/part-0.parquet")
    '/data/lake[[]v2]/run[*]1/what[?]/part-0.parquet'
    >>> duckdb_path("/data/a{b,c}/it's/x]y/part-0.parquet")
    "/data/a{b,c}/it's/x]y/part-0.parquet"
    """
    return glob.escape(os.fspath(path))


def _source(name: str, t: DeltaTable | None) -> str:
    """SQL for the latest committed snapshot of one table.

    Delta's log names the snapshot's files; DuckDB's own Parquet reader scans
    them (filter and projection push-down, row-group pruning). Reading them
    through a pyarrow Dataset instead crashed the interpreter at exit after a
    LIMIT query cut a scan short (pyarrow scanner threads left running).
    Our tables are append-and-compact only (reader version 1: no deletion
    vectors, no column mapping), so the file list is the whole snapshot -
    plus the tail files a recorder wrote since its last commit (:mod:`lab.tail`).
    delta-rs names a local table's files percent-encoded (``my%20lake``, ``what%3F``):
    they are decoded to the real paths, then escaped for DuckDB's globbing (:func:`duckdb_path`).
    """
    files = [] if t is None else snapshot_files(t)
    local = None if t is None else local_dir(t)
    if local is not None:
        files = files + uncommitted(local, t)
    if not files:
        return _empty(name)
    quoted = ", ".join(_sql_str(duckdb_path(f)) for f in files)
    # a table that gained an optional column (trades' `source`, on the first backfill) has older
    # files without it: match columns by name (by position, DuckDB refused the whole table)
    by_name = ", union_by_name = true" if table_spec(name).optional else ""
    return f"read_parquet([{quoted}]{by_name})"


def _remote_source(con: duckdb.DuckDBPyConnection, name: str, t: DeltaTable | None) -> str:
    """An object-store table (``s3://``): DuckDB cannot install httpfs here, so the
    snapshot is registered as a pyarrow dataset (delta-rs' file list and credentials)."""
    if t is None or not t.file_uris():
        return _empty(name)
    con.register(f"__lake_{name}", t.to_pyarrow_dataset())
    return f'"__lake_{name}"'


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _damaged_source(name: str, damage: list[Damage]) -> str:
    """A relation with ``name``'s columns that raises, when read, an error naming the
    table, the first damaged file and ``lab doctor`` (so dependent views and macros
    still bind, and nothing reads a partial table as if it were whole)."""
    d = damage[0]
    more = f" and {len(damage) - 1} more problem(s)" if len(damage) > 1 else ""
    msg = (f"lake table {name!r} is damaged ({d.file}: {d.problem}{more}): "
           "run `lab doctor` to see it, `lab doctor --repair` to fix it")
    return f"(SELECT {_null_columns(name)} WHERE error({_sql_str(msg)}) IS NULL)"


_DUCK_TYPES = {pl.Int64: "BIGINT", pl.Int32: "INTEGER", pl.Float64: "DOUBLE", pl.String: "VARCHAR",
               pl.Boolean: "BOOLEAN", pl.Datetime: "TIMESTAMPTZ"}


def _empty(name: str) -> str:
    """An empty relation with ``name``'s canonical columns, in plain SQL (registering
    an empty Arrow table per missing table cost ~2.5 ms each on every connect)."""
    return f"(SELECT {_null_columns(name)} WHERE false)"


def _null_columns(name: str) -> str:
    return ", ".join(f'CAST(NULL AS {_DUCK_TYPES[type(d)]}) AS "{c}"'
                     for c, d in table_spec(name).columns.items())


def _bind(con: duckdb.DuckDBPyConnection, lake: Lake) -> list[Damage]:
    damage: list[Damage] = []
    for name in TABLES:
        cols = _ALIASES.get(name, "*")
        t, bad = lake.inspect(name)
        if bad:
            damage.extend(bad)
            src = _damaged_source(name, bad)
        elif getattr(lake, "remote", False):
            src = _remote_source(con, name, t)
        else:
            src = _source(name, t)
        con.execute(f'CREATE OR REPLACE VIEW "{name}" AS SELECT {cols} FROM {src}')
    for name, sql in EXTRA_VIEWS.items():
        con.execute(f'CREATE OR REPLACE VIEW "{name}" AS {sql}')
    for name, sql in MACROS.items():
        con.execute(f'CREATE OR REPLACE MACRO "{name}"{sql}')
    _DAMAGE[con] = damage
    if damage:
        tables = sorted({d.table for d in damage})
        warnings.warn(LakeWarning(
            f"lake {lake.root}: {len(tables)} damaged table(s) ({', '.join(tables)}); reading them fails, "
            "the other tables are open. " + "; ".join(str(d) for d in damage[:10])
            + (f"; ... {len(damage) - 10} more" if len(damage) > 10 else "")
            + ". Run `lab doctor`."), stacklevel=3)
    return damage


def connect(lake: Lake | str | None = None, *, token: str | None = None,
            tls_root_certs: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection where each lake table is a view.

    ``lake`` may also be a data-service URL (``grpc://host:50053``,
    ``grpc+tls://...``; ``token`` or ``$LAB_SERVICE_TOKEN``; a private CA in
    ``tls_root_certs`` or ``$LAB_SERVICE_CA``): see :func:`_remote`.

    A damaged table's view raises when read and a :class:`LakeWarning` names it
    (see the module docstring and :func:`damaged`). The views read the snapshot committed when ``connect`` (or
    :func:`refresh`) ran; call :func:`refresh` on a long-lived connection
    to see newer commits. The session time zone is UTC.

    >>> import tempfile
    >>> con = connect(tempfile.mkdtemp())
    >>> con.sql("select count(*) from trades").fetchall()
    [(0,)]
    """
    url = _remote(lake)
    if url is not None:
        from lab.service.client import RemoteConnection

        return RemoteConnection(url, token, tls_root_certs=tls_root_certs)  # type: ignore[return-value]
    lk = lake if isinstance(lake, Lake) else Lake(lake) if lake is not None else Lake()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    _LAKES[con] = lk
    _bind(con, lk)
    return con


# The lake each connection was opened on, for refresh(), and the damage found at
# its last (re)bind; weak so a closed, dropped connection takes its entries with it
# (dashboards connect per refresh).
_LAKES: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, Lake] = weakref.WeakKeyDictionary()
_DAMAGE: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, list[Damage]] = weakref.WeakKeyDictionary()


def damaged(con: duckdb.DuckDBPyConnection) -> list[Damage]:
    """What was damaged in the lake when ``con`` was last (re)bound: one
    :class:`~lab.lake.Damage` (``table, file, problem, kind, rows``) per problem;
    empty when every table opened."""
    return list(_DAMAGE.get(con, []))


def refresh(con: duckdb.DuckDBPyConnection, lake: Lake | str | None = None) -> None:
    """Rebind every view of ``con`` to the latest committed snapshot."""
    if not isinstance(con, duckdb.DuckDBPyConnection):  # a data-service connection: always fresh
        return
    lk = lake if isinstance(lake, Lake) else Lake(lake) if lake is not None else _LAKES.get(con, Lake())
    _bind(con, lk)


def _remote(lake: Lake | str | os.PathLike[str] | None) -> str | None:
    """The data-service URL ``connect(lake)`` goes to, or None for a local lake.

    ``lake`` itself when it is ``grpc://`` / ``grpc+tls://`` (``grpc+tcp://``);
    ``$LAB_SERVICE`` when that is set and ``lake`` names the default lake (None,
    ``$LAB_LAKE`` or ``$LAB_DATA/lake``): so dashboards and notebooks that open
    the default lake read from a remote service instead, unchanged. An explicit
    other path stays local.
    """
    if isinstance(lake, str) and lake.split("://", 1)[0] in ("grpc", "grpc+tls", "grpc+tcp") and "://" in lake:
        return lake
    service = os.environ.get("LAB_SERVICE")
    if not service or isinstance(lake, Lake):
        return None
    if lake is None:
        return service
    from lab.lake import data_dir

    defaults = {Path(p).expanduser().absolute() for p in (os.environ.get("LAB_LAKE"), data_dir() / "lake") if p}
    return service if Path(lake).expanduser().absolute() in defaults else None
