"""Remote SQL through the data service, with clients in other processes (ADBC Flight SQL)."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from svchelp import TOKEN, private_ca, run_client, start, trades_frame

import lab

SEED_TRADES = """
  SELECT time_bucket(INTERVAL '1 second', timestamp) as bucket, avg(price) as avg_price,
         sum(volume) as total_volume
  FROM trades WHERE symbol = 'BTC-USD' AND timestamp > current_timestamp - INTERVAL '1 hour'
  GROUP BY bucket ORDER BY bucket DESC"""
SEED_ARB = """
  SELECT timestamp, exchange_a, exchange_b, asset, profit_pct, volume_usd
  FROM arbitrage_signals
  WHERE timestamp > now() - INTERVAL '24 hours'
  ORDER BY profit_pct DESC
  LIMIT 100"""


def test_seed_queries_from_another_process_equal_local(service, seed_lake):
    got = run_client(f'''
        import json, lab
        con = lab.connect("{service.url}", token="{TOKEN}")
        a = con.sql(A[0]).pl()
        b = con.execute(A[1]).pl()
        bars = con.sql("select count(*) from ohlcv_1s").fetchall()[0][0]
        macro = con.sql("select count(*) from ohlcv(INTERVAL 1 MINUTE)").fetchall()[0][0]
        print(json.dumps({{"a": a.write_csv(), "b": b.write_csv(), "ah": a.height, "bars": bars, "macro": macro}}))
    ''', args=[SEED_TRADES, SEED_ARB])
    local = lab.connect(seed_lake)
    want_a = local.sql(SEED_TRADES).pl()
    want_b = local.sql(SEED_ARB).pl()
    assert got["ah"] == want_a.height > 0
    assert got["a"] == want_a.write_csv()
    assert got["b"] == want_b.write_csv() and want_b.height == 100
    # independent: one bar per distinct second of the trades
    t = trades_frame(2000)
    assert got["bars"] == t["ts_exchange"].dt.truncate("1s").n_unique()
    assert got["macro"] == t["ts_exchange"].dt.truncate("1m").n_unique()


def test_prepared_statement_parameters_from_adbc(service):
    got = run_client(f'''
        import json
        import adbc_driver_flightsql.dbapi as fs
        con = fs.connect("{service.url}", db_kwargs={{"adbc.flight.sql.authorization_header": "Bearer {TOKEN}"}},
                         autocommit=True)
        cur = con.cursor()
        cur.execute("select count(*), sum(qty) from trades where price > ? and side = ?", (150.0, "buy"))
        a = cur.fetchall()
        cur.execute("select count(*), sum(qty) from trades where price > ? and side = ?", (120.0, "sell"))
        b = cur.fetchall()
        cur.close(); con.close()
        print(json.dumps({{"a": a, "b": b}}))
    ''')
    t = trades_frame(2000)
    for key, px, side in (("a", 150.0, "buy"), ("b", 120.0, "sell")):
        sel = t.filter((pl.col("price") > px) & (pl.col("side") == side))
        assert got[key][0][0] == sel.height > 0
        assert got[key][0][1] == pytest.approx(sel["qty"].sum())


def test_missing_or_wrong_token_is_refused(service):
    got = run_client(f'''
        import json
        import adbc_driver_flightsql.dbapi as fs
        out = {{}}
        for name, kw in (("missing", {{}}), ("wrong", {{"adbc.flight.sql.authorization_header": "Bearer nope"}})):
            try:
                con = fs.connect("{service.url}", db_kwargs=kw, autocommit=True)
                cur = con.cursor(); cur.execute("select count(*) from trades"); cur.fetchall()
                out[name] = "accepted"
            except Exception as e:
                out[name] = str(e)
        print(json.dumps(out))
    ''')
    assert "missing token" in got["missing"] and "Unauthenticated" in got["missing"]
    assert "wrong token" in got["wrong"] and "Unauthenticated" in got["wrong"]


def test_tls_with_private_ca_accepted_and_untrusted_ca_refused(seed_lake, tmp_path):
    chain, key = private_ca(tmp_path)
    svc = start(seed_lake, tls_cert=str(chain), tls_key=str(key))
    try:
        assert svc.url.startswith("grpc+tls://")
        got = run_client(f'''
            import lab
            out = {{}}
            for name in ("ca", "other"):
                try:
                    con = lab.connect("{svc.url}", token="{TOKEN}", tls_root_certs=A[name])
                    out[name] = con.sql("select count(*) from trades").fetchall()[0][0]
                except Exception as e:
                    out[name] = str(e)
            print(json.dumps(out))
        ''', args={"ca": str(tmp_path / "ca.pem"), "other": str(tmp_path / "other.pem")})
        assert got["ca"] == 2000
        assert isinstance(got["other"], str) and "certificate" in got["other"].lower(), got
    finally:
        svc.shutdown()


def test_next_query_sees_new_commits(service, seed_lake):
    con = lab.connect(service.url, token=TOKEN)
    assert con.sql("select count(*) from trades").fetchall() == [(2000,)]
    seed_lake.append("trades", trades_frame(10, start=5000))
    assert con.sql("select count(*) from trades").fetchall() == [(2010,)]


def test_remote_frames_equal_local_frames(service, seed_lake):
    q = "select * from trades where side = ? order by trade_id"
    got = lab.connect(service.url, token=TOKEN).sql(q, ["buy"]).pl()
    want = lab.connect(seed_lake).sql(q, params=["buy"]).pl()
    assert_frame_equal(got, want)


def test_lab_service_env_points_default_connect_at_the_service(service, monkeypatch, tmp_path):
    monkeypatch.setenv("LAB_SERVICE", service.url)
    monkeypatch.setenv("LAB_SERVICE_TOKEN", TOKEN)
    monkeypatch.setenv("LAB_DATA", str(tmp_path / "elsewhere"))  # the local default lake is empty
    assert lab.connect().sql("select count(*) from trades").fetchall() == [(2000,)]
    assert lab.connect(str(tmp_path / "elsewhere" / "lake")).sql("select count(*) from trades").fetchall() == [(2000,)]
    other = tmp_path / "other"  # an explicit other path stays local
    assert lab.connect(str(other)).sql("select count(*) from trades").fetchall() == [(0,)]


def test_dashboard_sql_reads_from_the_service_when_lab_service_is_set(service, monkeypatch, tmp_path):
    """The dashboards' SQL helper, unchanged, reads the remote lake under LAB_SERVICE."""
    from streamlit_apps import data

    monkeypatch.setenv("LAB_LAKE", str(tmp_path / "empty_lake"))
    monkeypatch.setenv("LAB_SERVICE", service.url)
    monkeypatch.setenv("LAB_SERVICE_TOKEN", TOKEN)
    got = data.sql("select count(*) as n, max(price) as px from trades where side = ?", ["buy"])
    t = trades_frame(2000).filter(pl.col("side") == "buy")
    assert got.to_dicts() == [{"n": t.height, "px": t["price"].max()}]


def test_adbc_catalog_calls_list_the_lake_views_with_their_schemas(service, seed_lake):
    con = lab.connect(service.url, token=TOKEN)
    schema = con.adbc.adbc_get_table_schema("trades")
    local = lab.connect(seed_lake).sql("select * from trades limit 0").to_arrow_table().schema
    assert schema.names == local.names and schema.types == local.types
    objects = con.adbc.adbc_get_objects(depth="tables").read_all().to_pylist()
    tables = {t["table_name"] for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"]}
    assert {"trades", "quotes", "book_updates", "arbitrage_signals", "ohlcv_1s"} <= tables
