"""lab.distributed without a cluster: pinned per-(venue, symbol, day) jobs and sweeps in this process."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from lab.distributed import LocalExecutor, executor, map_days, parse_grid, sweep
from lab.errors import ConfigError, DataError
from tests.cluster.conftest import DAY0


def trade_metric(lf: pl.LazyFrame) -> pl.LazyFrame:
    return lf.select(pl.len().alias("n"), pl.col("qty").sum().alias("volume"),
                     ((pl.col("price") * pl.col("qty")).sum() / pl.col("qty").sum()).alias("vwap"))


def duckdb_reference(lake, version_filter: str = "") -> pl.DataFrame:
    import lab

    con = lab.connect(lake)
    return pl.from_arrow(con.sql(f"""
        SELECT venue, symbol, CAST(ts_exchange AS DATE) AS day, count(*) AS n, sum(qty) AS volume,
               sum(price * qty) / sum(qty) AS vwap
        FROM trades {version_filter} GROUP BY ALL ORDER BY venue, symbol, day""").to_arrow_table())


def test_map_days_metric_equals_an_independent_duckdb_query(lake3):
    job = map_days(trade_metric, "trades", DAY0, DAY0 + dt.timedelta(days=3), lake=lake3, cluster="local")

    ref = duckdb_reference(lake3)
    assert job.frame.height == 2 * 3 * 3  # venues x symbols (BTC, ETH and ETH-BTC) x days
    assert_frame_equal(job.frame.with_columns(pl.col("n").cast(pl.Int64)), ref.with_columns(pl.col("n").cast(pl.Int64)),
                       check_exact=False, rel_tol=1e-12)
    assert job.versions == {"trades": lake3.version("trades")}
    assert job.failures == [] and job.executor == "local"


def test_map_days_pinned_version_ignores_later_commits(lake3):
    v = lake3.version("trades")
    before = map_days(trade_metric, "trades", DAY0, DAY0 + dt.timedelta(days=3), lake=lake3, cluster="local")
    extra = lake3.read("trades").head(100)
    lake3.append("trades", extra.with_columns(pl.col("trade_id") + "-late"))

    pinned = map_days(trade_metric, "trades", DAY0, DAY0 + dt.timedelta(days=3), lake=lake3, version=v)
    latest = map_days(trade_metric, "trades", DAY0, DAY0 + dt.timedelta(days=3), lake=lake3)

    assert pinned.versions == {"trades": v} and latest.versions == {"trades": v + 1}
    assert_frame_equal(pinned.frame, before.frame)
    assert latest.frame["n"].sum() == before.frame["n"].sum() + 100


def test_map_days_lists_a_failing_slice_and_keeps_the_others(lake3):
    def picky(lf: pl.LazyFrame) -> pl.DataFrame:
        df = lf.collect()
        if df["venue"][0] == "coinbase":
            raise ValueError("no coinbase today")
        return df.select(pl.len().alias("n"))

    job = map_days(picky, "trades", DAY0, DAY0 + dt.timedelta(days=3), lake=lake3)

    assert job.progress.done == 9 and job.progress.failed == 9
    assert {k[0] for k, _ in job.failures} == {"coinbase"}
    assert "no coinbase today" in job.failures[0][1]
    assert set(job.frame["venue"]) == {"binance"}


def test_map_days_refuses_a_version_the_table_does_not_have(lake3):
    with pytest.raises(DataError, match="no version 99"):
        map_days(trade_metric, "trades", DAY0, DAY0 + dt.timedelta(days=1), lake=lake3, version=99)
    with pytest.raises(ConfigError, match="must be after"):
        map_days(trade_metric, "trades", DAY0, DAY0, lake=lake3)


def test_executor_is_local_when_no_cluster_is_configured(monkeypatch, lab_data):
    monkeypatch.delenv("LAB_RAY_ADDRESS", raising=False)
    assert isinstance(executor(None), LocalExecutor)
    assert isinstance(executor("auto"), LocalExecutor)
    with pytest.raises(ConfigError, match="no cluster configured"):
        executor("ray")


def test_parse_grid_is_inclusive_and_rejects_bad_specs():
    g = parse_grid("half_spread=0:2:1,skew_ticks=0.5|1")
    assert g == [{"half_spread": h, "skew_ticks": s} for h in (0.0, 1.0, 2.0) for s in (0.5, 1.0)]
    for bad in ("x", "a=1:0:1", "a=1:2:0", "a=1,a=2", "a=one"):
        with pytest.raises(ConfigError):
            parse_grid(bad)


def test_sweep_rows_carry_params_split_and_result():
    job = sweep(lambda p, k: {"y": p["a"] * k}, parse_grid("a=1:5:1"), splits=[(10,), (100,)], chunk_size=2)
    assert job.frame.sort("split", "a").rows() == [(a, s, a * k) for s, k in ((0, 10), (1, 100))
                                                   for a in (1.0, 2.0, 3.0, 4.0, 5.0)]
    assert job.progress.done == 3 * 2


def test_backtest_sweep_cli_records_runs_equal_to_single_backtests(lake3, capsys):
    from lab.backtest import load_events, run_backtest
    from lab.backtest.stats import summary
    from lab.backtest.strategies import MarketMaker
    from lab.cli import main

    rc = main(["backtest", "mm", "--lake", str(lake3.root), "--start", "2026-11-20", "--end", "2026-11-22",
               "--sweep", "half_spread=0:1:1,skew_ticks=0|1", "--cluster", "local", "--chunk-size", "3"])

    assert rc == 0
    runs = lake3.read("backtest_runs")
    assert runs.height == 4 * 2 and runs["run_id"].n_unique() == 1 and runs["error"].null_count() == 8
    assert {json.loads(v)["book_updates"] for v in runs["versions"]} == {lake3.version("book_updates")}
    # one cell, recomputed through the plain (non-sweep) path
    day1 = DAY0 + dt.timedelta(days=1)
    ev = load_events(venues=["binance"], symbols=["BTC-USDT"], start=day1, end=day1 + dt.timedelta(days=1),
                     lake=lake3)
    ref = summary(run_backtest(MarketMaker(half_spread="1", skew_ticks="0"), ev), 10_000.0)
    row = runs.filter(pl.col("params") == json.dumps({"half_spread": 1.0, "skew_ticks": 0.0}),
                      pl.col("split_start") == day1).row(0, named=True)
    assert row["pnl"] == pytest.approx(ref["pnl"], rel=1e-12) and row["n_fills"] == ref["n_fills"]
    assert "half_spread" in capsys.readouterr().out


def test_backtest_sweep_cli_rejects_an_unknown_parameter(lake3, capsys):
    from lab.cli import main

    rc = main(["backtest", "mm", "--lake", str(lake3.root), "--start", "2026-11-20", "--end", "2026-11-21",
               "--sweep", "spread_bps=1:3:1", "--cluster", "local"])
    assert rc == 2
    assert "mm has no parameter(s) ['spread_bps']" in capsys.readouterr().err


def test_vacuum_keeps_a_leased_version_until_the_job_releases_it(lake3):
    from lab.distributed import lease, leased_versions, read_pinned

    v = lake3.version("trades")
    uri = str(lake3.path("trades"))
    before = read_pinned("trades", uri, v).collect()

    with lease(lake3, {"trades": v}):
        assert leased_versions(lake3, "trades") == [v]
        out = lake3.maintain("trades", grace=dt.timedelta(0), min_files=2)
        assert out["trades"]["compacted"]["numFilesRemoved"] == 3 and out["trades"]["vacuumed"] == 0
        assert_frame_equal(read_pinned("trades", uri, v).collect(), before)  # v's files are still there

    assert leased_versions(lake3, "trades") == []
    out = lake3.maintain("trades", grace=dt.timedelta(0), min_files=2)
    assert out["trades"]["vacuumed"] == 3
    with pytest.raises(Exception, match="(?i)not found|no such file"):
        read_pinned("trades", uri, v).collect()
    assert lake3.read("trades").height == before.height  # the latest version is whole


def test_an_expired_lease_no_longer_holds_files(lake3):
    from lab.distributed import lease, leased_versions

    with lease(lake3, {"trades": 1}, ttl=dt.timedelta(seconds=-1)):
        assert leased_versions(lake3, "trades") == []


def test_backtest_day_by_day_gives_the_fills_of_one_span(lake3, tmp_path):
    from lab.backtest import load_events, run_backtest
    from lab.backtest.strategies import MarketMaker
    from lab.distributed import backtest_days

    end = DAY0 + dt.timedelta(days=3)
    mm = dict(interval_s="2", max_position="0.1")  # a requote every 2 s, gaps of a day included
    one = run_backtest(MarketMaker(**mm), load_events(venues=["binance"], symbols=["BTC-USDT"], start=DAY0, end=end,
                                                  lake=lake3))
    days: list = []

    streamed = backtest_days(MarketMaker(**mm), DAY0, end, lake=lake3, out=tmp_path / "out",
                             progress=lambda d, n: days.append((d, n)))

    assert [d for d, _ in days] == [(DAY0 + dt.timedelta(days=k)).date() for k in range(3)]
    assert sum(n for _, n in days) == one.events == streamed.events
    assert one.fills.height > 20
    assert_frame_equal(streamed.fills, one.fills)
    assert streamed.orders.height == 0 and streamed.orders_file  # the order log was streamed to disk
    assert_frame_equal(streamed.scan_orders().collect(), one.orders)
    assert_frame_equal(streamed.equity, one.equity)
    assert_frame_equal(streamed.positions, one.positions)
    assert streamed.stats() == one.stats()
