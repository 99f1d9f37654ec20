"""Order books: rebuild L2 books from ``book_updates`` and compute book features.

Stable API (used by the arbitrage and backtest engines):

* :func:`rebuild` — ``book_updates`` rows → top-N books, one row per book
  message (``every=None``) or one row per grid time (``every="1s"``), as a
  *wide* frame with columns ``bid_px_0 … bid_px_{N-1}``, ``bid_qty_0 …``,
  ``ask_px_0 …``, ``ask_qty_0 …`` (level 0 is the best; missing levels are
  null). The level bookkeeping runs in a compiled numba kernel (millions of
  level updates per second); the rows are read into numpy arrays, never into
  Python objects.
* :func:`to_long` — wide books → the ``book_snapshots`` layout
  (``level, side, price, qty``).
* Book features on the wide frame, as expressions and ``with_*`` helpers:
  :func:`walk_vwap` / :func:`walk_cost_bps` (a market order of a given size
  walking the book), :func:`depth_within_bps`, :func:`imbalance`,
  :func:`slope`, :func:`mid`.

Rules applied by :func:`rebuild` (the lake contract of ``book_updates``):
``qty`` is the absolute size at the level and ``0`` deletes it; a run of
``is_snapshot`` rows (same ``ts_exchange`` and ``seq``) resets the book of
its venue/symbol; rows sharing ``ts_exchange`` and ``seq`` form one message
and the book is emitted only after the whole message is applied.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numba as nb
import numpy as np
import polars as pl

from lab.l2 import THIN
from lab.times import to_utc

__all__ = [
    "rebuild",
    "rebuild_arrays",
    "wide_columns",
    "to_long",
    "from_long",
    "mid",
    "walk_nb",
    "walk_expr",
    "walk_vwap",
    "walk_cost_bps",
    "with_walk",
    "depth_within_bps",
    "imbalance",
    "slope",
    "with_book_features",
]

# --------------------------------------------------------------------------- kernel
@nb.njit(cache=True, nogil=True)
def _apply(keys: np.ndarray, qtys: np.ndarray, n: int, key: float, q: float) -> tuple:
    """Set level ``key`` to size ``q`` in a side kept ascending by key
    (best level last). Returns the (possibly grown) arrays and the new count.

    The compiled twin of :meth:`lab.l2.Book.set` (numba cannot call it): the same
    rules (not > 0 deletes; deleting a missing level does nothing), checked
    against it on random update streams in tests/micro/test_one_book.py."""
    # binary search for the first index with keys[i] >= key
    lo, hi = 0, n
    while lo < hi:
        m = (lo + hi) >> 1
        if keys[m] < key:
            lo = m + 1
        else:
            hi = m
    if lo < n and keys[lo] == key:
        if q > 0.0:
            qtys[lo] = q
        else:  # delete: shift the better levels down by one
            for j in range(lo, n - 1):
                keys[j] = keys[j + 1]
                qtys[j] = qtys[j + 1]
            n -= 1
        return keys, qtys, n
    if q <= 0.0:  # deleting a level we do not have: nothing to do
        return keys, qtys, n
    if n == keys.shape[0]:
        nk = np.empty(2 * n, np.float64)
        nq = np.empty(2 * n, np.float64)
        nk[:n] = keys[:n]
        nq[:n] = qtys[:n]
        keys, qtys = nk, nq
    for j in range(n, lo, -1):
        keys[j] = keys[j - 1]
        qtys[j] = qtys[j - 1]
    keys[lo] = key
    qtys[lo] = q
    return keys, qtys, n + 1


@nb.njit(cache=True, nogil=True, inline="always")
def _emit(k, depth, bk, bq, nb_, ak, aq, na, out_bpx, out_bq, out_apx, out_aq) -> None:
    """Write the top ``depth`` levels of the sides (bids ``bk``/``bq``, asks keyed by
    −price ``ak``/``aq``, best last) as output row ``k``; NaN past a side's last level."""
    for lv in range(depth):
        out_bpx[k, lv] = bk[nb_ - 1 - lv] if lv < nb_ else np.nan
        out_bq[k, lv] = bq[nb_ - 1 - lv] if lv < nb_ else np.nan
        out_apx[k, lv] = -ak[na - 1 - lv] if lv < na else np.nan
        out_aq[k, lv] = aq[na - 1 - lv] if lv < na else np.nan


@nb.njit(cache=True, nogil=True)
def _kernel(gid, ts, seq, is_bid, px, qty, snap, depth, every, origin, start, end_grid,
            only_changes, require_snapshot, out_row, out_ts, out_bpx, out_bq, out_apx, out_aq):
    """Apply the updates in order; write emitted books into the out arrays.

    Returns the number of emitted rows. Sides are kept ascending by key
    (bids: key = price, asks: key = -price) so the best level is the last one
    and inserts/deletes near the top shift few elements.
    """
    n_rows = gid.shape[0]
    cap = 64
    bk = np.empty(cap, np.float64)
    bq = np.empty(cap, np.float64)
    ak = np.empty(cap, np.float64)
    aq = np.empty(cap, np.float64)
    nb_, na = 0, 0
    synced = not require_snapshot
    k = 0
    next_t = origin
    i = 0
    while i < n_rows:
        g = gid[i]
        if i == 0 or gid[i - 1] != g:  # new venue/symbol: empty book
            nb_, na = 0, 0
            synced = not require_snapshot
            if every > 0:
                # first grid point at or after max(start, first row's time)
                t0 = ts[i] if ts[i] > start else start
                next_t = origin + ((t0 - origin + every - 1) // every) * every
        # one message = consecutive rows with the same gid, ts, seq and snapshot flag
        j = i
        while (j + 1 < n_rows and gid[j + 1] == g and ts[j + 1] == ts[i]
               and seq[j + 1] == seq[i] and snap[j + 1] == snap[i]):
            j += 1
        if every > 0:
            # emit grid points strictly before this message's time
            while synced and next_t < ts[i]:
                out_row[k] = i - 1
                out_ts[k] = next_t
                _emit(k, depth, bk, bq, nb_, ak, aq, na, out_bpx, out_bq, out_apx, out_aq)
                k += 1
                next_t += every
            if not synced:
                while next_t < ts[i]:
                    next_t += every
        if snap[i]:
            nb_, na = 0, 0
            synced = True
        for r in range(i, j + 1):
            if is_bid[r]:
                bk, bq, nb_ = _apply(bk, bq, nb_, px[r], qty[r])
            else:
                ak, aq, na = _apply(ak, aq, na, -px[r], qty[r])
        last_of_group = j + 1 >= n_rows or gid[j + 1] != g
        if every <= 0 and synced and ts[j] >= start:
            same = False
            if only_changes and k > 0 and out_row[k - 1] >= 0 and gid[out_row[k - 1]] == g:
                same = True
                for lv in range(depth):
                    b = bk[nb_ - 1 - lv] if lv < nb_ else np.nan
                    b2 = bq[nb_ - 1 - lv] if lv < nb_ else np.nan
                    a = -ak[na - 1 - lv] if lv < na else np.nan
                    a2 = aq[na - 1 - lv] if lv < na else np.nan
                    if not ((b == out_bpx[k - 1, lv] or (b != b and out_bpx[k - 1, lv] != out_bpx[k - 1, lv]))
                            and (b2 == out_bq[k - 1, lv] or (b2 != b2 and out_bq[k - 1, lv] != out_bq[k - 1, lv]))
                            and (a == out_apx[k - 1, lv] or (a != a and out_apx[k - 1, lv] != out_apx[k - 1, lv]))
                            and (a2 == out_aq[k - 1, lv] or (a2 != a2 and out_aq[k - 1, lv] != out_aq[k - 1, lv]))):
                        same = False
                        break
            if not same:
                out_row[k] = j
                out_ts[k] = ts[j]
                _emit(k, depth, bk, bq, nb_, ak, aq, na, out_bpx, out_bq, out_apx, out_aq)
                k += 1
        if every > 0 and last_of_group and synced:
            # the grid points up to end_grid (or this group's last row) see the final book
            stop = end_grid if end_grid > 0 else ts[j]
            while next_t <= stop:
                out_row[k] = j
                out_ts[k] = next_t
                _emit(k, depth, bk, bq, nb_, ak, aq, na, out_bpx, out_bq, out_apx, out_aq)
                k += 1
                next_t += every
        i = j + 1
    return k


def rebuild_arrays(
    gid: np.ndarray, ts: np.ndarray, seq: np.ndarray, is_bid: np.ndarray,
    px: np.ndarray, qty: np.ndarray, snap: np.ndarray, *, depth: int = 10,
    every_ns: int = 0, origin_ns: int = 0, start_ns: int | None = None,
    end_ns: int | None = None, only_changes: bool = False, require_snapshot: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The compiled rebuild on plain numpy arrays (for engines that stream their own data).

    Inputs are one entry per level update, grouped by ``gid`` (int, one value
    per venue/symbol, rows of a group contiguous and in time order): ``ts``
    and ``seq`` int64 (a message = consecutive rows with equal ``ts`` and
    ``seq``), ``is_bid`` and ``snap`` bool, ``px`` and ``qty`` float64.
    Returns ``(row, ts, bid_px, bid_qty, ask_px, ask_qty)``: for each emitted
    book the index of the last input row applied, its time and four
    ``(k, depth)`` arrays (NaN where a side has fewer levels).

    >>> import numpy as np
    >>> r, t, bp, bq, ap, aq = rebuild_arrays(
    ...     np.zeros(4, np.int64), np.array([1, 1, 2, 3]), np.array([1, 1, 2, 3]),
    ...     np.array([True, False, True, True]), np.array([99.0, 101.0, 100.0, 100.0]),
    ...     np.array([1.0, 2.0, 3.0, 0.0]), np.array([True, True, False, False]), depth=2)
    >>> bp.tolist(), ap[:, 0].tolist()
    ([[99.0, nan], [100.0, 99.0], [99.0, nan]], [101.0, 101.0, 101.0])
    """
    n = int(gid.shape[0])
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    start = np.iinfo(np.int64).min if start_ns is None else int(start_ns)
    end_grid = int(end_ns) if (end_ns is not None and every_ns > 0) else 0
    if every_ns > 0 and n:
        lo = min(int(ts.min()), start) if start_ns is not None else int(ts.min())
        hi = max(int(ts.max()), end_grid)
        n_groups = int(np.count_nonzero(np.diff(gid)) + 1)
        cap = (hi - lo) // every_ns + 2
        cap = int(cap * n_groups)
    else:
        cap = n
    cap = max(cap, 1)
    out_row = np.full(cap, -1, np.int64)
    out_ts = np.empty(cap, np.int64)
    out = [np.empty((cap, depth), np.float64) for _ in range(4)]
    k = _kernel(np.ascontiguousarray(gid, np.int64), np.ascontiguousarray(ts, np.int64),
                np.ascontiguousarray(seq, np.int64), np.ascontiguousarray(is_bid, np.bool_),
                np.ascontiguousarray(px, np.float64), np.ascontiguousarray(qty, np.float64),
                np.ascontiguousarray(snap, np.bool_), depth, int(every_ns), int(origin_ns),
                start, end_grid, only_changes, require_snapshot, out_row, out_ts, *out)
    return out_row[:k], out_ts[:k], out[0][:k], out[1][:k], out[2][:k], out[3][:k]


# --------------------------------------------------------------------------- polars API
def wide_columns(depth: int) -> list[str]:
    """Names of the level columns :func:`rebuild` emits, in order.

    >>> wide_columns(1)
    ['bid_px_0', 'bid_qty_0', 'ask_px_0', 'ask_qty_0']
    """
    return [c for i in range(depth)
            for c in (f"bid_px_{i}", f"bid_qty_{i}", f"ask_px_{i}", f"ask_qty_{i}")]


_to_utc = to_utc


def _every_ns(every: str | dt.timedelta) -> int:
    if isinstance(every, dt.timedelta):
        return int(round(every.total_seconds() * 1e9))
    units = [("ns", 1), ("us", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000),
             ("m", 60_000_000_000), ("h", 3_600_000_000_000), ("d", 86_400_000_000_000)]
    s = every.strip()
    for u, mult in units:
        if s.endswith(u) and s[: -len(u)].replace(".", "", 1).isdigit():
            return int(round(float(s[: -len(u)]) * mult))
    raise ValueError(f"every={every!r}: expected a duration like '100ms', '1s', '5m', '1h'")


def rebuild(
    updates: pl.LazyFrame | pl.DataFrame,
    *,
    depth: int = 10,
    every: str | dt.timedelta | None = None,
    start: dt.datetime | str | None = None,
    end: dt.datetime | str | None = None,
    by: Sequence[str] = ("venue", "symbol"),
    only_changes: bool = False,
    require_snapshot: bool = True,
    time_column: str = "ts_exchange",
) -> pl.LazyFrame:
    """Rebuild top-``depth`` L2 books from ``book_updates`` rows.

    Needs: ``ts_exchange`` (or ``time_column``), ``side`` (``bid``/``ask``),
    ``price``, ``qty`` (absolute size, 0 deletes), ``is_snapshot``, ``seq``
    and the ``by`` columns. Emits: ``by`` columns, ``ts_exchange`` (UTC, µs),
    ``seq`` (the last applied message's; the grid mode keeps the last applied
    seq), then ``bid_px_i, bid_qty_i, ask_px_i, ask_qty_i`` for ``i < depth``
    (null where a side has fewer levels), sorted by ``by`` and time.

    * ``every=None``: one row after each book message (``only_changes=True``
      drops messages that leave the top ``depth`` levels unchanged).
    * ``every="1s"`` (any duration): one row per grid time ``t`` (multiples of
      ``every`` since the epoch), the book after every update with time ≤ ``t``.
    * ``start``/``end``: the time range to emit. Rows from the last snapshot
      at or before ``start`` are replayed so the first emitted book is right.
    * ``require_snapshot``: emit nothing for a venue/symbol until its first
      snapshot (a book built from diffs alone is unknown).

    The updates are collected into numpy arrays (a compiled kernel needs
    arrays); the result is returned as a LazyFrame.

    >>> import polars as pl, datetime as dt
    >>> t = [dt.datetime(2026, 1, 1, 0, 0, s, tzinfo=dt.timezone.utc) for s in (0, 0, 1, 2)]
    >>> u = pl.DataFrame({"ts_exchange": t, "venue": "x", "symbol": "BTC-USDT",
    ...     "side": ["bid", "ask", "bid", "ask"], "price": [99.0, 101.0, 100.0, 100.5],
    ...     "qty": [1.0, 2.0, 3.0, 4.0], "is_snapshot": [True, True, False, False],
    ...     "seq": [1, 1, 2, 3]})
    >>> rebuild(u, depth=1).select("bid_px_0", "bid_qty_0", "ask_px_0").collect().rows()
    [(99.0, 1.0, 101.0), (100.0, 3.0, 101.0), (100.0, 3.0, 100.5)]
    """
    by = list(by)
    lf = updates.lazy()
    schema = lf.collect_schema()
    need = [time_column, "side", "price", "qty", "is_snapshot", "seq", *by]
    missing = [c for c in need if c not in schema.names()]
    if missing:
        raise ValueError(f"rebuild: missing column(s) {missing}; got {schema.names()}")
    tcol = pl.col(time_column)
    start_dt, end_dt = _to_utc(start), _to_utc(end)
    tdtype = schema[time_column]
    tz = getattr(tdtype, "time_zone", None)

    def lit_t(v: dt.datetime) -> pl.Expr:
        e = pl.lit(v).dt.cast_time_unit(getattr(tdtype, "time_unit", "us"))
        return e if tz is not None else e.dt.replace_time_zone(None)

    if end_dt is not None:
        lf = lf.filter(tcol <= lit_t(end_dt))
    if start_dt is not None:
        first_snap = (lf.filter(pl.col("is_snapshot") & (tcol <= lit_t(start_dt)))
                      .group_by(by).agg(tcol.max().alias("__from")))
        lf = (lf.join(first_snap, on=by, how="left", nulls_equal=True)
              .filter(tcol >= pl.coalesce(pl.col("__from"), lit_t(start_dt))).drop("__from"))
    key = (pl.concat_str([pl.col(c).cast(pl.String) for c in by], separator="\x1f").hash(0) if by
           else pl.lit(0, pl.UInt64)).alias("__g")
    df = lf.select(
        key, *by,
        tcol.dt.cast_time_unit("ns").dt.replace_time_zone(None).cast(pl.Int64).alias("__t"),
        pl.col("seq").cast(pl.Int64).fill_null(-1).alias("__seq"),
        (pl.col("side") == "bid").alias("__bid"),
        pl.col("price").cast(pl.Float64), pl.col("qty").cast(pl.Float64).fill_null(0.0),
        pl.col("is_snapshot").fill_null(False),
    ).collect()
    every_ns = _every_ns(every) if every is not None else 0
    to_ns = lambda v: None if v is None else int(v.timestamp() * 1_000_000) * 1000  # noqa: E731
    # books in name order (a small table), rows ordered by (book, time, seq) with a stable
    # numpy lexsort on integers: much cheaper than sorting or partitioning on the strings
    books = df.select("__g", *by).unique("__g").sort(by) if by else df.select("__g").head(1)
    uh = books["__g"].to_numpy()
    perm = np.argsort(uh)
    g = df["__g"].to_numpy()
    rank = perm[np.searchsorted(uh[perm], g)].astype(np.int64) if len(uh) else np.zeros(0, np.int64)
    t, sq = df["__t"].to_numpy(), df["__seq"].to_numpy()
    order = np.lexsort((sq, t, rank))
    gid = rank[order]
    rows, ts, bp, bq, ap, aq = rebuild_arrays(
        gid, t[order], sq[order], df["__bid"].to_numpy()[order], df["price"].to_numpy()[order],
        df["qty"].to_numpy()[order], df["is_snapshot"].to_numpy()[order], depth=depth,
        every_ns=every_ns, origin_ns=0, start_ns=to_ns(start_dt), end_ns=to_ns(end_dt),
        only_changes=only_changes, require_snapshot=require_snapshot)
    cols: dict[str, np.ndarray] = {"ts_exchange": ts, "seq": sq[order][rows]}
    for i in range(depth):
        cols[f"bid_px_{i}"], cols[f"bid_qty_{i}"] = bp[:, i], bq[:, i]
        cols[f"ask_px_{i}"], cols[f"ask_qty_{i}"] = ap[:, i], aq[:, i]
    out = pl.DataFrame(cols, schema={"ts_exchange": pl.Int64, "seq": pl.Int64,
                                     **{c: pl.Float64 for c in wide_columns(depth)}})
    if by:
        out = pl.concat([books.select(by)[gid[rows]], out], how="horizontal")
    out = out.with_columns(
        pl.col("ts_exchange").cast(pl.Datetime("ns")).dt.replace_time_zone("UTC").dt.cast_time_unit("us"),
        pl.col(wide_columns(depth)).fill_nan(None))
    if every is not None:
        out = out.with_columns(pl.col("seq").replace(-1, None))
    return out.select(*by, "ts_exchange", "seq", *wide_columns(depth)).lazy()


def to_long(books: pl.LazyFrame, *, depth: int | None = None,
            by: Sequence[str] = ("venue", "symbol")) -> pl.LazyFrame:
    """Wide books (from :func:`rebuild`) → the ``book_snapshots`` layout.

    Needs ``ts_exchange``, ``by`` and the wide level columns. Emits
    ``ts_exchange, *by, level, side, price, qty`` (one row per present level).

    >>> import polars as pl
    >>> w = pl.LazyFrame({"ts_exchange": [1], "venue": ["x"], "symbol": ["s"], "bid_px_0": [99.0],
    ...     "bid_qty_0": [1.0], "ask_px_0": [101.0], "ask_qty_0": [2.0]})
    >>> to_long(w).select("level", "side", "price", "qty").collect().rows()
    [(0, 'bid', 99.0, 1.0), (0, 'ask', 101.0, 2.0)]
    """
    by = list(by)
    names = books.collect_schema().names()
    if depth is None:
        depth = sum(1 for c in names if c.startswith("bid_px_"))
    parts = [
        books.select("ts_exchange", *by, pl.lit(i, pl.Int32).alias("level"),
                     pl.lit(side).alias("side"), pl.col(f"{side}_px_{i}").alias("price"),
                     pl.col(f"{side}_qty_{i}").alias("qty"),
                     pl.int_range(pl.len(), dtype=pl.Int64).alias("__r"))
        for i in range(depth) for side in ("bid", "ask")
    ]
    return (pl.concat(parts).filter(pl.col("price").is_not_null())
            .sort("__r", "level", pl.col("side").replace_strict({"bid": 0, "ask": 1},
                                                               return_dtype=pl.Int8),
                  maintain_order=True)
            .drop("__r"))


def from_long(snapshots: pl.LazyFrame, depth: int,
              by: Sequence[str] = ("venue", "symbol")) -> pl.LazyFrame:
    """The ``book_snapshots`` layout → wide books (the inverse of :func:`to_long`).

    Needs ``ts_exchange, *by, level, side, price, qty``. Emits ``*by,
    ts_exchange`` and the first ``depth`` levels of each sample in ``level``
    order as ``bid_px_i, bid_qty_i, ask_px_i, ask_qty_i`` (null past a side's
    last level), sorted by ``by`` and time.

    >>> import polars as pl
    >>> s = pl.LazyFrame({"ts_exchange": [1, 1, 1], "venue": "x", "symbol": "s",
    ...     "level": [1, 0, 0], "side": ["ask", "ask", "bid"], "price": [102.0, 101.0, 99.0],
    ...     "qty": [3.0, 2.0, 1.0]})
    >>> from_long(s, 2).select("ask_px_0", "ask_px_1", "bid_px_0", "bid_px_1").collect().row(0)
    (101.0, 102.0, 99.0, None)
    """
    by = list(by)
    bid, ask = pl.col("side") == "bid", pl.col("side") == "ask"
    lists = (snapshots.sort([*by, "ts_exchange", "level"])
             .group_by([*by, "ts_exchange"])
             .agg(pl.col("price").filter(bid).alias("__bp"), pl.col("qty").filter(bid).alias("__bq"),
                  pl.col("price").filter(ask).alias("__ap"), pl.col("qty").filter(ask).alias("__aq")))
    names = {"bid_px": "__bp", "bid_qty": "__bq", "ask_px": "__ap", "ask_qty": "__aq"}
    return (lists.select(*by, "ts_exchange", *[
        pl.col(names[c.rsplit("_", 1)[0]]).list.get(int(c.rsplit("_", 1)[1]), null_on_oob=True).alias(c)
        for c in wide_columns(depth)]).sort([*by, "ts_exchange"]))


# --------------------------------------------------------------------------- walks
@nb.njit(cache=True, nogil=True)
def walk_nb(prices: np.ndarray, sizes: np.ndarray, size: float) -> float:
    """Average price of a market order of ``size`` over levels best first; NaN when too thin.

    The compiled twin of :func:`lab.l2.walk` for numba kernels (they cannot call
    Python): the same float operations in the same order, so both give the same
    bits (tests/micro/test_one_book.py checks it on random books). A NaN size
    is an empty level (a missing level of a wide book).

    >>> import numpy as np
    >>> walk_nb(np.array([100.0, 102.0]), np.array([1.0, 3.0]), 2.0)
    101.0
    """
    cum = 0.0
    notional = 0.0
    for i in range(prices.shape[0]):
        q = sizes[i]
        if q == q:
            if cum < size and q > 0.0:
                left = size - cum
                notional += (left if left < q else q) * prices[i]
            cum += q
    return notional / size if size > 0 and cum >= size * THIN else np.nan


def walk_expr(size: pl.Expr | float, depth: int, side: str) -> pl.Expr:
    """VWAP of a market order of ``size`` walking the wide levels ``{side}_px_i``/``{side}_qty_i``
    (``i < depth``); null when they hold less than ``size`` or ``size`` is not > 0.

    The Polars twin of :func:`lab.l2.walk` (columnar: no Python per row), the
    same operations in the same order; a null size is an empty level. ``side``
    is the column prefix: ``"ask"`` to buy, ``"bid"`` to sell (or
    ``"x_ask"``, … for prefixed books). ``size`` may be an expression.

    >>> import polars as pl
    >>> b = pl.DataFrame({"ask_px_0": [100.0], "ask_qty_0": [1.0], "ask_px_1": [102.0], "ask_qty_1": [3.0]})
    >>> b.select(walk_expr(2.0, 2, "ask")).item(), b.select(walk_expr(5.0, 2, "ask")).item()
    (101.0, None)
    """
    s = size if isinstance(size, pl.Expr) else pl.lit(float(size))
    cum = pl.lit(0.0)
    notional = pl.lit(0.0)
    for i in range(depth):
        p, q = pl.col(f"{side}_px_{i}"), pl.col(f"{side}_qty_{i}").fill_null(0.0)
        fill = pl.min_horizontal(pl.max_horizontal(s - cum, pl.lit(0.0)), q)
        notional = notional + pl.when(fill > 0).then(p * fill).otherwise(0.0)
        cum = cum + q
    return pl.when((cum >= s * THIN) & (s > 0)).then(notional / s).otherwise(None)


# --------------------------------------------------------------------------- features
def mid() -> pl.Expr:
    """Mid price ``(bid_px_0 + ask_px_0) / 2`` of a wide book (quote units).

    >>> import polars as pl
    >>> pl.DataFrame({"bid_px_0": [99.0], "ask_px_0": [101.0]}).select(mid()).item()
    100.0
    """
    return ((pl.col("bid_px_0") + pl.col("ask_px_0")) / 2).alias("mid")


def _levels(side: str, depth: int) -> tuple[list[pl.Expr], list[pl.Expr]]:
    return ([pl.col(f"{side}_px_{i}") for i in range(depth)],
            [pl.col(f"{side}_qty_{i}").fill_null(0.0) for i in range(depth)])


def walk_vwap(size: float, side: str = "buy", depth: int = 10) -> pl.Expr:
    """Average price of a market order of ``size`` (base units) walking the book.

    ``side="buy"`` lifts the asks (levels 0…depth-1), ``"sell"`` hits the bids.
    VWAP = Σ pᵢ·fᵢ / size with fᵢ = clip(size − Σ_{j<i} qⱼ, 0, qᵢ). Null when
    the visible ``depth`` levels hold less than ``size``. Quote units.
    (:func:`walk_expr`, the Polars twin of :func:`lab.l2.walk`, with a name.)

    >>> import polars as pl
    >>> b = pl.DataFrame({"ask_px_0": [100.0], "ask_qty_0": [1.0], "ask_px_1": [101.0],
    ...                   "ask_qty_1": [2.0]})
    >>> b.select(walk_vwap(2.0, "buy", depth=2)).item()
    100.5
    """
    if size <= 0:
        raise ValueError(f"walk_vwap: size must be > 0, got {size}")
    book_side = {"buy": "ask", "sell": "bid"}.get(side)
    if book_side is None:
        raise ValueError(f"walk_vwap: side must be 'buy' or 'sell', got {side!r}")
    return walk_expr(size, depth, book_side).alias(f"walk_vwap_{side}")


def walk_cost_bps(size: float, side: str = "buy", depth: int = 10) -> pl.Expr:
    """Cost of walking the book for ``size`` versus the mid, in basis points.

    ``(vwap − mid)/mid·1e4`` for a buy, ``(mid − vwap)/mid·1e4`` for a sell
    (positive = cost). Needs the wide level columns.

    >>> import polars as pl
    >>> b = pl.DataFrame({"bid_px_0": [99.0], "bid_qty_0": [5.0], "ask_px_0": [101.0],
    ...                   "ask_qty_0": [5.0]})
    >>> b.select(walk_cost_bps(1.0, "buy", depth=1)).item()
    100.0
    """
    v = walk_vwap(size, side, depth)
    m = mid()
    e = (v - m) / m * 1e4 if side == "buy" else (m - v) / m * 1e4
    return e.alias(f"walk_cost_bps_{side}")


def with_walk(books: pl.LazyFrame, size: float, depth: int = 10) -> pl.LazyFrame:
    """Add ``walk_vwap_buy/sell`` and ``walk_cost_bps_buy/sell`` for a market order of ``size``.

    >>> import polars as pl
    >>> b = pl.LazyFrame({"bid_px_0": [99.0, 99.0, 98.0], "bid_qty_0": [5.0, 1.0, 1.0],
    ...     "ask_px_0": [101.0, 101.0, 100.0], "ask_qty_0": [5.0, 1.0, 3.0]})
    >>> with_walk(b, 2.0, depth=1).select("walk_vwap_buy").collect().to_series().to_list()
    [101.0, None, 100.0]
    """
    return books.with_columns(walk_vwap(size, "buy", depth), walk_vwap(size, "sell", depth),
                              walk_cost_bps(size, "buy", depth), walk_cost_bps(size, "sell", depth))


def depth_within_bps(bps: float, side: str = "bid", depth: int = 10, notional: bool = False) -> pl.Expr:
    """Resting size (base units, or quote if ``notional``) within ``bps`` of the mid on one side.

    A bid level counts when ``px ≥ mid·(1 − bps/1e4)``, an ask level when
    ``px ≤ mid·(1 + bps/1e4)``. Only the ``depth`` visible levels are seen.

    >>> import polars as pl
    >>> b = pl.DataFrame({"bid_px_0": [99.9], "bid_qty_0": [1.0], "bid_px_1": [99.0],
    ...     "bid_qty_1": [2.0], "ask_px_0": [100.1], "ask_qty_0": [1.0]})
    >>> b.select(depth_within_bps(50, "bid", depth=2)).item()
    1.0
    """
    if side not in ("bid", "ask"):
        raise ValueError(f"depth_within_bps: side must be 'bid' or 'ask', got {side!r}")
    m = mid()
    lim = m * (1 - bps / 1e4) if side == "bid" else m * (1 + bps / 1e4)
    pxs, qtys = _levels(side, depth)
    terms = []
    for p, q in zip(pxs, qtys):
        inside = (p >= lim) if side == "bid" else (p <= lim)
        terms.append(pl.when(inside).then(q * p if notional else q).otherwise(0.0))
    return pl.sum_horizontal(terms).alias(f"depth_{side}_{bps:g}bps")


def imbalance(levels: int = 1) -> pl.Expr:
    """Book imbalance over the first ``levels`` levels, in [-1, 1].

    ``(Σ bid_qty − Σ ask_qty) / (Σ bid_qty + Σ ask_qty)`` over levels
    ``0…levels-1`` (Cao, Hansch & Wang 2009 use the same depth imbalance).
    Positive = more resting bids.

    >>> import polars as pl
    >>> b = pl.DataFrame({"bid_qty_0": [3.0], "ask_qty_0": [1.0], "bid_qty_1": [1.0], "ask_qty_1": [3.0]})
    >>> b.select(imbalance(1), imbalance(2)).row(0)
    (0.5, 0.0)
    """
    bq = pl.sum_horizontal([pl.col(f"bid_qty_{i}").fill_null(0.0) for i in range(levels)])
    aq = pl.sum_horizontal([pl.col(f"ask_qty_{i}").fill_null(0.0) for i in range(levels)])
    return ((bq - aq) / (bq + aq)).alias(f"imbalance_{levels}")


def slope(side: str = "bid", levels: int = 5) -> pl.Expr:
    """Book slope: cumulative size over the first ``levels`` levels per bp of distance from mid.

    ``Σ_{i<levels} qᵢ / (|p_{levels-1} − mid| / mid · 1e4)`` — base units per
    basis point (after Næs & Skjeltorp 2006: how fast depth accumulates away
    from the mid; larger = a steeper, more liquid book). Null if the side has
    fewer than ``levels`` levels.

    >>> import polars as pl
    >>> b = pl.DataFrame({"bid_px_0": [99.0], "bid_qty_0": [1.0], "bid_px_1": [98.0],
    ...     "bid_qty_1": [1.0], "ask_px_0": [101.0], "ask_qty_0": [1.0]})
    >>> round(b.select(slope("bid", 2)).item(), 6)
    0.01
    """
    if side not in ("bid", "ask"):
        raise ValueError(f"slope: side must be 'bid' or 'ask', got {side!r}")
    m = mid()
    far = pl.col(f"{side}_px_{levels - 1}")
    dist = (far - m).abs() / m * 1e4
    q = pl.sum_horizontal([pl.col(f"{side}_qty_{i}") for i in range(levels)])
    return pl.when(far.is_not_null()).then(q / dist).alias(f"slope_{side}_{levels}")


def with_book_features(books: pl.LazyFrame, *, bps: float = 10.0, size: float = 1.0,
                       levels: int = 5, depth: int | None = None) -> pl.LazyFrame:
    """Add mid, spread_bps, imbalance_1, imbalance_k, depth within ``bps`` on both sides,
    walk cost for ``size`` on both sides and slopes over ``levels`` levels.

    >>> import polars as pl
    >>> b = pl.LazyFrame({"bid_px_0": [99.0, 99.5, 99.0], "bid_qty_0": [1.0, 2.0, 3.0],
    ...     "ask_px_0": [101.0, 100.5, 100.0], "ask_qty_0": [1.0, 2.0, 1.0]})
    >>> with_book_features(b, levels=1).select("mid", "imbalance_1").collect().rows()
    [(100.0, 0.0), (100.0, 0.0), (99.5, 0.5)]
    """
    if depth is None:
        depth = sum(1 for c in books.collect_schema().names() if c.startswith("bid_px_"))
    levels = min(levels, depth)
    m = mid()
    return books.with_columns(
        m,
        ((pl.col("ask_px_0") - pl.col("bid_px_0")) / m * 1e4).alias("spread_bps"),
        imbalance(1),
        *([imbalance(levels)] if levels > 1 else []),
        depth_within_bps(bps, "bid", depth), depth_within_bps(bps, "ask", depth),
        walk_cost_bps(size, "buy", depth), walk_cost_bps(size, "sell", depth),
        slope("bid", levels), slope("ask", levels),
    )
