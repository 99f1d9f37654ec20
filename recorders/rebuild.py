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

from collections.abc import Iterator

import polars as pl

from lab.lake import Lake
from recorders.venues import adapter_for
from recorders.venues.base import Adapter, Rows, TradeIds

__all__ = ["rebuild", "replay_journal"]

TABLES = ("trades", "book_updates", "quotes", "book_snapshots", "feed_events")
_PARSE_EVENTS = ("gap", "resync", "checksum_failure", "rejected_message", "snapshot_stale",
                 "out_of_order", "venue_error", "bad_value", "crossed_book", "silence", "lag",
                 "lag_end")


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
    _carry_backfill(src, dst, venue, counts)
    return counts


def _carry_backfill(src: Lake, dst: Lake, venue: str | None, counts: dict[str, int]) -> None:
    """Trades backfilled over REST (``source = 'rest'``, recorders/backfill.py) are not in the
    journal: copy them (and their ``backfill`` feed events) from ``src``, minus any id the
    journal already gave."""
    if not src.exists("trades") or "source" not in src.scan("trades").collect_schema().names():
        return
    rest = src.scan("trades", venue=venue).filter(pl.col("source") == "rest").collect()
    if rest.height:
        if dst.exists("trades"):
            have = dst.scan("trades", venue=venue).select("venue", "symbol", "trade_id").collect()
            rest = rest.join(have, on=["venue", "symbol", "trade_id"], how="anti")
        if rest.height:
            dst.append("trades", rest)
            counts["trades"] = counts.get("trades", 0) + rest.height
    if src.exists("feed_events"):
        ev = src.scan("feed_events", venue=venue).filter(pl.col("kind") == "backfill").collect()
        if ev.height:
            dst.append("feed_events", ev)
            counts["feed_events"] = counts.get("feed_events", 0) + ev.height
