"""Canonical lake tables: exact column names and dtypes.

Every table is a Delta Lake table under ``$LAB_DATA/lake/<name>`` (not
partitioned: measured here, delta-rs' partitioned writer cost 3x the
unpartitioned one, and time pruning comes from file and row-group statistics
since rows arrive in time order). Timestamps are UTC with microsecond precision (Delta Lake's
timestamp type); prices and sizes are ``Float64`` parsed once at the adapter
from the venue's decimal strings. Symbols are ``BASE-QUOTE`` (``BTC-USDT``),
venues lower-case (``binance``). Sides are lower-case: trades carry the
aggressor side (``buy``/``sell``), book rows the book side (``bid``/``ask``).

Further tables are added with :func:`register_table` (see docs/RECIPES.md).
"""

from __future__ import annotations

import msgspec
import polars as pl

from lab.errors import DataError

TS = pl.Datetime("us", "UTC")

__all__ = [
    "TS",
    "TableSpec",
    "TABLES",
    "register_table",
    "table_spec",
    "SchemaError",
    "conform",
]


class SchemaError(DataError, ValueError):
    """A batch does not match its table's canonical schema."""


class TableSpec(msgspec.Struct, frozen=True):
    name: str
    columns: dict[str, pl.DataType]
    time_column: str  # the time filters of scan() and maintenance sort on it
    description: str = ""
    optional: frozenset[str] = frozenset()  # columns filled with nulls when absent

    @property
    def schema(self) -> pl.Schema:
        return pl.Schema(self.columns)


TABLES: dict[str, TableSpec] = {}


def register_table(spec: TableSpec) -> TableSpec:
    """Add (or replace) a canonical table definition."""
    TABLES[spec.name] = spec
    return spec


def table_spec(name: str) -> TableSpec:
    try:
        return TABLES[name]
    except KeyError:
        raise SchemaError(
            f"unknown table {name!r}; known tables: {', '.join(sorted(TABLES))}"
        ) from None


# duplicates: the register_table blocks below share a shape on purpose (one declaration per table).
register_table(TableSpec(
    "trades",
    {
        "ts_exchange": TS, "ts_local": TS,
        "venue": pl.String(), "symbol": pl.String(), "trade_id": pl.String(),
        "price": pl.Float64(), "qty": pl.Float64(), "side": pl.String(),
        "source": pl.String(),
    },
    "ts_exchange",
    "one public trade; side is the aggressor (taker) side: buy or sell; source is null for "
    "trades received live (WebSocket) and 'rest' for trades backfilled from the venue's REST history",
    optional=frozenset({"source"}),
))

register_table(TableSpec(
    "book_updates",
    {
        "ts_exchange": TS, "ts_local": TS,
        "venue": pl.String(), "symbol": pl.String(), "side": pl.String(),
        "price": pl.Float64(), "qty": pl.Float64(),
        "is_snapshot": pl.Boolean(), "seq": pl.Int64(),
    },
    "ts_exchange",
    "one L2 level change; qty is the absolute size at the level, 0 deletes it. "
    "is_snapshot rows (re)start the book; seq is the venue's update id",
))

register_table(TableSpec(
    "quotes",
    {
        "ts_exchange": TS, "ts_local": TS,
        "venue": pl.String(), "symbol": pl.String(),
        "bid_px": pl.Float64(), "bid_qty": pl.Float64(),
        "ask_px": pl.Float64(), "ask_qty": pl.Float64(),
    },
    "ts_exchange",
    "top of book after each book change",
))

register_table(TableSpec(
    "book_snapshots",
    {
        "ts_exchange": TS, "ts_local": TS,
        "venue": pl.String(), "symbol": pl.String(),
        "level": pl.Int32(), "side": pl.String(),
        "price": pl.Float64(), "qty": pl.Float64(),
    },
    "ts_exchange",
    "top-N levels sampled on a fixed interval; level 0 is the best",
))

register_table(TableSpec(
    "raw_messages",
    {
        "ts_local": TS, "venue": pl.String(), "conn_id": pl.String(),
        "recv_seq": pl.Int64(), "payload": pl.String(),
    },
    "ts_local",
    "the journal: one raw message exactly as received",
))

register_table(TableSpec(
    "feed_events",
    {
        "ts_local": TS, "venue": pl.String(), "symbol": pl.String(),
        "kind": pl.String(), "detail": pl.String(),
    },
    "ts_local",
    "gap, resync, reconnect, checksum_failure, rejected_message, stale, loss, ...",
))

register_table(TableSpec(
    "arbitrage_signals",
    {
        "ts": TS, "kind": pl.String(), "asset": pl.String(),
        "buy_venue": pl.String(), "sell_venue": pl.String(),
        "buy_symbol": pl.String(), "sell_symbol": pl.String(),
        "size": pl.Float64(), "buy_px": pl.Float64(), "sell_px": pl.Float64(),
        "gross_edge_bps": pl.Float64(), "net_edge_bps": pl.Float64(),
        "profit_quote": pl.Float64(), "volume_usd": pl.Float64(),
    },
    "ts",
    "one detected opportunity (kind: cross_venue or triangular)",
))


def conform(table: str, df: pl.DataFrame, *, fill_optional: bool = True) -> pl.DataFrame:
    """Check ``df`` against ``table``'s schema and return it in canonical order.

    Raises :class:`SchemaError` naming the first missing, unexpected or
    mistyped column. Timestamps in ns or ms, or naive-but-UTC, are cast to
    the canonical ``Datetime("us", "UTC")``; any other dtype mismatch is an
    error (nothing is silently coerced). An absent optional column is added as
    nulls, or left out with ``fill_optional=False`` (the lake adds it to a table
    only once a batch carries it).
    """
    spec = table_spec(table)
    cols = set(df.columns)
    missing = [c for c in spec.columns if c not in cols and c not in spec.optional]
    if missing:
        raise SchemaError(f"{table}: missing column(s) {missing}; expected {list(spec.columns)}")
    extra = sorted(cols - set(spec.columns))
    if extra:
        raise SchemaError(f"{table}: unexpected column(s) {extra}; expected {list(spec.columns)}")
    exprs = []
    for name, dtype in spec.columns.items():
        if name not in df.columns:
            if fill_optional or name not in spec.optional:
                exprs.append(pl.lit(None, dtype).alias(name))
            continue
        got = df.schema[name]
        if got == dtype:
            exprs.append(pl.col(name))
        elif isinstance(dtype, pl.Datetime) and isinstance(got, pl.Datetime):
            e = pl.col(name)
            if got.time_zone is None:
                e = e.dt.replace_time_zone("UTC")
            elif got.time_zone != "UTC":
                e = e.dt.convert_time_zone("UTC")
            exprs.append(e.dt.cast_time_unit("us").alias(name))
        elif got == pl.Null():
            exprs.append(pl.col(name).cast(dtype))
        else:
            raise SchemaError(f"{table}: column {name!r} has dtype {got}, expected {dtype}")
    return df.select(exprs)


# --- tables of later issues (paper trading, risk); owners may refine columns ---
register_table(TableSpec(
    "paper_orders",
    {
        "ts": TS, "session": pl.String(), "strategy": pl.String(), "order_id": pl.String(),
        "venue": pl.String(), "symbol": pl.String(), "side": pl.String(),
        "type": pl.String(), "tif": pl.String(), "price": pl.Float64(), "qty": pl.Float64(),
        "status": pl.String(), "detail": pl.String(),
    },
    "ts",
    "paper runner order events: new, ack, amend, cancel, reject, done",
))

register_table(TableSpec(
    "paper_fills",
    {
        "ts": TS, "session": pl.String(), "strategy": pl.String(), "order_id": pl.String(),
        "venue": pl.String(), "symbol": pl.String(), "side": pl.String(),
        "price": pl.Float64(), "qty": pl.Float64(), "fee": pl.Float64(),
        "liquidity": pl.String(),
    },
    "ts",
    "paper runner fills; liquidity is maker or taker; fee in quote currency (negative = rebate)",
))

register_table(TableSpec(
    "paper_positions",
    {
        "ts": TS, "session": pl.String(), "strategy": pl.String(),
        "venue": pl.String(), "asset": pl.String(), "qty": pl.Float64(),
        "avg_price": pl.Float64(), "realized_pnl": pl.Float64(), "fees": pl.Float64(),
    },
    "ts",
    "paper runner positions per venue and asset after each change",
))

register_table(TableSpec(
    "risk_snapshots",
    {
        "ts": TS, "scope": pl.String(), "key": pl.String(), "metric": pl.String(),
        "value": pl.Float64(), "detail": pl.String(),
    },
    "ts",
    "one risk figure per row, written every second (scope: portfolio/asset/venue/limit)",
))

register_table(TableSpec(
    "imports",
    {
        "ts": TS, "source": pl.String(), "path": pl.String(), "sha256": pl.String(),
        "kind": pl.String(), "target": pl.String(), "rows": pl.Int64(),
    },
    "ts",
    "one imported file (lab import): its content hash makes re-importing it a no-op",
))

# --- backtest_runs (issue 19, owner: cluster): one row per (parameter set, data split) of a sweep ---
register_table(TableSpec(
    "backtest_runs",
    {
        "ts": TS, "run_id": pl.String(), "strategy": pl.String(), "params": pl.String(),
        "split_start": TS, "split_end": TS,
        "pnl": pl.Float64(), "total_return": pl.Float64(), "sharpe": pl.Float64(),
        "max_drawdown": pl.Float64(), "turnover": pl.Float64(), "fees_paid": pl.Float64(),
        "n_orders": pl.Int64(), "n_fills": pl.Int64(), "events": pl.Int64(),
        "stats": pl.String(), "versions": pl.String(), "executor": pl.String(), "error": pl.String(),
    },
    "ts",
    "one backtest of a sweep: params and stats are JSON text; versions = the lake versions read "
    "(JSON {table: version}); error is null unless the task failed",
))
