"""lab.micro.summary_days and the arbitrage scan over several days: map_days gives the one-pass result."""

from __future__ import annotations

import datetime as dt

import polars as pl
from polars.testing import assert_frame_equal

from lab.lake import Lake
from tests.cluster.conftest import DAY0


def test_summary_days_equals_one_pass_by_day_and_duckdb_counts(lake3):
    import lab
    from lab import micro

    end = DAY0 + dt.timedelta(days=3)

    got = micro.summary_days(DAY0, end, lake=lake3, cluster="local")

    day = pl.col("ts_exchange").dt.date().alias("day")
    one = (micro.summary(lake3.scan("trades").with_columns(day), lake3.scan("quotes").with_columns(day),
                         by=("venue", "symbol", "day")).collect()
           .select("venue", "symbol", "day", pl.exclude("venue", "symbol", "day")).sort("venue", "symbol", "day"))
    assert got.height == 2 * 3 * 3
    assert_frame_equal(got, one)
    ref = pl.from_arrow(lab.connect(lake3).sql(
        "SELECT venue, symbol, CAST(ts_exchange AS DATE) AS day, count(*) AS trades, sum(qty) AS volume "
        "FROM trades GROUP BY ALL ORDER BY ALL").to_arrow_table())
    assert_frame_equal(got.select("venue", "symbol", "day", "trades", "volume"), ref, check_dtypes=False,
                       check_exact=False, rel_tol=1e-12)
    # one day: one pass, same rows as that day's part of the job
    d1 = micro.summary_days(DAY0 + dt.timedelta(days=1), DAY0 + dt.timedelta(days=2), lake=lake3)
    assert_frame_equal(d1, got.filter(pl.col("day") == (DAY0 + dt.timedelta(days=1)).date()))


def midnight_quotes(root) -> Lake:
    """binance BTC-USDT and coinbase BTC-USD quoting every 100 ms (received 2 ms later) from
    23:59:58 to 00:00:02 of two nights; binance's ask is below coinbase's bid from 23:59:59.5 to
    00:00:00.5 of the first night (an opportunity across midnight), and never otherwise."""
    m1 = DAY0 + dt.timedelta(days=1)
    rows = []
    for m in (m1, m1 + dt.timedelta(days=1)):
        for k in range(-20, 21):
            t = m + dt.timedelta(milliseconds=100 * k)
            cheap = m is m1 and -5 <= k <= 5
            for venue, symbol, bid, ask in (("binance", "BTC-USDT", 99.0, 99.5 if cheap else 100.5),
                                            ("coinbase", "BTC-USD", 100.0 if cheap else 99.0, 101.0)):
                rows.append({"ts_exchange": t, "ts_local": t + dt.timedelta(milliseconds=2), "venue": venue,
                             "symbol": symbol, "bid_px": bid, "bid_qty": 1.0, "ask_px": ask, "ask_qty": 1.0})
    lake = Lake(root)
    lake.append("quotes", pl.DataFrame(rows))
    return lake


def test_arbitrage_scan_by_day_keeps_an_opportunity_across_midnight_whole(tmp_path):
    from lab.arbitrage.historical import cross_venue, episodes, scan

    lake = midnight_quotes(tmp_path / "lake")
    end = DAY0 + dt.timedelta(days=3)
    kw = dict(fees=0.0, size=0.5, max_age=250.0, keep="episodes")

    got = scan(DAY0, end, lake=lake, cluster="local", **kw)

    one = cross_venue(lake.scan("quotes"), **kw).collect()
    assert_frame_equal(got, one)
    eps = episodes(got.lazy()).collect()
    m1 = DAY0 + dt.timedelta(days=1)
    assert eps.height == 1  # one opportunity, opened before midnight and closed after it
    assert eps["start"][0] == m1 + dt.timedelta(milliseconds=-500 + 2)
    assert eps["end"][0] == m1 + dt.timedelta(milliseconds=600 + 2)
    assert (eps["buy_venue"][0], eps["sell_venue"][0]) == ("binance", "coinbase")
    signals = scan(DAY0, end, lake=lake, cluster="local", fees=0.0, size=0.5, max_age=250.0)
    assert_frame_equal(signals, cross_venue(lake.scan("quotes"), fees=0.0, size=0.5, max_age=250.0).collect())
    assert signals.height > 0 and signals["ts"].min() < m1 <= signals["ts"].max()
