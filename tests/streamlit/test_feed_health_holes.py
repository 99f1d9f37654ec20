"""Feed health shows the holes in the trade tape (lab.tape.ranges), or says there are none.

The feed events are written here by hand the way the recorder writes them (a run killed with
no stop event, a restart, a reconnect, a backfill that left trades missing); the expected ranges
are worked out from that story, not from lab.tape.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import st_synth as synth
from st_helpers import metrics

from lab.lake import Lake


def _events(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame([dict(zip(("ts_local", "venue", "symbol", "kind", "detail"), r)) for r in rows],
                        schema={"ts_local": pl.Datetime("us", "UTC"), "venue": pl.String, "symbol": pl.String,
                                "kind": pl.String, "detail": pl.String})


def test_feed_health_lists_each_hole_with_why_and_trades_missing(tmp_path, app_on):
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    t = lambda s: now - dt.timedelta(seconds=600 - s)  # noqa: E731 - seconds into the last 10 minutes
    lake = Lake(tmp_path / "lake")
    lake.append("quotes", synth.frames(now - dt.timedelta(seconds=2), 2.0)["quotes"])
    lake.append("feed_events", _events([
        (t(0), "recorder", None, "start", "demo pid 7 run a: binance[BTC-USDT], kraken[BTC-USD]"),
        (t(1), "binance", None, "connect", "a/binance/1 ws://x"),
        (t(1), "kraken", None, "connect", "a/kraken/1 ws://y"),
        (t(100), "binance", "BTC-USDT", "gap", "U=9 expected 8"),
        # killed; restarted 200 s later
        (t(300), "recorder", None, "start", "demo pid 8 run b: binance[BTC-USDT], kraken[BTC-USD]"),
        (t(301), "binance", None, "connect", "b/binance/1 ws://x"),
        (t(301), "kraken", None, "connect", "b/kraken/1 ws://y"),
        (t(303), "binance", "BTC-USDT", "backfill",
         "ids 100..399 asked (300); found 250 over REST in 1 request(s); hole remains: 50 trade(s) missing, ids 100..149"),
        (t(304), "kraken", "BTC-USD", "backfill", "ids 7..16 asked (10); found 10 over REST in 1 request(s); hole closed"),
        (t(400), "kraken", None, "reconnect", "b/kraken/1 ended after 99.0s (closed); retry in 0.5s"),
        (t(402), "kraken", None, "connect", "b/kraken/2 ws://y"),
    ]))

    at = app_on(str(lake.root), "pages/feed_health.py")

    assert "Holes in the trade tape" in [h.value for h in at.subheader]
    m = metrics(at)
    assert (m["Down"], m["Disconnected"], m["Backfilled"], m["Not recoverable"]) == ("0", "1", "1", "1")
    assert m["Trades not recoverable"] == "50"
    table = pl.from_pandas(next(d.value for d in at.dataframe if "why" in d.value.columns))
    got = (table.select("venue", "symbol", pl.col("start", "end").dt.replace_time_zone(None), "why",
                        pl.col("trades_missing").cast(pl.Int64))
           .sort("venue", "start").rows())
    ts = lambda s: t(s).replace(tzinfo=None)  # noqa: E731
    assert got == [
        ("binance", "BTC-USDT", ts(100), ts(300), "not recoverable", 50),
        ("kraken", "BTC-USD", ts(1), ts(300), "backfilled", 0),
        ("kraken", "BTC-USD", ts(400), ts(402), "disconnected", None),
    ]
    assert not any("No holes" in s.value for s in at.success)


def test_feed_health_says_no_holes_when_the_tape_has_none(synth_lake, app_on):
    at = app_on(synth_lake[0], "pages/feed_health.py")

    assert any(s.value.startswith("No holes in the trade tape in ") for s in at.success), [s.value for s in at.success]
