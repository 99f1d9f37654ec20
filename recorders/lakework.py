"""A recorder's reads and commits of the lake, in a short-lived child process.

A recorder with ``committer = "maintainer"`` (:mod:`lab.tail`) only writes tail files. The
few things it needs from the Delta tables run here, in a child that exits when done, so the
recorder never loads delta-rs and never maps the Polars query engine's code for a read it
makes once:

- ``start``: commit the tail files stopped recorders left (:func:`lab.tail.settle`, the
  journal first), create the tables the recorder writes (so a fresh ``lab.connect()`` sees
  them before the first commit), and read the newest trade ids per symbol
  (:func:`seed_ids`, so a restart duplicates none) and the trade-id ranges earlier recorders
  asked the venues for (:func:`asked_before`, so a hole is asked for once);
- ``settle``: commit the tail (the recorder's own files, once it has stopped writing);
- ``trade_ts``: the exchange time of one trade the lake holds (the backfill of a venue that
  pages its history by time, after a hole: rare).

The request is one JSON object on stdin, the answer one on stdout; warnings go to stderr.

    python -m recorders.lakework start < request.json
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

import polars as pl

from lab.lake import Lake

__all__ = ["SEED_WINDOWS", "seed_ids", "asked_before", "trade_ts", "settle_tail", "run", "main"]

log = logging.getLogger("recorders")

#: look-back windows (s) read in turn at start-up until every symbol has its trade ids to seed
SEED_WINDOWS = (60.0, 600.0, 3600.0)


def seed_ids(lake: Lake, wants: list[tuple[str, list[str], int]], seed_hours: float) -> dict[str, dict[str, list]]:
    """The newest trade ids the lake holds for each ``(venue, symbols, how many)`` of ``wants``,
    per symbol in the order they were received: ``{venue: {symbol: [ids]}}``.

    What a restart can receive again is recent (see :class:`recorders.venues.base.TradeIds`), so
    the lake is read in widening windows (:data:`SEED_WINDOWS`, up to ``seed_hours``) until every
    symbol has its ids: start-up holds a bounded number of ids however much history the lake
    holds. The files are read by :meth:`Lake.scan_files` (no pyarrow), the newest ids per symbol
    picked with ``top_k_by``, so start-up does not hold hours of trades in memory. A venue whose
    read fails keeps what was read (a warning says so)."""
    out: dict[str, dict[str, list]] = {}
    if not lake.exists("trades"):
        return out
    try:
        scan = lake.scan_files("trades")
    except Exception as e:  # noqa: BLE001 - a damaged table: record without dedupe against it
        log.warning("could not seed trade ids: %s", e)
        return out
    now = dt.datetime.now(dt.timezone.utc)
    windows = [w for w in SEED_WINDOWS if w < seed_hours * 3600] + [seed_hours * 3600]
    for venue, symbols, want in wants:
        syms = [s.upper() for s in symbols]
        got: dict[str, list] = {}
        try:
            for w in windows:
                need = [s for s in syms if len(got.get(s, ())) < want]
                if not need:
                    break
                df = (scan.filter(pl.col("venue") == venue, pl.col("symbol").is_in(need),
                                  pl.col("ts_local") >= now - dt.timedelta(seconds=w))
                      .group_by("symbol")
                      .agg(pl.struct("ts_local", "trade_id").top_k_by("ts_local", want).alias("t"))
                      .explode("t").unnest("t")
                      # in the order they were received: the backfill looks for the newest
                      # id held and for holes among the newest ones
                      .sort("ts_local", maintain_order=True)
                      .collect(engine="streaming"))
                for (sym,), part in df.partition_by("symbol", as_dict=True, maintain_order=True).items():
                    got[str(sym)] = part["trade_id"].to_list()
        except Exception as e:  # noqa: BLE001 - seed what was read; dedupe of the rest is lost
            log.warning("could not seed trade ids for %s: %s", venue, e)
        out[venue] = got
    return out


def asked_before(lake: Lake, since: dt.datetime) -> list[tuple[str, str, int, int]]:
    """The trade-id ranges earlier recorders asked the venues for since ``since`` (their
    ``backfill`` feed events): ``(venue, symbol, lo, hi)``. Raises what the read raises."""
    if not lake.exists("feed_events"):
        return []
    # scan_files, not scan: the recorder never loads pyarrow (Lake.scan_files)
    df = (lake.scan_files("feed_events")
          .filter(pl.col("ts_local") >= since, pl.col("kind") == "backfill")
          .select("venue", "symbol", ids=pl.col("detail").str.extract_groups(r"^ids (\d+)\.\.(\d+) asked"))
          .unnest("ids").drop_nulls().collect())
    return [(v, s, int(lo), int(hi)) for v, s, lo, hi in df.iter_rows()]


def trade_ts(lake: Lake, venue: str, symbol: str, trade_id: str, since: dt.datetime) -> int | None:
    """Exchange time (µs) of trade ``trade_id`` of ``venue`` ``symbol`` received since ``since``,
    or None when the lake does not hold it. Raises what the read raises. The time filter prunes
    the read to the newest files by their statistics."""
    df = (lake.scan_files("trades")
          .filter(pl.col("ts_local") >= since, pl.col("venue") == venue, pl.col("symbol") == symbol,
                  pl.col("trade_id") == trade_id).select(pl.col("ts_exchange").dt.epoch("us"))
          .collect())
    return int(df.item(0, 0)) if df.height else None


def _since(hours: float) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=hours)


def settle_tail(lake: Lake) -> dict[str, int]:
    """Commit the tail files no live committer holds (:func:`lab.tail.settle`, the journal first);
    rows committed per table (``{}`` for an object-store lake, which has no tail, and on failure,
    said in a warning: the maintainer retries, recording goes on)."""
    if getattr(lake, "remote", False):
        return {}
    from lab.tail import settle

    try:
        done = settle(lake)
    except Exception as e:  # noqa: BLE001 - the maintainer retries; recording goes on
        log.warning("could not commit the tail a previous recorder left: %s", str(e).splitlines()[0][:300])
        return {}
    return {t: d["adopted"] for t, d in done.items() if d.get("adopted")}


def run(what: str, req: dict[str, Any]) -> dict[str, Any]:
    """Do ``what`` ("start", "settle" or "trade_ts") for the request ``req``; the answer to print."""
    lake = Lake(req["lake"])
    if what == "trade_ts":
        return {"ts": trade_ts(lake, req["venue"], req["symbol"], str(req["trade_id"]), _since(req["since_hours"]))}
    out: dict[str, Any] = {"adopted": settle_tail(lake)}
    if what == "start":
        for table in req.get("ensure", []):
            try:
                lake._ensure(table)
            except Exception as e:  # noqa: BLE001 - the first commit creates it instead
                log.warning("could not create lake table %s: %s", table, str(e).splitlines()[0][:300])
        out["seeds"] = seed_ids(lake, [(v, list(s), int(n)) for v, s, n in req.get("seed", [])],
                                float(req.get("seed_hours", 6.0)))
        if "asked_since_hours" in req:
            try:
                out["asked"] = asked_before(lake, _since(req["asked_since_hours"]))
            except Exception as e:  # noqa: BLE001 - without them a hole may be asked for twice, no worse
                log.warning("backfill: could not read earlier backfill events: %s", e)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in ("start", "settle", "trade_ts"):
        print("usage: python -m recorders.lakework start|settle|trade_ts < request.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    req = json.loads(sys.stdin.read() or "{}")
    json.dump(run(args[0], req), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
