"""Client side of the data service: remote SQL and live subscriptions.

``lab.connect("grpc+tls://host:50053", token=...)`` returns a
:class:`RemoteConnection` (the ADBC Flight SQL driver underneath) used like the
local DuckDB connection: ``con.sql(q).pl()``, ``con.sql(q, params=[...])``,
``con.execute(q, [..]).fetchall()``. Each query sees the lake's latest commit.

``lab.service.subscribe("quotes", url=..., venues=[...], symbols=[...])``
async-iterates the live rows as Arrow record batches (``as_polars=True``:
Polars frames), filtered on the server.

The token: ``token=``, else ``$LAB_SERVICE_TOKEN``, else ``$LAB_DATA/run/service_token``
(the file a local ``lab serve`` writes). A private CA: ``tls_root_certs=`` (PEM
text or a file path), else ``$LAB_SERVICE_CA`` (a file path).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import polars as pl
import pyarrow as pa

from lab.errors import ConfigError, ServiceError

__all__ = ["RemoteConnection", "RemoteResult", "connect", "subscribe", "is_remote", "Subscription",
           "TokenRefused", "rows_of", "split_frames", "service_token"]

SCHEMES = ("grpc", "grpc+tcp", "grpc+tls")


def is_remote(target: object) -> bool:
    """True for a data-service URL (``grpc://``, ``grpc+tls://``)."""
    return isinstance(target, str) and urlsplit(target).scheme in SCHEMES and "://" in target


def service_token(token: str | None = None) -> str:
    """``token``, else ``$LAB_SERVICE_TOKEN``, else ``$LAB_DATA/run/service_token``
    (:class:`~lab.errors.ConfigError` when there is none)."""
    return _token(token)


def _token(token: str | None) -> str:
    if token:
        return token
    from lab.service.server import resolve_token

    tok = resolve_token(create=False)
    if not tok:
        raise ConfigError("no token for the data service: pass token=, or set LAB_SERVICE_TOKEN")
    return tok


def _ca(tls_root_certs: str | None) -> str | None:
    v = tls_root_certs or os.environ.get("LAB_SERVICE_CA")
    if not v:
        return None
    if "-----BEGIN" in v:
        return v
    return Path(v).expanduser().read_text(encoding="utf-8")


def _message(e: BaseException) -> str:
    """The server's own words from a driver error (drops the gRPC/ADBC wrapping)."""
    text = str(e).strip()
    text = re.sub(r"^[A-Z_]+: ", "", text).replace("[FlightSQL] ", "")
    text = re.sub(r"^Flight returned .*? error, with message: ", "", text)
    text = re.split(r"\.? Detail: ", text, maxsplit=1)[0]
    text = re.split(r"\. gRPC client debug context", text, maxsplit=1)[0]
    return text.splitlines()[0] if text else type(e).__name__


class RemoteResult:
    """One query's result, fetched as an Arrow table, with the local relation's readers.

    >>> r = RemoteResult(pa.table({"n": [1, 2]}))
    >>> r.fetchone(), r.fetchall(), r.pl().shape
    ((1,), [(2,)], (2, 1))
    """

    def __init__(self, table: pa.Table) -> None:
        self._t = table
        self._rows: list[tuple] | None = None
        self._pos = 0

    def to_arrow_table(self) -> pa.Table:
        return self._t

    fetch_arrow_table = to_arrow_table

    def arrow(self) -> pa.RecordBatchReader:
        """A RecordBatchReader, as DuckDB 2.0's ``rel.arrow()``."""
        return self._t.to_reader()

    def pl(self) -> pl.DataFrame:
        return pl.from_arrow(self._t)  # type: ignore[return-value]

    def df(self):
        return self._t.to_pandas()

    def _all(self) -> list[tuple]:
        if self._rows is None:
            cols = [c.to_pylist() for c in self._t.columns]
            self._rows = list(zip(*cols, strict=True)) if cols else []
        return self._rows

    def fetchall(self) -> list[tuple]:
        rows = self._all()[self._pos:]
        self._pos += len(rows)
        return rows

    def fetchone(self) -> tuple | None:
        rows = self._all()
        if self._pos >= len(rows):
            return None
        self._pos += 1
        return rows[self._pos - 1]

    @property
    def columns(self) -> list[str]:
        return list(self._t.column_names)

    def __len__(self) -> int:
        return self._t.num_rows


class RemoteConnection:
    """A connection to a data service, shaped like the local ``lab.connect()``."""

    def __init__(self, url: str, token: str | None = None, *, tls_root_certs: str | None = None,
                 timeout_s: float | None = None) -> None:
        import adbc_driver_flightsql.dbapi as fs
        from adbc_driver_flightsql import DatabaseOptions

        if not is_remote(url):
            raise ConfigError(f"not a data-service URL: {url!r} (grpc://host:port or grpc+tls://host:port)")
        self.url = url
        kwargs: dict[str, str] = {DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {_token(token)}"}
        ca = _ca(tls_root_certs)
        if ca:
            kwargs[DatabaseOptions.TLS_ROOT_CERTS.value] = ca
        if timeout_s:
            kwargs[DatabaseOptions.TIMEOUT_FETCH.value] = str(timeout_s)
            kwargs[DatabaseOptions.TIMEOUT_QUERY.value] = str(timeout_s)
        try:
            self._con = fs.connect(url, db_kwargs=kwargs, autocommit=True)
        except Exception as e:  # noqa: BLE001 - the driver raises its own kinds
            raise ServiceError(f"data service {url}: {_message(e)}") from None
        self._lock = threading.Lock()

    def sql(self, query: str, params: Sequence[Any] | None = None) -> RemoteResult:
        """Run ``query`` (``?`` parameters bound from ``params``) and fetch its result."""
        with self._lock:
            cur = self._con.cursor()
            try:
                if params:
                    cur.execute(query, list(params))
                else:
                    cur.execute(query)
                return RemoteResult(cur.fetch_arrow_table())
            except Exception as e:  # noqa: BLE001
                raise ServiceError(f"data service: {_message(e)}") from None
            finally:
                cur.close()

    def execute(self, query: str, params: Sequence[Any] | None = None) -> RemoteResult:
        return self.sql(query, params)

    def refresh(self) -> None:
        """Nothing to do: every remote query reads the latest commit."""

    @property
    def adbc(self):
        """The underlying ADBC DB-API connection (``pl.read_database(q, connection=con.adbc)``)."""
        return self._con

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> RemoteConnection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connect(url: str, token: str | None = None, **kwargs: Any) -> RemoteConnection:
    return RemoteConnection(url, token, **kwargs)


# -- live ---------------------------------------------------------------------------


class TokenRefused(ServiceError):
    """The data service refused the token (missing or wrong): retrying cannot help, so a
    command exits 2 with this one line (as for any other bad setting)."""

    exit_code = 2


_OPENED = object()  # a Subscription's stream is open (the server accepted the call)


def rows_of(batch: pa.RecordBatch, table: str) -> list[dict]:
    """A live batch as the bus's row dicts: timestamps int µs, and an optional column
    (:attr:`lab.schema.TableSpec.optional`) left out when the batch has no value for it,
    as a publisher that never sets it leaves it out.

    >>> import datetime as dt
    >>> t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    >>> b = pa.RecordBatch.from_pylist([{"ts_local": t, "price": 1.5, "source": None}])
    >>> rows_of(b, "trades")
    [{'ts_local': 1767225600000000, 'price': 1.5}]
    """
    from lab.schema import TABLES

    spec = TABLES.get(table)
    optional = spec.optional if spec is not None else ()
    names, cols = [], []
    for name, col in zip(batch.schema.names, batch.columns, strict=True):
        if name in optional and col.null_count == len(col):
            continue
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.timestamp("us", col.type.tz)).cast(pa.int64())
        names.append(name)
        cols.append(col)
    return pa.RecordBatch.from_arrays(cols, names=names).to_pylist()


def split_frames(rows: list[dict], frames: list[int] | None) -> list[list[dict]]:
    """``rows`` cut into the bus frames they came in (row counts ``frames``; one frame
    when the counts are missing or do not add up).

    >>> split_frames([1, 2, 3], [2, 1]), split_frames([1, 2, 3], None), split_frames([1, 2], [5])
    ([[1, 2], [3]], [[1, 2, 3]], [[1, 2]])
    """
    if not frames or sum(frames) != len(rows) or any(n <= 0 for n in frames):
        return [rows] if rows else []
    out, i = [], 0
    for n in frames:
        out.append(rows[i:i + n])
        i += n
    return out


class Subscription:
    """An async iterator of live batches; :attr:`dropped` counts rows the server had to drop.

    :meth:`frames` iterates ``(table, rows)`` as :func:`lab.bus.subscribe` does (the
    bus frames, rows as dicts with int µs timestamps) instead of Arrow batches.
    """

    def __init__(self, table: str, url: str, token: str | None, venues: Iterable[str] | None,
                 symbols: Iterable[str] | None, restate: bool, as_polars: bool,
                 tls_root_certs: str | None, max_buffer: int) -> None:
        from lab.service.server import live_ticket

        self.url = url
        self.table = table
        self.ticket = live_ticket(table, list(venues) if venues else None, list(symbols) if symbols else None,
                                  restate)
        self._token = _token(token)
        self._ca = _ca(tls_root_certs)
        self.as_polars = as_polars
        self.dropped = 0
        self._max = max_buffer
        self._client: Any = None  # pyarrow.flight.FlightClient once open (pyarrow ships no type stubs)
        self._reader: Any = None  # its FlightStreamReader

    def _open(self) -> None:
        import pyarrow.flight as fl

        kw: dict[str, Any] = {}
        if self._ca:
            kw["tls_root_certs"] = self._ca.encode()
        self._client = fl.FlightClient(self.url, **kw)
        opts = fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {self._token}".encode())])
        self._reader = self._client.do_get(fl.Ticket(self.ticket), opts)
        self._reader.schema  # noqa: B018 - waits for the server's answer: refusals surface here

    def _error(self, e: Exception) -> ServiceError:
        import pyarrow.flight as fl

        if isinstance(e, fl.FlightUnauthenticatedError):
            return TokenRefused(f"data service {self.url} refused the token ({_message(e)}): use the "
                                "service's token (LAB_SERVICE_TOKEN, --token-file, or "
                                "$LAB_DATA/run/service_token where lab serve runs)")
        return ServiceError(f"data service {self.url}: {_message(e)}")

    def _next(self) -> tuple[pa.RecordBatch, list[int] | None] | None:
        """The next batch and its bus frames' row counts (None: the stream ended)."""
        import pyarrow.flight as fl

        while True:
            try:
                chunk = self._reader.read_chunk()
            except StopIteration:
                return None
            except fl.FlightError as e:
                raise self._error(e) from None
            frames = None
            if chunk.app_metadata is not None:
                try:
                    meta = json.loads(chunk.app_metadata.to_pybytes())
                    self.dropped = int(meta.get("dropped", 0))
                    frames = meta.get("frames")
                except (ValueError, TypeError, AttributeError):
                    pass
            if chunk.data is not None and chunk.data.num_rows == 0:
                continue  # the server's drop notice on a quiet stream: counted above, no rows to hand on
            return chunk.data, frames

    def __aiter__(self) -> AsyncIterator[pa.RecordBatch | pl.DataFrame]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[pa.RecordBatch | pl.DataFrame]:
        async for item in self._chunks():
            if item is not _OPENED:
                yield pl.from_arrow(item[0]) if self.as_polars else item[0]  # type: ignore[index]

    async def frames(self) -> AsyncIterator[tuple[str, list[dict]]]:
        """``(table, rows)`` per bus frame, rows as the bus's dicts (see :func:`rows_of`)."""
        async for item in self._chunks():
            if item is not _OPENED:
                batch, frames = item  # type: ignore[misc]
                for rows in split_frames(rows_of(batch, self.table), frames):
                    yield self.table, rows

    async def _chunks(self) -> AsyncIterator[Any]:
        """``_OPENED`` once the server accepted the call, then ``(batch, frames)`` items."""
        # The Flight reader blocks: a thread reads into a bounded queue the loop awaits.
        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue(self._max)
        stop = threading.Event()
        _END = object()

        def put(item: object) -> bool:
            """Hand ``item`` to the loop; False once the consumer is gone (never blocks for good)."""
            fut = asyncio.run_coroutine_threadsafe(q.put(item), loop)
            while True:
                try:
                    fut.result(timeout=0.5)
                    return True
                except TimeoutError:
                    if stop.is_set() or loop.is_closed():
                        fut.cancel()
                        return False

        def pump() -> None:
            try:
                self._open()
            except BaseException as e:  # noqa: BLE001 - handed to the consumer
                import pyarrow.flight as fl

                if not stop.is_set():
                    put(self._error(e) if isinstance(e, fl.FlightError) else e)
                return
            if not put(_OPENED):
                return
            try:
                while not stop.is_set():
                    b = self._next()
                    if b is None:
                        break
                    if not put(b):
                        return
                put(_END)
            except BaseException as e:  # noqa: BLE001 - handed to the consumer
                if not stop.is_set():
                    put(e)

        t = threading.Thread(target=pump, name="lab-subscribe", daemon=True)
        t.start()
        try:
            while True:
                item = await q.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            self.close()

    def close(self) -> None:
        if self._reader is not None:
            try:
                self._reader.cancel()
            except Exception:  # noqa: BLE001
                pass
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001
                pass


def subscribe(table: str, url: str | None = None, *, token: str | None = None,
              venues: Iterable[str] | None = None, symbols: Iterable[str] | None = None,
              restate: bool | None = None, as_polars: bool = False, tls_root_certs: str | None = None,
              max_buffer: int = 1000) -> Subscription:
    """Live rows of ``table`` from the data service at ``url`` (default ``$LAB_SERVICE``).

    ``async for batch in subscribe("quotes", url=..., venues=["binance"]): ...``.
    ``restate`` (default: True for ``book_updates``) makes the recorders restate
    their books first, so the stream starts with whole books.
    """
    url = url or os.environ.get("LAB_SERVICE") or "grpc://127.0.0.1:50053"
    if restate is None:
        restate = table == "book_updates"
    return Subscription(table, url, token, venues, symbols, restate, as_polars, tls_root_certs, max_buffer)
