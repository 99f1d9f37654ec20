"""``lab backtest`` over a range that crosses midnight runs day by day (one engine, one day of
events in memory) and prints and writes what one run over the whole range gives."""

from __future__ import annotations

import datetime as dt
import json
import math

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from lab.apps.backtest import make_strategy
from lab.backtest import BacktestConfig, load_events, run_backtest
from lab.backtest.stats import summary
from lab.cli import main
from lab.lake import Lake

MIDNIGHT = dt.datetime(2026, 11, 22, tzinfo=dt.timezone.utc)
TS = "ts_local"


@pytest.fixture(scope="module")
def midnight_lake(tmp_path_factory):
    """8 simulated minutes of binance BTC-USDT, 23:56 to 00:04 UTC."""
    from recorders.sim.bulk import write_to_lake

    lake = Lake(tmp_path_factory.mktemp("midnight") / "lake")
    write_to_lake(lake, start=MIDNIGHT - dt.timedelta(minutes=4), duration=dt.timedelta(minutes=8),
                  venues=("binance",), assets=("BTC",), seed=11)
    return lake


def _one_run(lake: Lake, start=None, end=None):
    """The reference: the whole range loaded at once and run in one pass (the engine's default model,
    as the CLI's defaults give it)."""
    ev = load_events(lake=lake, venues=["binance"], symbols=["BTC-USDT"], start=start, end=end)
    return run_backtest(make_strategy("mm", {"interval_s": "0.5"}), ev, BacktestConfig())


@pytest.mark.parametrize("bounds", [(), ("--start", "2026-11-21T23:58", "--end", "2026-11-22T00:02")])
def test_a_range_across_midnight_runs_day_by_day_and_equals_one_run(midnight_lake, tmp_path, capsys, bounds):
    out = tmp_path / "out"
    rc = main(["backtest", "mm", "--lake", str(midnight_lake.root), "-p", "interval_s=0.5", *bounds,
               "--json", "--out", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "2 days, one at a time" in cap.err
    st = json.loads(cap.out)
    start = dt.datetime.fromisoformat(bounds[1] + "+00:00") if bounds else None
    end = dt.datetime.fromisoformat(bounds[3] + "+00:00") if bounds else None
    ref = _one_run(midnight_lake, start, end)
    want = summary(ref)
    fills = pl.read_parquet(out / "fills.parquet")
    assert fills[TS].min() < MIDNIGHT <= fills[TS].max()  # it traded on both days
    for k, v in want.items():
        if isinstance(v, float):
            assert math.isclose(st[k], v, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(v) and st[k] is None), k
        elif isinstance(v, (int, str)):
            assert st[k] == v, k
    assert_frame_equal(fills, ref.fills)
    assert pl.read_parquet(out / "orders.parquet").height == ref.orders.height
    assert_frame_equal(pl.read_parquet(out / "equity.parquet"), ref.equity)


def test_a_range_within_one_day_still_runs_in_one_pass(midnight_lake, capsys):
    rc = main(["backtest", "mm", "--lake", str(midnight_lake.root), "-p", "interval_s=0.5",
               "--start", "2026-11-22T00:00", "--json"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "one at a time" not in cap.err and "loading binance:BTC-USDT" in cap.err
    want = summary(_one_run(midnight_lake, MIDNIGHT))
    assert json.loads(cap.out)["n_fills"] == want["n_fills"] > 0
