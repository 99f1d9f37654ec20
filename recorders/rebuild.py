"""``lab rebuild --from-journal``: re-parse the raw_messages journal into the
normalised tables (trades, book_updates, quotes, book_snapshots and the
parse-derived feed_events), exactly as the recorder produced them.

The journal carries everything the adapters saw: each WebSocket message with
its receive time, connection id (``<run>/<venue>/<n>``) and a per-process
receive sequence, and each REST snapshot body (connection id
``rest/<run>/<venue>/<n>/<symbol>``). Replaying them in receive order through
fresh adapters, one per connection, gives the same rows.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from lab.lake import Lake, default_lake
from recorders.venues import adapter_for
from recorders.venues.base import Adapter, Rows, TradeIds

__all__ = ["add_arguments", "run", "rebuild", "replay_journal"]

TABLES = ("trades", "book_updates", "quotes", "book_snapshots", "feed_events")
_PARSE_EVENTS = ("gap", "resync", "checksum_failure", "rejected_message", "snapshot_stale",
                 "out_of_order", "venue_error")


def _journal(lake: Lake, venue: str | None) -> pl.DataFrame:
    lf = lake.scan("raw_messages", venue=venue)
    lf = lf.with_columns(
        pl.when(pl.col("conn_id").str.starts_with("rest/"))
        .then(pl.col("conn_id").str.split("/").list.get(1))
        .otherwise(pl.col("conn_id").str.split("/").list.get(0)).alias("_run"))
    lf = lf.with_columns(pl.col("ts_local").min().over("_run").alias("_run_start"))
    return lf.sort("_run_start", "_run", "recv_seq").collect()


def replay_journal(journal: pl.DataFrame, symbols: dict[str, list[str]],
                   depths: dict[str, int] | None = None,
                   chunk_rows: int = 500_000) -> Iterator[tuple[int, Rows]]:
    """Yield ``(messages consumed, rows)`` batches re-parsed from a sorted journal
    frame; ``symbols`` gives each venue's recorded symbols."""
    depths = depths or {}
    done = 0
    out = Rows()
    adapters: dict[str, Adapter] = {}          # ws conn_id -> adapter
    by_run_venue: dict[tuple[str, str], list[Adapter]] = {}
    trade_ids: dict[str, TradeIds] = {}
    ts_us = journal["ts_local"].dt.epoch("us").to_list()
    cols = zip(ts_us, journal["venue"].to_list(), journal["conn_id"].to_list(),
               journal["payload"].to_list())
    for ts, venue, conn_id, payload in cols:
        if conn_id.startswith("rest/"):
            _, rest = conn_id.split("/", 1)
            ws_id, symbol = rest.rsplit("/", 1)
            a = adapters.get(ws_id)
            if a is None:
                continue
            a.out = out
            try:
                a.on_snapshot(symbol, payload, ts)
            except Exception as e:  # noqa: BLE001 - as the recorder does
                a.reject(payload, ts, e, symbol)
            a.actions.clear()
        else:
            a = adapters.get(conn_id)
            if a is None:
                run = conn_id.split("/", 1)[0]
                cls = adapter_for(venue)
                kw = {"depth": depths[venue]} if venue in depths else {}
                a = cls(symbols[venue], out,
                        trade_ids=trade_ids.setdefault(venue, TradeIds()), **kw)
                older = by_run_venue.setdefault((run, venue), [])
                for o in older:  # the newest connection owns the books
                    o.book_enabled = False
                older.append(a)
                adapters[conn_id] = a
            a.out = out
            a.feed(payload, ts)
            a.actions.clear()
        done += 1
        if len(out) >= chunk_rows:
            yield done, out
            done, out = 0, Rows()
    yield done, out


def rebuild(src: Lake, dst: Lake, *, venue: str | None = None, symbols: dict[str, list[str]] | None = None,
            depths: dict[str, int] | None = None, progress: bool = False) -> dict[str, int]:
    """Re-parse ``src``'s journal into ``dst``; return rows written per table."""
    journal = _journal(src, venue)
    hint: dict[str, list[str]] = {}
    for v in journal["venue"].unique().to_list():
        if symbols and v in symbols:
            hint[v] = [s.upper() for s in symbols[v]]
        else:
            syms = set()
            for t in ("book_updates", "trades", "feed_events"):
                syms |= set(src.scan(t, venue=v).select("symbol").drop_nulls().unique()
                            .collect()["symbol"].to_list())
            hint[v] = sorted(syms) or ["BTC-USDT"]
    counts: dict[str, int] = {}
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=journal.height, unit="msg", desc="rebuild")
    for n, rows in replay_journal(journal, hint, depths):
        for table in TABLES:
            if not rows.count(table):
                continue
            df = rows.frame(table)
            if table == "feed_events":
                df = df.filter(pl.col("kind").is_in(_PARSE_EVENTS))
            if df.height:
                dst.append(table, df)
                counts[table] = counts.get(table, 0) + df.height
        if bar is not None:
            bar.update(n)
    if bar is not None:
        bar.close()
    return counts


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Re-parse the raw_messages journal into trades, book_updates, quotes, "
                     "book_snapshots and parse-derived feed_events, reproducing what the recorder wrote.")
    p.add_argument("--from-journal", action="store_true", required=True,
                   help="rebuild from the raw_messages journal (the only source for now)")
    p.add_argument("--lake", help="lake holding the journal (default: $LAB_DATA/lake)")
    p.add_argument("--out", required=True, help="lake directory to write the rebuilt tables into "
                   "(must not already hold them)")
    p.add_argument("--venue", help="only this venue")
    p.add_argument("--symbols", action="append", metavar="VENUE=SYM,SYM",
                   help="symbols a venue was recorded with (default: those found in the lake)")
    p.add_argument("--depth", action="append", metavar="VENUE=N",
                   help="book depth a venue was recorded with (Kraken; default the adapter's)")


def run(args: argparse.Namespace) -> int:
    src = Lake(args.lake) if args.lake else default_lake()
    dst = Lake(args.out)
    if Path(args.out).resolve() == src.root.resolve():
        print("lab rebuild: --out must differ from the source lake", file=sys.stderr)
        return 2
    busy = [t for t in TABLES if dst.exists(t)]
    if busy:
        print(f"lab rebuild: {args.out} already has {busy}; choose an empty --out", file=sys.stderr)
        return 2
    if not src.exists("raw_messages"):
        print(f"lab rebuild: no raw_messages journal in {src.root}", file=sys.stderr)
        return 2
    depths = {k: int(v) for k, v in (d.split("=", 1) for d in args.depth or [])}
    syms = {k: v.split(",") for k, v in (d.split("=", 1) for d in args.symbols or [])}
    counts = rebuild(src, dst, venue=args.venue, symbols=syms or None, depths=depths, progress=True)
    for t, n in counts.items():
        print(f"{t}: {n} rows")
    return 0
