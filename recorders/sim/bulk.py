"""Bulk history without sockets: simulated days straight into the lake.

:func:`write_to_lake` runs the same market model as the live simulator and
writes ``trades``, ``book_updates``, ``quotes`` and ``book_snapshots``
normalised as a recorder writes them: canonical symbols (``BTC-USDT`` on
Binance, ``BTC-USD`` on Coinbase and Kraken), the aggressor side on trades,
each book starting with its ``is_snapshot`` rows followed by absolute-size
level changes tagged with the venue's update id (``seq``), a quote row each
time the top of book changes, top-25 snapshots every second, and
``ts_local = ts_exchange +`` the venue's wire latency (with jitter, never
going back in time). Prices and sizes are exact decimal multiples of each
venue's tick and lot, converted to float as a recorder parsing the venue's
decimal strings would.

One simulated day of 3 venues x 3 assets (+ETH-BTC) is ~100 million rows.

>>> import tempfile, datetime as dt
>>> from lab.lake import Lake
>>> lake = Lake(tempfile.mkdtemp())
>>> n = write_to_lake(lake, start=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
...                   duration=dt.timedelta(seconds=2), venues=("kraken",), assets=("BTC",))
>>> sorted(n), n["trades"] == lake.scan("trades").collect().height
(['book_snapshots', 'book_updates', 'quotes', 'trades'], True)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import polars as pl

from lab.lake import Lake
from recorders.sim.config import SimConfig
from recorders.sim.market import ChunkOut, Market

__all__ = ["write_to_lake", "TABLES_WRITTEN"]

TABLES_WRITTEN = ("trades", "book_updates", "quotes", "book_snapshots")
CHUNK_NS = 60 * 10**9
_UTC = pl.Datetime("us", "UTC")


def _to_ns(t: dt.datetime) -> int:
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    delta = t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000


class _Latency:
    """Per-listing wire latency: mean ``wire_ms`` with jitter, monotone receive times."""

    def __init__(self, wire_ms: float, seed: int, idx: int) -> None:
        self.mean_ns = wire_ms * 1e6
        self.rng = np.random.default_rng([seed, 23, idx])
        self.last = -(2**62)

    def local(self, t: np.ndarray) -> np.ndarray:
        if t.shape[0] == 0:
            return t.copy()
        jitter = self.rng.gamma(4.0, 0.25, t.shape[0])  # mean 1, sd 0.5
        loc = t + (self.mean_ns * jitter).astype(np.int64)
        loc[0] = max(loc[0], self.last)
        loc = np.maximum.accumulate(loc)
        self.last = int(loc[-1])
        return loc


class _Batches:
    def __init__(self, lake: Lake, batch_rows: int) -> None:
        self.lake = lake
        self.batch_rows = batch_rows
        self.parts: dict[str, list[dict[str, np.ndarray]]] = {t: [] for t in TABLES_WRITTEN}
        self.rows: dict[str, int] = {t: 0 for t in TABLES_WRITTEN}
        self.written: dict[str, int] = {t: 0 for t in TABLES_WRITTEN}
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lake-writer")
        self.pending: list[Future] = []

    def add(self, table: str, cols: dict[str, np.ndarray]) -> None:
        n = len(next(iter(cols.values())))
        if n == 0:
            return
        self.parts[table].append(cols)
        self.rows[table] += n
        if self.rows[table] >= self.batch_rows:
            self.flush(table)

    def flush(self, table: str, names: list[tuple[str, str]] | None = None) -> None:
        parts = self.parts[table]
        if not parts:
            return
        cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        self.parts[table] = []
        self.rows[table] = 0
        df = pl.DataFrame(cols)
        vmap = {i: v for i, (v, _) in enumerate(self.names)}
        smap = {i: s for i, (_, s) in enumerate(self.names)}
        exprs = [
            pl.col("ts_exchange").cast(_UTC),
            pl.col("ts_local").cast(_UTC),
            pl.col("li").replace_strict(vmap, return_dtype=pl.String).alias("venue"),
            pl.col("li").replace_strict(smap, return_dtype=pl.String).alias("symbol"),
        ]
        if "side" in cols:
            a, b = ("buy", "sell") if table == "trades" else ("bid", "ask")
            exprs.append(pl.when(pl.col("side") == 0).then(pl.lit(a)).otherwise(pl.lit(b)).alias("side"))
        if "trade_id" in cols:
            exprs.append(pl.col("trade_id").cast(pl.String))
        if "level" in cols:
            exprs.append(pl.col("level").cast(pl.Int32))
        df = df.with_columns(exprs).drop("li")
        # Delta writes release the GIL: write in a background thread while the
        # model generates the next batch (at most two writes in flight)
        while len(self.pending) >= 2:
            self.pending.pop(0).result()
        self.pending.append(self.pool.submit(self.lake.append, table, df))
        self.written[table] += df.height

    def flush_all(self) -> None:
        for t in TABLES_WRITTEN:
            self.flush(t)
        for f in self.pending:
            f.result()
        self.pending.clear()
        self.pool.shutdown()


def _us(t: np.ndarray) -> np.ndarray:
    return t // 1000


def write_to_lake(
    lake: Lake,
    *,
    start: dt.datetime,
    duration: dt.timedelta,
    venues: Sequence[str] = ("binance", "coinbase", "kraken"),
    assets: Sequence[str] = ("BTC", "ETH", "SOL"),
    seed: int = 0,
    progress: bool = False,
    config: SimConfig | None = None,
    batch_rows: int = 2_000_000,
) -> dict[str, int]:
    """Simulate ``duration`` from ``start`` and append it to ``lake``.

    Returns rows written per table. ``config`` overrides the market model
    (its ``venues``/``assets``/``seed`` are replaced by the arguments).
    Deterministic: the same arguments give the same rows.
    """
    import msgspec

    if duration.total_seconds() <= 0:
        raise ValueError(f"duration must be positive, got {duration}")
    cfg = msgspec.structs.replace(config or SimConfig(), venues=tuple(venues),
                                  assets=tuple(assets), seed=seed)
    t_start = _to_ns(start)
    t_end = t_start + int(round(duration.total_seconds() * 1e9))
    market = Market(cfg, start_ns=t_start, chunk_ns=CHUNK_NS, snap_dt_ns=10**9)
    out = _Batches(lake, batch_rows)
    out.names = [(l.venue, l.symbol) for l in market.listings]
    lat = [_Latency(cfg.wire_ms.get(l.venue, 20.0), seed, i) for i, l in enumerate(market.listings)]
    scales = [10.0 ** l.price_dec for l in market.listings]
    lots = [10.0 ** l.qty_dec for l in market.listings]

    # the initial book: what a recorder writes after its first snapshot
    for i, b in enumerate(market.books):
        bp, bq, ap, aq = b.levels()
        n = bp.shape[0] + ap.shape[0]
        t = np.full(n, t_start, np.int64)
        # one message, one receive time (as a recorder writes a snapshot): a snapshot
        # spread over several ts_local would read as several snapshots, each resetting the book
        t_loc = np.full(n, lat[i].local(t[:1])[0], np.int64)
        out.add("book_updates", {
            "ts_exchange": _us(t), "ts_local": _us(t_loc), "li": np.full(n, i, np.int16),
            "side": np.concatenate([np.zeros(bp.shape[0], np.int8), np.ones(ap.shape[0], np.int8)]),
            "price": np.concatenate([bp, ap]) / scales[i], "qty": np.concatenate([bq, aq]) / lots[i],
            "is_snapshot": np.ones(n, bool), "seq": np.full(n, b.seq, np.int64),
        })

    n_chunks = -(-(t_end - t_start) // CHUNK_NS)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_chunks, unit="min", desc="simulating", dynamic_ncols=True)
    for _ in range(n_chunks):
        chunks: list[ChunkOut] = market.step()
        for i, c in enumerate(chunks):
            _emit(out, c, i, lat[i], scales[i], lots[i], t_end)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(rows=f"{sum(out.written.values()) + sum(out.rows.values()):,}")
    out.flush_all()
    if bar is not None:
        bar.close()
    return dict(out.written)


def _emit(out: _Batches, c: ChunkOut, i: int, lat: _Latency, scale: float, lot: float,
          t_end: int) -> None:
    def cut(t: np.ndarray) -> int:
        return int(np.searchsorted(t, t_end, side="left"))

    # book updates, trades and quotes share one receive-time process (one connection)
    k = cut(c.upd_t)
    kt = cut(c.trade_t)
    kq = cut(c.quote_t)
    li = np.int16(i)
    t_all = np.concatenate([c.upd_t[:k], c.trade_t[:kt], c.quote_t[:kq]])
    order = np.argsort(t_all, kind="stable")
    loc = np.empty_like(t_all)
    loc[order] = lat.local(t_all[order])
    out.add("book_updates", {
        "ts_exchange": _us(c.upd_t[:k]), "ts_local": _us(loc[:k]), "li": np.full(k, li),
        "side": c.upd_side[:k], "price": c.upd_px[:k] / scale, "qty": c.upd_q[:k] / lot,
        "is_snapshot": np.zeros(k, bool), "seq": c.upd_seq[:k],
    })
    out.add("trades", {
        "ts_exchange": _us(c.trade_t[:kt]), "ts_local": _us(loc[k:k + kt]), "li": np.full(kt, li),
        "trade_id": c.trade_id[:kt], "price": c.trade_px[:kt] / scale, "qty": c.trade_q[:kt] / lot,
        "side": c.trade_side[:kt],
    })
    out.add("quotes", {
        "ts_exchange": _us(c.quote_t[:kq]), "ts_local": _us(loc[k + kt:]), "li": np.full(kq, li),
        "bid_px": c.quote_bp[:kq] / scale, "bid_qty": c.quote_bq[:kq] / lot,
        "ask_px": c.quote_ap[:kq] / scale, "ask_qty": c.quote_aq[:kq] / lot,
    })
    ks = cut(c.snap_t)
    st = c.snap_t[:ks]
    out.add("book_snapshots", {
        "ts_exchange": _us(st), "ts_local": _us(st + int(lat.mean_ns)), "li": np.full(ks, li),
        "level": c.snap_lvl[:ks], "side": c.snap_side[:ks],
        "price": c.snap_px[:ks] / scale, "qty": c.snap_q[:ks] / lot,
    })
