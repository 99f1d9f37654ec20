"""The service is read-only, bounded, and survives writers, compaction, crowds and dead clients."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from svchelp import TOKEN, start, trades_frame

import lab
from lab.errors import ServiceError
from lab.service.client import RemoteConnection


@pytest.mark.parametrize("sql, words", [
    ("select * from read_parquet('/etc/passwd')", "Permission Error"),
    ("select * from read_csv('/etc/passwd')", "Permission Error"),
    ("select * from read_text('/etc/passwd')", "Permission Error"),
    ("select * from glob('/etc/*')", "Permission Error"),
    ("copy trades to '{tmp}/out.csv'", "COPY statements are refused"),
    ("create table x as select 1", "CREATE statements are refused"),
    ("insert into trades select * from trades", "INSERT statements are refused"),
    ("drop view trades", "DROP statements are refused"),
    ("attach '{tmp}/x.db' as x", "ATTACH statements are refused"),
    ("install httpfs", "LOAD statements are refused"),
    ("load json", "LOAD statements are refused"),
    ("pragma version", "PRAGMA statements are refused"),
    ("set enable_external_access = true", "SET statements are refused"),
    ("call pragma_version()", "CALL statements are refused"),
    ("select 1; select 2", "one statement per query"),
    ("export database '{tmp}/dump'", "EXPORT statements are refused"),
])
def test_read_only_refusals_are_clear_errors(service, tmp_path, sql, words):
    con = RemoteConnection(service.url, TOKEN)
    with pytest.raises(ServiceError, match=words):
        con.sql(sql.format(tmp=tmp_path))
    assert list(tmp_path.iterdir()) == [p for p in tmp_path.iterdir() if p.name == "lake"]  # nothing written
    assert con.sql("select count(*) from trades").fetchall() == [(2000,)]  # the views are intact


def test_file_reading_inside_an_accepted_select_is_refused_even_via_a_subquery(service):
    con = RemoteConnection(service.url, TOKEN)
    with pytest.raises(ServiceError, match="Permission Error"):
        con.sql("select count(*) from trades where venue in (select column0 from read_csv('/etc/passwd'))")


def test_result_over_the_row_limit_is_refused(seed_lake):
    svc = start(seed_lake, max_rows=500, batch_rows=100)
    try:
        con = RemoteConnection(svc.url, TOKEN)
        with pytest.raises(ServiceError, match="result too large: more than 500 rows"):
            con.sql("select * from trades")
        assert len(con.sql("select * from trades limit 500")) == 500
    finally:
        svc.shutdown()


def test_query_over_the_time_limit_is_stopped(seed_lake):
    svc = start(seed_lake, query_timeout_s=1.0)
    try:
        con = RemoteConnection(svc.url, TOKEN)
        with pytest.raises(ServiceError, match="exceeded the 1 s limit"):
            con.sql("select count(*) from range(100000000000) a")
        assert svc.stats["timeouts"] == 1
        assert con.sql("select count(*) from trades").fetchall() == [(2000,)]
    finally:
        svc.shutdown()


def test_queries_beyond_the_concurrency_bound_wait_then_are_refused(seed_lake):
    svc = start(seed_lake, max_queries=1, queue_wait_s=0.5, query_timeout_s=3.0)
    try:
        slow = threading.Thread(target=lambda: _swallow(
            RemoteConnection(svc.url, TOKEN).sql, "select count(*) from range(100000000000) a"))
        slow.start()
        deadline = time.monotonic() + 20
        while not svc._running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert svc._running, "the slow query never started"
        with pytest.raises(ServiceError, match="server busy: 1 queries running"):
            RemoteConnection(svc.url, TOKEN).sql("select count(*) from trades")
        slow.join(30)
        assert RemoteConnection(svc.url, TOKEN).sql("select count(*) from trades").fetchall() == [(2000,)]
    finally:
        svc.shutdown()


def _swallow(fn, *args):
    try:
        fn(*args)
    except ServiceError:
        pass


def test_fifty_concurrent_clients_all_answered(service):
    def one(i: int) -> tuple:
        con = RemoteConnection(service.url, TOKEN)
        try:
            return con.sql("select count(*), sum(qty) from trades where trade_id <> ?", [str(i)]).fetchall()[0]
        finally:
            con.close()

    with ThreadPoolExecutor(50) as ex:
        got = list(ex.map(one, range(50)))
    t = trades_frame(2000)
    for i, (n, s) in enumerate(got):
        assert n == 1999
        assert s == pytest.approx(t["qty"].sum() - t["qty"][i])


def test_queries_during_appends_and_compaction_see_whole_commits(seed_lake):
    """A writer appends 100-row commits while the lake is compacted: every remote
    count is 2000 + a multiple of 100, sums match counts, and no query fails."""
    svc = start(seed_lake)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        k = 0
        while not stop.is_set():
            try:
                seed_lake.append("trades", trades_frame(100, start=10_000 + 100 * k).with_columns(qty=1.0))
                k += 1
                if k % 5 == 0:
                    seed_lake.maintain("trades", min_files=2)  # compact + checkpoint (1 h grace)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
                return

    t = threading.Thread(target=writer)
    t.start()
    try:
        con = RemoteConnection(svc.url, TOKEN)
        base = trades_frame(2000)["qty"].sum()
        counts = []
        for _ in range(25):
            n, s = con.sql("select count(*), sum(qty) from trades").fetchall()[0]
            assert (n - 2000) % 100 == 0
            assert s == pytest.approx(base + (n - 2000) * 1.0)
            counts.append(n)
    finally:
        stop.set()
        t.join(60)
        svc.shutdown()
    assert not errors, errors
    assert counts[-1] > counts[0], "the writer never committed while querying"


def test_client_killed_mid_stream_frees_its_query(seed_lake):
    """A client process SIGKILLed while fetching a long result: the server stops the
    query (its slot comes back) and keeps serving."""
    svc = start(seed_lake, max_queries=1, batch_rows=64, queue_wait_s=20)
    code = f"""
import pyarrow.flight as fl, sys
import adbc_driver_flightsql.dbapi as fs
con = fs.connect("{svc.url}", db_kwargs={{"adbc.flight.sql.authorization_header": "Bearer {TOKEN}"}}, autocommit=True)
cur = con.cursor()
cur.execute("select a.*, b.range as k from trades a, range(100000) b")
reader = cur.fetch_record_batch()
print("reading", flush=True)
for batch in reader:
    pass
"""
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                         env={k: v for k, v in os.environ.items()})
    try:
        assert p.stdout.readline().strip() == "reading"
        deadline = time.monotonic() + 30
        while not svc._running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert svc._running
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
        con = RemoteConnection(svc.url, TOKEN)
        assert con.sql("select count(*) from trades").fetchall() == [(2000,)]  # got the only slot
        deadline = time.monotonic() + 20
        while svc._running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not svc._running
    finally:
        if p.poll() is None:
            p.kill()
        svc.shutdown()


def test_lab_refresh_on_a_remote_connection_is_a_no_op(service):
    con = lab.connect(service.url, token=TOKEN)
    lab.refresh(con)
    assert con.sql("select count(*) from trades").fetchall() == [(2000,)]
