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
           "USD_LIKE"]

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
    key = pl.DataFrame({"venue": [i.venue for i in instruments],
                        "symbol": [i.symbol for i in instruments],
                        "inst": np.arange(len(instruments), dtype=np.int32),
                        "_tick": [i.tick for i in instruments]})
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


def load_events(
    *,
    venues: str | Iterable[str] | None = None,
    symbols: str | Iterable[str] | None = None,
    start: dt.datetime | str | None = None,
    end: dt.datetime | str | None = None,
    lake=None,
    ticks: dict[tuple[str, str], float] | None = None,
    use_quotes: bool = False,
) -> Events:
    """Read ``book_updates`` (or ``quotes`` as a one-level book) and ``trades`` from the lake."""
    from lab import scan

    kw = dict(venue=venues, symbol=symbols, start=start, end=end, lake=lake)
    book = quotes_as_book(scan("quotes", **kw)) if use_quotes else scan("book_updates", **kw)
    ev = build_events(book, scan("trades", **kw), ticks=ticks)
    if len(ev) == 0:
        raise ValueError(f"no book_updates/trades in the lake for venues={venues} symbols={symbols} "
                         f"between {start} and {end}")
    return ev
