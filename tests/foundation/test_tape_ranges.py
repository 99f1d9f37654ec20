"""lab.tape.ranges: the holes in the trade tape, from hand-written feed_events.

Each frame below is written the way recorders/runtime.py and recorders/backfill.py write their rows
(start lists ``venue[SYMBOLS]``, stop is ``name pid N``, connect/reconnect are venue-wide, backfill is
per symbol); the expected ranges are worked out by hand from the story each test tells.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
from polars.testing import assert_frame_equal

from lab.tape import RANGE_SCHEMA, ranges

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


def t(s: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=s)


def events(*rows: tuple) -> pl.DataFrame:
    return pl.DataFrame([dict(zip(("ts_local", "venue", "symbol", "kind", "detail"), r)) for r in rows],
                        schema={"ts_local": pl.Datetime("us", "UTC"), "venue": pl.String, "symbol": pl.String,
                                "kind": pl.String, "detail": pl.String})


def closed(lo: int, hi: int) -> str:
    return f"ids {lo}..{hi} asked ({hi - lo + 1}); found {hi - lo + 1} over REST in 1 request(s); hole closed"


def remains(lo: int, hi: int, found: int) -> str:
    miss = hi - lo + 1 - found
    return (f"ids {lo}..{hi} asked ({hi - lo + 1}); found {found} over REST in 2 request(s); "
            f"hole remains: {miss} trade(s) missing, ids {lo}..{lo + miss - 1}")


def got(ev: pl.DataFrame) -> list[tuple]:
    return ranges(ev).select("venue", "symbol", "start", "end", "why", "trades_missing", "trades_recovered").rows()


START1 = (t(0), "recorder", None, "start", "demo pid 11 run 20260301T120000-11: binance[BTC-USDT,ETH-USDT], kraken[BTC-USD]")
START2 = (t(100), "recorder", None, "start", "demo pid 12 run 20260301T120140-12: binance[BTC-USDT,ETH-USDT], kraken[BTC-USD]")


def test_a_killed_recorder_leaves_a_down_range_per_symbol_from_its_last_event_to_the_restart():
    ev = events(
        START1,
        (t(1), "binance", None, "connect", "r1/binance/1 ws://127.0.0.1:1"),
        (t(2), "kraken", None, "connect", "r1/kraken/1 ws://127.0.0.1:2/v2"),
        (t(50), "binance", "BTC-USDT", "gap", "U=5 expected 4"),  # the last sign of life of BTC-USDT
        # killed here: no stop event
        START2,
        (t(101), "binance", None, "connect", "r2/binance/1 ws://127.0.0.1:1"),
        (t(103), "binance", "BTC-USDT", "backfill", closed(1000, 1099)),
        (t(104), "kraken", "BTC-USD", "backfill", remains(500, 529, 20)),
    )
    assert got(ev) == [
        ("binance", "BTC-USDT", t(50), t(100), "backfilled", 0, 100),
        ("binance", "ETH-USDT", t(1), t(100), "down", None, None),  # no backfill row: nothing measured
        ("kraken", "BTC-USD", t(2), t(100), "not recoverable", 10, 20),
    ]


def test_a_clean_stop_and_restart_is_down_from_the_stop_and_the_last_stop_is_the_end_of_the_tape():
    ev = events(
        START1,
        (t(1), "binance", None, "connect", "r1/binance/1 ws://x"),
        (t(60), "recorder", None, "stop", "demo pid 11"),
        START2,
        (t(160), "recorder", None, "stop", "demo pid 12"),
    )
    assert [r for r in got(ev) if r[1] == "BTC-USDT"] == [("binance", "BTC-USDT", t(60), t(100), "down", None, None)]
    assert len(got(ev)) == 3  # one per symbol of the run; nothing after the final stop


def test_a_reconnect_is_a_disconnected_range_for_each_symbol_of_the_venue_until_the_next_connect():
    ev = events(
        START1,
        (t(1), "binance", None, "connect", "r1/binance/1 ws://x"),
        (t(2), "kraken", None, "connect", "r1/kraken/1 ws://y"),
        (t(30), "binance", None, "stale", "r1/binance/1: no message for 10.2s"),
        (t(30), "binance", None, "reconnect", "r1/binance/1 ended after 29.0s (closed); retry in 0.5s"),
        (t(31), "binance", None, "connect", "r1/binance/2 ws://x"),
        (t(33), "binance", "ETH-USDT", "backfill", closed(7, 9)),
        (t(40), "kraken", None, "reconnect", "r1/kraken/1 ended after 38.0s (ConnectionClosed); retry in 0.6s"),
    )
    assert got(ev) == [
        ("binance", "BTC-USDT", t(30), t(31), "disconnected", None, None),
        ("binance", "ETH-USDT", t(30), t(31), "backfilled", 0, 3),
        ("kraken", "BTC-USD", t(40), None, "disconnected", None, None),  # not reconnected (yet)
    ]


def test_a_backfill_after_no_outage_or_long_after_one_is_a_live_gap_at_its_own_time():
    ev = events(
        START1,
        (t(1), "binance", None, "connect", "r1/binance/1 ws://x"),
        (t(10), "binance", None, "reconnect", "r1/binance/1 ended"),
        (t(11), "binance", None, "connect", "r1/binance/2 ws://x"),
        (t(12), "binance", "BTC-USDT", "backfill", closed(50, 52)),      # the reconnect's hole
        (t(20), "binance", "BTC-USDT", "backfill", remains(90, 99, 7)),  # a live trade-id gap
        (t(900), "binance", "ETH-USDT", "backfill", closed(5, 5)),        # 889 s after the range: not its own
    )
    assert got(ev) == [
        ("binance", "BTC-USDT", t(10), t(11), "backfilled", 0, 3),
        ("binance", "BTC-USDT", t(20), t(20), "not recoverable", 3, 7),
        ("binance", "ETH-USDT", t(10), t(11), "disconnected", None, None),
        ("binance", "ETH-USDT", t(900), t(900), "backfilled", 0, 1),
    ]


def test_no_lifecycle_events_means_no_holes_and_the_schema_holds():
    ev = events((t(5), "binance", "BTC-USDT", "gap", "U=5 expected 4"))
    out = ranges(ev.lazy())
    assert_frame_equal(out, pl.DataFrame(schema=RANGE_SCHEMA))
    assert ranges(events()).schema == pl.Schema(RANGE_SCHEMA)


def test_every_why_is_one_of_the_four_and_details_say_what_happened():
    ev = events(
        START1,
        (t(1), "binance", None, "connect", "r1/binance/1 ws://x"),
        START2,
        (t(101), "binance", None, "connect", "r2/binance/1 ws://x"),
        (t(102), "binance", "BTC-USDT", "backfill", remains(10, 19, 0)),
    )
    out = ranges(ev)
    assert set(out["why"]) <= {"down", "disconnected", "backfilled", "not recoverable"}
    btc = out.filter(pl.col("symbol") == "BTC-USDT").row(0, named=True)
    assert "killed" in btc["detail"] and "ids 10..19" in btc["detail"] and btc["trades_missing"] == 10


def test_lab_status_prints_the_holes_and_lists_them_in_json(tmp_path, capsys):
    import json

    from lab.cli import main
    from lab.lake import Lake

    lake = Lake(tmp_path / "lake")
    lake.append("feed_events", events(
        START1,
        (t(1), "binance", None, "connect", "r1/binance/1 ws://x"),
        (t(2), "kraken", None, "connect", "r1/kraken/1 ws://y"),
        START2,
        (t(103), "binance", "BTC-USDT", "backfill", closed(1000, 1099)),
    ))
    args = ["status", "--lake", str(lake.root), "--run-dir", str(tmp_path / "run")]

    assert main(args) == 0
    out = capsys.readouterr().out
    holes = out.split("trade tape holes", 1)[1].splitlines()[1:4]
    assert holes == [
        "  binance   BTC-USDT   2026-03-01 12:00:01 -> 12:01:40 (99.0 s)  backfilled  0 missing, 100 recovered",
        "  binance   ETH-USDT   2026-03-01 12:00:01 -> 12:01:40 (99.0 s)  down  missing: not measured",
        "  kraken    BTC-USD    2026-03-01 12:00:02 -> 12:01:40 (98.0 s)  down  missing: not measured",
    ]

    assert main([*args, "--json"]) == 0
    got_json = json.loads(capsys.readouterr().out)["tape_ranges"]
    assert [(r["venue"], r["symbol"], r["start"], r["end"], r["why"], r["trades_missing"]) for r in got_json] == [
        ("binance", "BTC-USDT", "2026-03-01T12:00:01+00:00", "2026-03-01T12:01:40+00:00", "backfilled", 0),
        ("binance", "ETH-USDT", "2026-03-01T12:00:01+00:00", "2026-03-01T12:01:40+00:00", "down", None),
        ("kraken", "BTC-USD", "2026-03-01T12:00:02+00:00", "2026-03-01T12:01:40+00:00", "down", None),
    ]


def test_lab_status_says_no_holes_when_there_are_none(tmp_path, capsys):
    from lab.cli import main
    from lab.lake import Lake

    lake = Lake(tmp_path / "lake")
    lake.append("feed_events", events(START1, (t(1), "binance", None, "connect", "r1/binance/1 ws://x")))
    assert main(["status", "--lake", str(lake.root), "--run-dir", str(tmp_path / "run")]) == 0
    assert "trade tape: no holes" in capsys.readouterr().out
