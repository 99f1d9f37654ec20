"""Read-only SQL over the lake: what the data service lets a remote client run.

Two locks, both needed:

- :func:`check_sql` parses the text with DuckDB's own parser
  (``extract_statements``) and accepts exactly one ``SELECT`` (``DESCRIBE``,
  ``SHOW``, ``SUMMARIZE`` and ``WITH`` parse as one) or ``EXPLAIN``: no DDL,
  DML, ``COPY``, ``ATTACH``, ``INSTALL``/``LOAD``, ``PRAGMA``, ``SET``, ``CALL``.
- :func:`lock_down` then turns off DuckDB's file and network access for the
  session (``enable_external_access=false``), except the lake's own directory
  (``allowed_directories``) that the views read, and locks the configuration, so
  ``read_parquet('/etc/passwd')``, ``read_csv``, ``glob`` and friends fail even
  inside an accepted ``SELECT``.

>>> check_sql("select 1")
>>> check_sql("copy trades to '/tmp/x.csv'")
Traceback (most recent call last):
...
lab.service.guard.RefusedError: read-only service: COPY statements are refused (only SELECT, EXPLAIN, DESCRIBE, SHOW)
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from lab.errors import LabError

__all__ = ["RefusedError", "check_sql", "lock_down", "parameter_count"]

_ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
_PARSER = duckdb.connect()  # parsing only; never runs anything


class RefusedError(LabError, PermissionError):
    """A statement the read-only service does not run; the message says why."""


def _statements(sql: str) -> list:
    try:
        return _PARSER.cursor().extract_statements(sql)
    except duckdb.Error as e:
        raise RefusedError(f"cannot parse the query: {str(e).splitlines()[0]}") from None


def check_sql(sql: str) -> None:
    """Raise :class:`RefusedError` unless ``sql`` is one read-only statement."""
    sts = _statements(sql)
    if not sts:
        raise RefusedError("empty query")
    if len(sts) > 1:
        raise RefusedError(f"one statement per query ({len(sts)} given)")
    kind = sts[0].type
    if kind not in _ALLOWED:
        raise RefusedError(f"read-only service: {kind.name} statements are refused "
                           "(only SELECT, EXPLAIN, DESCRIBE, SHOW)")


def parameter_count(sql: str) -> int:
    """How many ``?`` / ``$n`` parameters the (single) statement has."""
    sts = _statements(sql)
    return len(sts[0].named_parameters) if sts else 0


def lock_down(con: duckdb.DuckDBPyConnection, lake_root: str | os.PathLike[str], *,
              threads: int | None = None, memory_limit: str | None = None) -> None:
    """Restrict ``con`` (views already created) to the lake directory, then lock it."""
    root = Path(os.path.realpath(lake_root))
    allowed = [str(root) + os.sep]
    if root != Path(lake_root).absolute():
        allowed.append(str(Path(lake_root).absolute()) + os.sep)
    quoted = ", ".join("'" + a.replace("'", "''") + "'" for a in allowed)
    con.execute(f"SET allowed_directories = [{quoted}]")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit.replace(chr(39), '')}'")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
