"""The data service (port 50053): the lake over Arrow Flight SQL, live rows over Flight.

One ``pyarrow.flight`` server speaks two things:

- **Flight SQL** (remote SQL, any ADBC/JDBC Flight SQL client): each query opens a
  fresh snapshot of the lake through :func:`lab.connect` (same views and macros as
  local), read-only (:mod:`lab.service.guard`), with a per-query timeout, a cap on
  result rows and bytes, and a bound on concurrent queries. Statements and
  prepared statements (parameters bound with ``DoPut``) run on ``DoGet``.
- **Live streams** (plain Flight ``DoGet``, a JSON ticket ``{"live": table,
  "venues": [...], "symbols": [...], "restate": bool}``): the server subscribes to
  the live bus (:mod:`lab.bus`) for that table, filters on venue and symbol, and
  sends Arrow record batches of the canonical columns. Batches queue up to a
  bound per stream; a client slower than the feed loses batches, counted, and
  every batch's ``app_metadata`` carries ``{"dropped": rows lost so far,
  "frames": [rows of each bus frame in the batch]}``. A stream that goes quiet
  after a drop gets a zero-row batch with the new count within 0.25 s (the
  client counts it and hands on no rows), not only with its next rows.

Every call carries ``authorization: Bearer <token>`` (checked by a server
middleware; anything else is UNAUTHENTICATED). Every refusal is a Flight error
whose text says what to change.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import json
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import duckdb
import msgspec
import pyarrow as pa
import pyarrow.flight as fl

from lab.lake import Lake
from lab.schema import TABLES, table_spec
from lab.service import guard
from lab.service.proto import msg, pack, unpack

__all__ = ["ServiceConfig", "DataService", "live_ticket"]

log = logging.getLogger("lab.service")


class ServiceConfig(msgspec.Struct, frozen=True):
    """How the data service runs; defaults are the demo's."""

    lake: str
    token: str
    host: str = "127.0.0.1"
    port: int = 50053
    tls_cert: str | None = None  # PEM chain file
    tls_key: str | None = None  # PEM key file
    bus_url: str | None = "ws://127.0.0.1:50052"
    bus_token: str | None = None  # None: the bus library's own default (env / run file)
    query_timeout_s: float = 60.0
    max_rows: int = 10_000_000
    max_bytes: int = 2 << 30
    max_queries: int = 4  # running at once; others wait up to queue_wait_s
    queue_wait_s: float = 30.0
    max_streams: int = 32
    batch_rows: int = 262_144  # larger batches: ~0.85 of local fetch speed vs ~0.65 at 64k (bench)
    stream_queue_rows: int = 200_000  # per live stream, before dropping
    threads_per_query: int = 2
    memory_limit: str | None = "2GB"  # per query
    pending_ttl_s: float = 120.0  # a planned query nobody fetches is dropped after this


def live_ticket(table: str, venues: list[str] | None = None, symbols: list[str] | None = None,
                restate: bool = False) -> bytes:
    """The ``DoGet`` ticket of a live stream (what :func:`lab.service.subscribe` sends)."""
    return json.dumps({"live": table, "venues": venues, "symbols": symbols, "restate": restate}).encode()


# -- auth ---------------------------------------------------------------------------


class _AuthFactory(fl.ServerMiddlewareFactory):
    """Every call must carry ``authorization: Bearer <token>``."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._expected = f"Bearer {token}".encode()

    def start_call(self, info, headers):
        got = headers.get("authorization") or headers.get("Authorization") or []
        if not got:
            raise fl.FlightUnauthenticatedError("missing token: send 'authorization: Bearer <token>' "
                                                "(lab: token= or LAB_SERVICE_TOKEN)")
        if not any(hmac.compare_digest(v.encode() if isinstance(v, str) else v, self._expected) for v in got):
            raise fl.FlightUnauthenticatedError("wrong token")
        return None


# -- queries ------------------------------------------------------------------------


_MAX_PLANNED = 256  # queries planned (a connection each) and not yet fetched


class _Planned(msgspec.Struct):
    """A query planned by GetFlightInfo, run by the DoGet that presents its handle."""

    con: duckdb.DuckDBPyConnection
    sql: str
    params: list | None
    schema: pa.Schema
    created: float


class _Prepared(msgspec.Struct):
    sql: str
    nparams: int
    params: list[list] | None = None  # one list per bound parameter row
    used: float = 0.0


class _Running:
    __slots__ = ("con", "deadline", "context", "why")

    def __init__(self, con: duckdb.DuckDBPyConnection, deadline: float, context) -> None:
        self.con, self.deadline, self.context = con, deadline, context
        self.why: str | None = None


_SQL_INFO_VALUE = pa.dense_union([
    pa.field("string_value", pa.utf8()),
    pa.field("bool_value", pa.bool_()),
    pa.field("bigint_value", pa.int64()),
    pa.field("int32_bitmask", pa.int32()),
    pa.field("string_list", pa.list_(pa.utf8())),
    pa.field("int32_to_int32_list_map", pa.map_(pa.int32(), pa.list_(pa.int32()))),
])
_SQL_INFO_SCHEMA = pa.schema([pa.field("info_name", pa.uint32(), nullable=False),
                              pa.field("value", _SQL_INFO_VALUE, nullable=False)])


class DataService(fl.FlightServerBase):
    """The Flight (SQL) server. ``DataService(cfg)`` binds at once; :meth:`serve` blocks.

    Use as a context manager in tests (``with DataService(cfg) as svc: ... svc.port``).
    """

    def __init__(self, cfg: ServiceConfig) -> None:
        self.cfg = cfg
        tls = None
        scheme = "grpc"
        if cfg.tls_cert or cfg.tls_key:
            if not (cfg.tls_cert and cfg.tls_key):
                raise ValueError("TLS needs both a certificate chain and a key")
            tls = [fl.CertKeyPair(Path(cfg.tls_cert).read_bytes(), Path(cfg.tls_key).read_bytes())]
            scheme = "grpc+tls"
        super().__init__(f"{scheme}://{cfg.host}:{cfg.port}", tls_certificates=tls,
                         middleware={"auth": _AuthFactory(cfg.token)})
        self.scheme = scheme
        self.lake = Lake(cfg.lake)
        self._slots = threading.BoundedSemaphore(cfg.max_queries)
        self._streams = threading.BoundedSemaphore(cfg.max_streams)
        self._lock = threading.Lock()
        self._planned: dict[bytes, _Planned] = {}
        self._prepared: OrderedDict[bytes, _Prepared] = OrderedDict()
        self._running: set[_Running] = set()
        self._stop = threading.Event()
        self.stats = {"queries": 0, "refused": 0, "timeouts": 0, "cancelled": 0, "streams": 0,
                      "live_rows": 0, "live_dropped": 0, "live_restates": 0,
                      "live_queue_peak": 0}
        self._watch = threading.Thread(target=self._watchdog, name="lab-service-watchdog", daemon=True)
        self._watch.start()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.cfg.host}:{self.port}"

    def shutdown(self) -> None:
        self._stop.set()
        super().shutdown()
        if self._loop is not None:
            async def cancel_all() -> None:
                tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

            try:
                asyncio.run_coroutine_threadsafe(cancel_all(), self._loop).result(timeout=5)
            except Exception:  # noqa: BLE001 - shutting down anyway
                pass
            loop, thread = self._loop, self._loop_thread
            loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(5)
            if not loop.is_running():  # closed here, not by the garbage collector at some later moment
                loop.close()
            self._loop = None

    # -- housekeeping ---------------------------------------------------------------

    def _watchdog(self) -> None:
        """Interrupt queries past their deadline or whose client went away; expire plans."""
        while not self._stop.wait(0.1):
            now = time.monotonic()
            with self._lock:
                running = list(self._running)
                stale = [h for h, p in self._planned.items() if now - p.created > self.cfg.pending_ttl_s]
                dropped = [self._planned.pop(h) for h in stale]
            for p in dropped:
                p.con.close()
            for r in running:
                if r.why is not None:
                    continue
                if now > r.deadline:
                    r.why = "timeout"
                elif r.context is not None and r.context.is_cancelled():
                    r.why = "cancelled"
                if r.why is not None:
                    r.con.interrupt()

    def _slot(self) -> None:
        if not self._slots.acquire(timeout=self.cfg.queue_wait_s):
            self.stats["refused"] += 1
            raise fl.FlightUnavailableError(
                f"server busy: {self.cfg.max_queries} queries running for more than "
                f"{self.cfg.queue_wait_s:.0f} s; try again later")

    def _open(self) -> duckdb.DuckDBPyConnection:
        """A fresh snapshot of the lake, views and macros as :func:`lab.connect`, locked down."""
        from lab.sql import connect  # the local path of lab.connect

        con = connect(self.lake)
        guard.lock_down(con, self.lake.root, threads=self.cfg.threads_per_query,
                        memory_limit=self.cfg.memory_limit)
        return con

    # -- planning -----------------------------------------------------------------------

    def _check(self, sql: str) -> None:
        try:
            guard.check_sql(sql)
        except guard.RefusedError as e:
            self.stats["refused"] += 1
            raise fl.FlightServerError(str(e)) from None

    def _plan(self, context, sql: str, params: list | None, descriptor: fl.FlightDescriptor) -> fl.FlightInfo:
        """Open a fresh snapshot and bind ``sql`` for its schema; ``DoGet`` runs it."""
        self._check(sql)
        with self._lock:
            if len(self._planned) >= _MAX_PLANNED:
                raise fl.FlightUnavailableError(f"{_MAX_PLANNED} planned queries are waiting for their DoGet; "
                                                "fetch or drop them first")
        self._slot()
        run = None
        try:
            con = self._open()
            run = _Running(con, time.monotonic() + self.cfg.query_timeout_s, context)
            with self._lock:
                self._running.add(run)
            try:
                rel = con.sql(sql, params=params) if params else con.sql(sql)
                schema = rel.limit(0).to_arrow_table().schema if rel is not None else pa.schema([])
            except duckdb.Error as e:
                con.close()
                if run.why == "timeout":
                    raise fl.FlightTimedOutError(
                        f"query exceeded the {self.cfg.query_timeout_s:g} s limit and was stopped") from None
                raise fl.FlightServerError(_one_line(e)) from None
        finally:
            if run is not None:
                with self._lock:
                    self._running.discard(run)
            self._slots.release()
        handle = secrets.token_bytes(16)
        with self._lock:
            self._planned[handle] = _Planned(con, sql, params, schema, time.monotonic())
        ticket = fl.Ticket(pack(msg("TicketStatementQuery")(statement_handle=handle)))
        return fl.FlightInfo(schema, descriptor, [fl.FlightEndpoint(ticket, [])], -1, -1)

    def get_flight_info(self, context, descriptor):
        name, cmd = unpack(descriptor.command or b"")
        if name == "CommandStatementQuery":
            return self._plan(context, cmd.query, None, descriptor)
        if name == "CommandPreparedStatementQuery":
            prep = self._prepared_of(cmd.prepared_statement_handle)
            if prep.nparams and not prep.params:
                raise fl.FlightServerError(f"the prepared statement has {prep.nparams} parameter(s): bind them first")
            rows = prep.params or [None]
            if len(rows) > 1:
                raise fl.FlightServerError("bind one row of parameters per execution")
            return self._plan(context, prep.sql, rows[0], descriptor)
        if name in ("CommandGetCatalogs", "CommandGetDbSchemas", "CommandGetTables",
                    "CommandGetTableTypes", "CommandGetSqlInfo"):
            table = self._metadata(name, cmd)
            return fl.FlightInfo(table.schema, descriptor,
                                 [fl.FlightEndpoint(fl.Ticket(descriptor.command), [])], table.num_rows, -1)
        raise self._unsupported(name)

    def get_schema(self, context, descriptor):
        info = self.get_flight_info(context, descriptor)
        return fl.SchemaResult(info.schema)

    def _unsupported(self, name: str) -> fl.FlightError:
        self.stats["refused"] += 1
        if name in ("CommandStatementUpdate", "CommandPreparedStatementUpdate", "CommandStatementSubstraitPlan"):
            return fl.FlightServerError("read-only service: updates are refused (only SELECT, EXPLAIN, DESCRIBE, SHOW)")
        return fl.FlightServerError(f"unsupported Flight SQL command {name or '(none)'!r}")

    def _prepared_of(self, handle: bytes) -> _Prepared:
        with self._lock:
            prep = self._prepared.get(handle)
            if prep is not None:
                prep.used = time.monotonic()
                self._prepared.move_to_end(handle)
        if prep is None:
            raise fl.FlightServerError("unknown or closed prepared statement")
        return prep

    # -- metadata -------------------------------------------------------------------

    def _names(self) -> list[str]:
        from lab.sql import EXTRA_VIEWS

        return sorted([*TABLES, *EXTRA_VIEWS])

    def _metadata(self, name: str, cmd) -> pa.Table:
        if name == "CommandGetCatalogs":
            return pa.table({"catalog_name": pa.array(["memory"])},
                            schema=pa.schema([pa.field("catalog_name", pa.utf8(), nullable=False)]))
        if name == "CommandGetDbSchemas":
            return pa.table({"catalog_name": ["memory"], "db_schema_name": ["main"]},
                            schema=pa.schema([pa.field("catalog_name", pa.utf8()),
                                              pa.field("db_schema_name", pa.utf8(), nullable=False)]))
        if name == "CommandGetTableTypes":
            return pa.table({"table_type": ["VIEW"]},
                            schema=pa.schema([pa.field("table_type", pa.utf8(), nullable=False)]))
        if name == "CommandGetTables":
            import fnmatch

            names = self._names()
            pat = cmd.table_name_filter_pattern if cmd.HasField("table_name_filter_pattern") else None
            if pat:
                rx = pat.replace("%", "*").replace("_", "?")
                names = [n for n in names if fnmatch.fnmatchcase(n, rx)]
            if cmd.table_types and "VIEW" not in cmd.table_types:
                names = []
            fields = [pa.field("catalog_name", pa.utf8()), pa.field("db_schema_name", pa.utf8()),
                      pa.field("table_name", pa.utf8(), nullable=False),
                      pa.field("table_type", pa.utf8(), nullable=False)]
            cols: dict[str, list] = {"catalog_name": ["memory"] * len(names), "db_schema_name": ["main"] * len(names),
                                     "table_name": names, "table_type": ["VIEW"] * len(names)}
            if cmd.include_schema:
                con = self._open()
                try:
                    cols["table_schema"] = [con.sql(f'select * from "{n}" limit 0').to_arrow_table().schema
                                            .serialize().to_pybytes() for n in names]
                finally:
                    con.close()
                fields.append(pa.field("table_schema", pa.binary(), nullable=False))
            return pa.table(cols, schema=pa.schema(fields))
        if name == "CommandGetSqlInfo":
            infos: dict[int, str | bool] = {0: "HFThot lab data service", 1: "1", 2: pa.__version__, 3: True}
            wanted = [i for i in (cmd.info or infos) if i in infos]
            codes: list[int] = []
            offsets: list[int] = []
            strings: list[str] = []
            bools: list[bool] = []
            for i in wanted:
                v = infos[i]
                if isinstance(v, bool):
                    codes.append(1); offsets.append(len(bools)); bools.append(v)
                else:
                    codes.append(0); offsets.append(len(strings)); strings.append(v)
            children = [pa.array(strings, pa.utf8()), pa.array(bools, pa.bool_()), pa.array([], pa.int64()),
                        pa.array([], pa.int32()), pa.array([], pa.list_(pa.utf8())),
                        pa.array([], pa.map_(pa.int32(), pa.list_(pa.int32())))]
            value = pa.UnionArray.from_dense(pa.array(codes, pa.int8()), pa.array(offsets, pa.int32()), children,
                                             [f.name for f in _SQL_INFO_VALUE], list(range(6)))
            return pa.Table.from_arrays([pa.array(wanted, pa.uint32()), value], schema=_SQL_INFO_SCHEMA)
        raise self._unsupported(name)

    # -- actions: prepared statements -----------------------------------------------

    def list_actions(self, context):
        return [("CreatePreparedStatement", "Flight SQL: prepare a read-only statement"),
                ("ClosePreparedStatement", "Flight SQL: forget a prepared statement")]

    def do_action(self, context, action):
        kind = action.type
        body = action.body.to_pybytes() if action.body is not None else b""
        if kind == "CreatePreparedStatement":
            _, req = unpack(body)
            if req is None:
                raise fl.FlightServerError("CreatePreparedStatement needs an ActionCreatePreparedStatementRequest")
            self._check(req.query)
            handle = secrets.token_bytes(16)
            with self._lock:
                self._prepared[handle] = _Prepared(req.query, guard.parameter_count(req.query), used=time.monotonic())
                while len(self._prepared) > 10_000:  # clients that never close: forget the oldest
                    self._prepared.popitem(last=False)
            res = msg("ActionCreatePreparedStatementResult")(prepared_statement_handle=handle)
            return iter([fl.Result(pack(res))])
        if kind == "ClosePreparedStatement":
            _, req = unpack(body)
            if req is not None:
                with self._lock:
                    self._prepared.pop(req.prepared_statement_handle, None)
            return iter([])
        raise fl.FlightServerError(f"unsupported action {kind!r}")

    def do_put(self, context, descriptor, reader, writer):
        name, cmd = unpack(descriptor.command or b"")
        if name != "CommandPreparedStatementQuery":
            raise self._unsupported(name)
        prep = self._prepared_of(cmd.prepared_statement_handle)
        table = reader.read_all()
        if table.num_rows > 1000:
            raise fl.FlightServerError("at most 1000 parameter rows")
        rows = [list(r.values()) for r in table.to_pylist()]
        if prep.nparams and rows and len(rows[0]) != prep.nparams:
            raise fl.FlightServerError(f"the statement has {prep.nparams} parameter(s), {len(rows[0])} bound")
        prep.params = rows
        res = msg("DoPutPreparedStatementResult")(prepared_statement_handle=cmd.prepared_statement_handle)
        writer.write(pa.py_buffer(res.SerializeToString()))

    # -- fetching ---------------------------------------------------------------------

    def do_get(self, context, ticket):
        raw = ticket.ticket
        if raw[:1] == b"{":
            return self._live(context, raw)
        name, cmd = unpack(raw)
        if name == "TicketStatementQuery":
            with self._lock:
                planned = self._planned.pop(cmd.statement_handle, None)
            if planned is None:
                raise fl.FlightServerError("unknown or expired statement handle: run the query again")
            return fl.GeneratorStream(planned.schema, self._run(context, planned))
        if name in ("CommandGetCatalogs", "CommandGetDbSchemas", "CommandGetTables",
                    "CommandGetTableTypes", "CommandGetSqlInfo"):
            return fl.RecordBatchStream(self._metadata(name, cmd))
        raise self._unsupported(name)

    def _run(self, context, p: _Planned) -> Iterator[pa.RecordBatch]:
        """Execute a planned query, streaming batches, within the limits."""
        cfg = self.cfg
        try:
            self._slot()
        except BaseException:
            p.con.close()
            raise
        run = _Running(p.con, time.monotonic() + cfg.query_timeout_s, context)
        with self._lock:
            self._running.add(run)
        self.stats["queries"] += 1
        rows = nbytes = 0
        try:
            try:
                rel = p.con.sql(p.sql, params=p.params) if p.params else p.con.sql(p.sql)
                reader = rel.to_arrow_reader(cfg.batch_rows)
                for batch in reader:
                    rows += batch.num_rows
                    nbytes += batch.nbytes
                    if rows > cfg.max_rows or nbytes > cfg.max_bytes:
                        self.stats["refused"] += 1
                        raise fl.FlightServerError(
                            f"result too large: more than {cfg.max_rows:,} rows or {cfg.max_bytes / 2**20:,.0f} MiB; "
                            "add filters, aggregate or LIMIT")
                    if batch.schema != p.schema:
                        batch = pa.RecordBatch.from_arrays(batch.columns, schema=p.schema)
                    yield batch
            except duckdb.Error as e:
                if run.why == "timeout":
                    self.stats["timeouts"] += 1
                    raise fl.FlightTimedOutError(
                        f"query exceeded the {cfg.query_timeout_s:g} s limit and was stopped") from None
                if run.why == "cancelled":
                    self.stats["cancelled"] += 1
                    raise fl.FlightCancelledError("the client went away") from None
                raise fl.FlightServerError(_one_line(e)) from None
        finally:
            with self._lock:
                self._running.discard(run)
            p.con.close()
            self._slots.release()

    # -- live streams -----------------------------------------------------------------

    def _bus_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                t = threading.Thread(target=loop.run_forever, name="lab-service-bus", daemon=True)
                t.start()
                self._loop, self._loop_thread = loop, t
            return self._loop

    def _live(self, context, raw: bytes):
        try:
            req = json.loads(raw)
            table = req["live"]
            spec = table_spec(table)
        except (ValueError, KeyError, TypeError) as e:
            raise fl.FlightServerError(f"bad live ticket: {e}; tables: {', '.join(sorted(TABLES))}") from None
        if self.cfg.bus_url is None:
            raise fl.FlightUnavailableError("this service has no live bus (--bus)")
        if not self._streams.acquire(blocking=False):
            self.stats["refused"] += 1
            raise fl.FlightUnavailableError(f"too many live streams ({self.cfg.max_streams}); try again later")
        self.stats["streams"] += 1
        schema = _arrow_schema(spec)
        venues = set(req.get("venues") or []) or None
        symbols = set(req.get("symbols") or []) or None
        stream = _LiveStream(schema, self.cfg.stream_queue_rows)
        fut = asyncio.run_coroutine_threadsafe(
            self._pump(stream, table, venues, symbols, bool(req.get("restate"))), self._bus_loop())
        return fl.GeneratorStream(schema, self._drain(context, stream, fut))

    async def _pump(self, stream: _LiveStream, table: str, venues: set | None, symbols: set | None,
                    restate: bool) -> None:
        from lab import bus

        kwargs: dict[str, object] = {"restate": restate}
        token = self._bus_token()
        if token and "token" in inspect.signature(bus.subscribe).parameters:
            kwargs["token"] = token
        url = self.cfg.bus_url or bus.DEFAULT_URL
        last_restate = time.monotonic()
        while not stream.closed:
            agen = bus.subscribe([table], url=url, **kwargs)  # type: ignore[arg-type]
            try:
                async for t, rows in agen:
                    if stream.closed:
                        return
                    if t != table:
                        continue
                    if venues is not None or symbols is not None:
                        rows = [r for r in rows if (venues is None or r.get("venue") in venues)
                                and (symbols is None or r.get("symbol") in symbols)]
                    if rows:
                        stream.offer(rows)
                    # A restate stream that lost rows has wrong books: once its queue has room
                    # (at most once a second), subscribe again with restate, so the recorders
                    # restate their books to it, as the hub does for its own subscribers.
                    if restate and stream.lost and stream.has_room() and time.monotonic() - last_restate >= 1.0:
                        stream.lost = False
                        last_restate = time.monotonic()
                        self.stats["live_restates"] += 1
                        break
            finally:
                await agen.aclose()  # type: ignore[attr-defined]

    def _bus_token(self) -> str | None:
        """The bus's token: the config's, else ``$LAB_BUS_TOKEN``, else ``$LAB_DATA/run/bus_token``."""
        if self.cfg.bus_token:
            return self.cfg.bus_token
        env = os.environ.get("LAB_BUS_TOKEN")
        if env:
            return env.strip()
        from lab.lake import data_dir

        p = data_dir() / "run" / "bus_token"
        try:
            return p.read_text(encoding="utf-8").strip() or None
        except OSError:
            return None

    def _drain(self, context, stream: _LiveStream, fut) -> Iterator[tuple[pa.RecordBatch, pa.Buffer]]:
        told = 0  # the drop count the client has been sent
        try:
            while not self._stop.is_set() and not context.is_cancelled():
                if fut.done():
                    exc = fut.exception()
                    raise fl.FlightUnavailableError(f"live bus subscription ended: {exc}")
                got = stream.take(0.25)
                if got is None:
                    if stream.dropped > told:  # rows dropped, then quiet: say so now, not with the next rows
                        told = stream.dropped
                        empty = pa.RecordBatch.from_pylist([], schema=stream.schema)
                        yield empty, pa.py_buffer(json.dumps({"dropped": told, "frames": []}).encode())
                    continue
                rows, frames = got
                batch = pa.RecordBatch.from_pylist(rows, schema=stream.schema)
                self.stats["live_rows"] += batch.num_rows
                told = stream.dropped
                meta = {"dropped": told, "frames": frames}
                yield batch, pa.py_buffer(json.dumps(meta).encode())
        finally:
            stream.closed = True
            self.stats["live_dropped"] += stream.dropped
            self.stats["live_queue_peak"] = max(self.stats["live_queue_peak"], stream.peak)
            fut.cancel()
            self._streams.release()

    # -- running ----------------------------------------------------------------------

    def __enter__(self) -> DataService:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


class _LiveStream:
    """Rows waiting for one remote subscriber; bounded, counts what it drops.

    It also keeps the bus frames' boundaries (rows per frame), sent with each batch,
    so a client can hand its consumer the frames the bus delivered, not merged ones.
    """

    def __init__(self, schema: pa.Schema, max_rows: int) -> None:
        self.schema = schema
        self.max_rows = max_rows
        self._rows: list[dict] = []
        self._frames: list[int] = []
        self._cv = threading.Condition()
        self.dropped = 0
        self.peak = 0  # most rows ever queued (bounded by max_rows)
        self.lost = False  # dropped rows since the last restatement
        self.closed = False

    def offer(self, rows: list[dict]) -> None:
        with self._cv:
            if len(self._rows) + len(rows) > self.max_rows:
                self.dropped += len(rows)
                self.lost = True
                return
            self._rows.extend(rows)
            self._frames.append(len(rows))
            self.peak = max(self.peak, len(self._rows))
            self._cv.notify()

    def has_room(self) -> bool:
        return len(self._rows) <= self.max_rows // 2

    def take(self, timeout: float) -> tuple[list[dict], list[int]] | None:
        """Everything queued (one micro-batch) and its frames' row counts, or None after
        ``timeout`` s of nothing."""
        with self._cv:
            if not self._rows:
                self._cv.wait(timeout)
            if not self._rows:
                return None
            rows, self._rows = self._rows, []
            frames, self._frames = self._frames, []
            return rows, frames


def _arrow_schema(spec) -> pa.Schema:
    """The table's canonical columns as Arrow (strings as plain ``utf8``)."""
    import polars as pl

    s = pl.DataFrame(schema=spec.schema).to_arrow().schema
    return pa.schema([pa.field(f.name, pa.utf8()) if f.type == pa.large_utf8() else f for f in s])


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def token_path() -> Path:
    """``$LAB_DATA/run/service_token``: where a generated token is kept (mode 0600)."""
    from lab.lake import data_dir

    return data_dir() / "run" / "service_token"


def resolve_token(create: bool = False) -> str | None:
    """``$LAB_SERVICE_TOKEN``, else the token file; ``create``: generate the file (0600) if missing."""
    env = os.environ.get("LAB_SERVICE_TOKEN")
    if env:
        return env.strip()
    p = token_path()
    if p.exists():
        if create and p.stat().st_mode & 0o077:
            os.chmod(p, 0o600)  # a secret: owner only
        return p.read_text(encoding="utf-8").strip() or None
    if not create:
        return None
    p.parent.mkdir(parents=True, exist_ok=True)
    tok = secrets.token_urlsafe(32)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(tok + "\n")
    return tok
