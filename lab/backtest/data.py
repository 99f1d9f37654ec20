"""Turn lake rows (book_updates, trades, quotes) into the engine's event arrays.

Prices become integer ticks (the tick is inferred per instrument from the
decimals the data carries, or given), sides become +1/-1, timestamps int64
microseconds. Events are ordered by ``ts_exchange``; at equal times a trade
comes before the depth rows of the same instant (the venue reports the trade
and the book change it caused at once; taking the trade first keeps the
risk-averse queue model from counting the same quantity twice), then input
order. ``ts_local`` earlier than ``ts_exchange`` (clock skew) is clamped to
``ts_exchange``: the strategy cannot see an event before it happened.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence

import numpy as np
import polars as pl

from lab.backtest import core
from lab.venues import USD_LIKE as _USD_LIKE

__all__ = ["Instrument", "Events", "infer_tick", "build_events", "load_events", "quotes_as_book",
           "coverage", "no_data_message", "USD_LIKE"]

USD_LIKE = frozenset(_USD_LIKE)


@dataclasses.dataclass(frozen=True)
class Instrument:
    venue: str
    symbol: str
    tick: float
    lot: float = 1e-8

    @property
    def base(self) -> str:
        return self.symbol.split("-")[0]

    @property
    def quote(self) -> str:
        return self.symbol.split("-")[1]


@dataclasses.dataclass
class Events:
    """Event arrays in exchange-time order plus the local-time permutation."""

    instruments: list[Instrument]
    ts_x: np.ndarray
    ts_l: np.ndarray
    kind: np.ndarray
    inst: np.ndarray
    side: np.ndarray
    px: np.ndarray
    qty: np.ndarray
    lorder: np.ndarray

    def __len__(self) -> int:
        return int(self.ts_x.shape[0])

    def index(self, venue: str, symbol: str) -> int:
        for k, ins in enumerate(self.instruments):
            if ins.venue == venue and ins.symbol == symbol:
                return k
        raise KeyError(f"no instrument {venue}:{symbol}; have "
                       f"{[f'{i.venue}:{i.symbol}' for i in self.instruments]}")

    @property
    def start(self) -> int:
        return int(self.ts_x[0]) if len(self) else 0

    @property
    def end(self) -> int:
        return int(max(self.ts_x[-1], self.ts_l.max())) if len(self) else 0


def infer_tick(prices: np.ndarray, max_decimals: int = 10) -> float:
    """The coarsest power-of-ten tick every price is a multiple of.

    >>> infer_tick(np.array([100.25, 100.5, 101.0]))
    0.01
    >>> infer_tick(np.array([3.0, 7.0]))
    1.0
    """
    p = np.abs(np.asarray(prices, np.float64))
    p = p[np.isfinite(p)]
    for d in range(max_decimals + 1):
        x = p * 10.0**d
        if p.size == 0 or np.all(np.abs(x - np.round(x)) <= 1e-6 * np.maximum(1.0, x) * 1e-3 + 1e-7):
            return float(10.0**-d)
    return float(10.0**-max_decimals)


def _us(col: str) -> pl.Expr:
    return pl.col(col).dt.cast_time_unit("us").dt.epoch("us")


def quotes_as_book(quotes: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    """Top-of-book rows as one-level book snapshots (2 book_updates rows per quote).

    For data that only has ``quotes``: the engine then sees a one-level book.
    """
    lf = quotes.lazy()
    cols = ["ts_exchange", "ts_local", "venue", "symbol"]
    bid = lf.select(*cols, pl.lit("bid").alias("side"), pl.col("bid_px").alias("price"),
                    pl.col("bid_qty").alias("qty"))
    ask = lf.select(*cols, pl.lit("ask").alias("side"), pl.col("ask_px").alias("price"),
                    pl.col("ask_qty").alias("qty"))
    return (pl.concat([bid.with_row_index("_r"), ask.with_row_index("_r")])
            .sort("_r", maintain_order=True).drop("_r")
            .with_columns(pl.lit(True).alias("is_snapshot"), pl.lit(None, pl.Int64).alias("seq")))


def build_events(
    book_updates: pl.DataFrame | pl.LazyFrame | None,
    trades: pl.DataFrame | pl.LazyFrame | None,
    *,
    ticks: dict[tuple[str, str], float] | None = None,
    instruments: Sequence[Instrument] | None = None,
) -> Events:
    """Build :class:`Events` from canonical ``book_updates`` and ``trades`` rows.

    ``ticks`` overrides the inferred tick of ``(venue, symbol)``; pass
    ``instruments`` to fix the instrument list and order (e.g. to keep
    indices stable across paper-trading batches).
    """
    frames = []
    if book_updates is not None:
        b = book_updates.lazy().select(
            _us("ts_exchange").alias("ts_x"), _us("ts_local").alias("ts_l"), "venue", "symbol",
            pl.when(pl.col("is_snapshot")).then(core.EV_SNAPSHOT).otherwise(core.EV_DEPTH)
            .cast(pl.Int8).alias("kind"),
            pl.when(pl.col("side") == "bid").then(1).otherwise(-1).cast(pl.Int8).alias("side"),
            "price", "qty", pl.lit(1, pl.Int8).alias("_prio"))
        frames.append(b.with_row_index("_r"))
    if trades is not None:
        t = trades.lazy().select(
            _us("ts_exchange").alias("ts_x"), _us("ts_local").alias("ts_l"), "venue", "symbol",
            pl.lit(core.EV_TRADE, pl.Int8).alias("kind"),
            pl.when(pl.col("side") == "buy").then(1).otherwise(-1).cast(pl.Int8).alias("side"),
            "price", "qty", pl.lit(0, pl.Int8).alias("_prio"))
        frames.append(t.with_row_index("_r"))
    if not frames:
        raise ValueError("build_events needs book_updates and/or trades")
    df = (pl.concat(frames).sort(["ts_x", "_prio", "_r"], maintain_order=True)
          .with_columns(pl.max_horizontal("ts_x", "ts_l").alias("ts_l")).collect())
    ticks = dict(ticks or {})
    if instruments is None:
        keys = df.select("venue", "symbol").unique().sort(["venue", "symbol"]).rows()
        instruments = []
        for venue, symbol in keys:
            tk = ticks.get((venue, symbol))
            if tk is None:
                p = df.filter((pl.col("venue") == venue) & (pl.col("symbol") == symbol))["price"]
                tk = infer_tick(p.to_numpy())
            instruments.append(Instrument(venue, symbol, tk))
    instruments = list(instruments)
    # An explicit schema: with no instruments (no rows) the lists are empty and
    # polars would type them Null, and the join below would fail on its keys.
    key = pl.DataFrame({"venue": [i.venue for i in instruments],
                        "symbol": [i.symbol for i in instruments],
                        "inst": np.arange(len(instruments), dtype=np.int32),
                        "_tick": [i.tick for i in instruments]},
                       schema={"venue": pl.String, "symbol": pl.String, "inst": pl.Int32, "_tick": pl.Float64})
    df = df.join(key, on=["venue", "symbol"], how="left", maintain_order="left")
    if df["inst"].null_count():
        bad = df.filter(pl.col("inst").is_null()).select("venue", "symbol").unique().rows()
        raise ValueError(f"rows for instruments not in the instrument list: {bad}")
    px = (df["price"] / df["_tick"]).round(0).cast(pl.Int64)
    ts_l = df["ts_l"].to_numpy().astype(np.int64)
    return Events(
        instruments=instruments,
        ts_x=np.ascontiguousarray(df["ts_x"].to_numpy(), np.int64),
        ts_l=np.ascontiguousarray(ts_l),
        kind=np.ascontiguousarray(df["kind"].to_numpy(), np.int64),
        inst=np.ascontiguousarray(df["inst"].to_numpy(), np.int64),
        side=np.ascontiguousarray(df["side"].to_numpy(), np.int64),
        px=np.ascontiguousarray(px.to_numpy(), np.int64),
        qty=np.ascontiguousarray(df["qty"].to_numpy(), np.float64),
        lorder=np.argsort(ts_l, kind="stable").astype(np.int64),
    )


def _names(v: str | Iterable[str] | None) -> list[str] | None:
    return None if v is None else [v] if isinstance(v, str) else sorted(v)


def _fmt_range(t0: dt.datetime | None, t1: dt.datetime | None) -> str:
    """``between 2026-11-22 12:00 and 13:00 UTC`` (the end's date only when it differs)."""
    def f(t: dt.datetime) -> str:
        return f"{t:%Y-%m-%d %H:%M}" + (f":{t:%S}" if t.second else "")

    if t0 is None and t1 is None:
        return "in the lake"
    if t1 is None:
        return f"from {f(t0)} UTC on"
    if t0 is None:
        return f"before {f(t1)} UTC"
    end = f(t1) if t1.date() != t0.date() else f(t1)[11:]
    return f"between {f(t0)} and {end} UTC"


def coverage(table: str, *, venues: str | Iterable[str] | None = None,
             symbols: str | Iterable[str] | None = None, lake=None) -> pl.DataFrame:
    """First and last time of ``table`` per venue and symbol: ``venue, symbol, first, last, rows``.

    What the lake holds, to tell a user who asked for something it lacks.
    """
    from lab import scan
    from lab.schema import table_spec

    tc = table_spec(table).time_column
    return (scan(table, venue=venues, symbol=symbols, lake=lake)
            .group_by("venue", "symbol")
            .agg(pl.col(tc).min().alias("first"), pl.col(tc).max().alias("last"), pl.len().alias("rows"))
            .sort("venue", "symbol").collect())


def no_data_message(table: str, keys: Sequence[tuple[str, str]], start: dt.datetime | None,
                    end: dt.datetime | None, lake=None) -> str:
    """One line for a user: what was asked, and what the lake has instead.

    ``no quotes for binance BTC-USDT between 2026-11-22 12:00 and 13:00 UTC; the lake
    has binance BTC-USDT from 2026-11-29 14:00 to 15:00 UTC``.
    """
    from lab.lake import Lake, default_lake

    lk = lake if isinstance(lake, Lake) else Lake(lake) if lake is not None else default_lake()
    asked = ", ".join(f"{v} {s}" for v, s in keys)
    head = f"no {table} for {asked} {_fmt_range(start, end)}"
    if not lk.exists(table):
        return f"{head}; the lake at {lk.root} has no {table} table (record or seed some data first)"
    have = coverage(table, lake=lk)
    if have.height == 0:
        return f"{head}; the {table} table of {lk.root} is empty"
    parts = []
    for v, s in keys:
        row = have.filter((pl.col("venue") == v) & (pl.col("symbol") == s))
        if row.height:
            t0, t1 = row["first"][0], row["last"][0]
            parts.append(f"{v} {s} {_fmt_range(t0, t1).replace('between', 'from').replace(' and ', ' to ')}")
    if parts:
        return f"{head}; the lake has {'; '.join(parts)}"
    listed = ", ".join(f"{v} {s}" for v, s in have.select("venue", "symbol").rows())
    return f"{head}; the lake has no such venue/symbol, it has: {listed}"


def load_events(
    *,
    venues: str | Iterable[str] | None = None,
    symbols: str | Iterable[str] | None = None,
    start: dt.datetime | str | None = None,
    end: dt.datetime | str | None = None,
    lake=None,
    ticks: dict[tuple[str, str], float] | None = None,
    use_quotes: bool = False,
    require: Sequence[tuple[str, str]] | None = None,
) -> Events:
    """Read ``book_updates`` (or ``quotes`` as a one-level book) and ``trades`` from the lake.

    Raises :class:`~lab.errors.DataError` (one line naming what the lake has
    instead) when there is no book data for the range, or none for one of the
    ``require``d ``(venue, symbol)`` pairs (default: every venue x symbol asked
    for when both are single names).
    """
    from lab import scan
    from lab.errors import DataError
    from lab.lake import _as_datetime

    t0, t1 = _as_datetime(start), _as_datetime(end)
    kw = dict(venue=venues, symbol=symbols, start=t0, end=t1, lake=lake)
    table = "quotes" if use_quotes else "book_updates"
    book = quotes_as_book(scan(table, **kw)) if use_quotes else scan(table, **kw)
    if require is None:
        vs, ss = _names(venues), _names(symbols)
        require = [(vs[0], ss[0])] if vs and ss and len(vs) == len(ss) == 1 else []
    ev = build_events(book, scan("trades", **kw), ticks=ticks)
    have = {(i.venue, i.symbol) for i in ev.instruments}
    missing = [k for k in require if k not in have]
    if len(ev) == 0 or missing:
        keys = missing or require or [(v, s) for v in (_names(venues) or ["any venue"])
                                      for s in (_names(symbols) or ["any symbol"])]
        raise DataError(no_data_message(table, keys, t0, t1, lake))
    return ev
