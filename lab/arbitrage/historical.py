"""Historical arbitrage: cross-venue and triangular opportunities, episodes, summary.

Inputs are books in the *wide* layout of :func:`lab.book.rebuild`
(``bid_px_0, bid_qty_0, ask_px_0, ask_qty_0, …``) or plain ``quotes`` rows
(``bid_px, bid_qty, ask_px, ask_qty``: a one-level book). Every price used is
the volume-weighted price of a taker order **walking the book** for the
requested size, never a mid; both legs pay the venue's taker fee. A venue's
book is used only while it is fresher than ``max_age`` (receive time by
default: a silent venue must not create fake arbitrage).

Time is ``ts_local`` (when we received the book) by default, which is what a
live detector sees; the live detector (:mod:`lab.arbitrage.live`) applies the
same rules row by row and finds the same rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import numba as nb
import numpy as np
import polars as pl

from lab.arbitrage.config import DEFAULT_TAKER_BPS
from lab.book import walk_expr, walk_nb
from lab.l2 import THIN
from lab.schema import TS, table_spec
from lab.venues import usd_rates

__all__ = [
    "as_books",
    "books_from_updates",
    "walk_buy",
    "walk_sell",
    "walk_spend",
    "cross_venue",
    "scan",
    "triangular",
    "episodes",
    "summary",
    "SIGNAL_COLUMNS",
]

#: The ``arbitrage_signals`` table's columns (from :mod:`lab.schema`, the one home of columns).
SIGNAL_COLUMNS: dict[str, pl.DataType] = dict(table_spec("arbitrage_signals").columns)

_DEFAULT_RATES = usd_rates()


# --------------------------------------------------------------------------- inputs
def _depth(names: Sequence[str]) -> int:
    d = 0
    while f"ask_px_{d}" in names and f"bid_px_{d}" in names:
        d += 1
    return d


def as_books(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Quotes (``bid_px, bid_qty, ask_px, ask_qty``) → a one-level wide book.

    Wide books pass through unchanged.

    >>> q = pl.LazyFrame({"bid_px": [99.0], "bid_qty": [1.0], "ask_px": [101.0], "ask_qty": [2.0]})
    >>> as_books(q).collect_schema().names()
    ['bid_px_0', 'bid_qty_0', 'ask_px_0', 'ask_qty_0']
    """
    names = lf.collect_schema().names()
    if _depth(names):
        return lf
    need = ["bid_px", "bid_qty", "ask_px", "ask_qty"]
    missing = [c for c in need if c not in names]
    if missing:
        raise ValueError(f"expected wide books (bid_px_0, …) or quotes; missing {missing} in {names}")
    return lf.rename({c: f"{c}_0" for c in need})


def books_from_updates(updates: pl.LazyFrame | pl.DataFrame, *, depth: int = 10,
                       by: Sequence[str] = ("venue", "symbol")) -> pl.LazyFrame:
    """Wide top-``depth`` books from ``book_updates``, timed by receive time (``ts_local``).

    :func:`lab.book.rebuild` on ``ts_local`` (one row per book message that
    changes the top ``depth`` levels), ready for :func:`cross_venue` /
    :func:`triangular` to walk the book for sizes beyond the top level.
    """
    from lab.book import rebuild

    return (rebuild(updates, depth=depth, by=by, time_column="ts_local", only_changes=True)
            .rename({"ts_exchange": "ts_local"}))


def _ms(v: float | dt.timedelta | str) -> float:
    if isinstance(v, dt.timedelta):
        return v.total_seconds() * 1e3
    if isinstance(v, str):
        s = v.strip()
        for u, m in (("ms", 1.0), ("us", 1e-3), ("s", 1e3), ("m", 6e4)):
            if s.endswith(u) and s[: -len(u)].replace(".", "", 1).isdigit():
                return float(s[: -len(u)]) * m
        raise ValueError(f"max_age={v!r}: expected e.g. '500ms', '2s' or a number of ms")
    return float(v)


def _size_expr(size: float | Mapping[str, float], key: str = "__base") -> pl.Expr:
    if isinstance(size, Mapping):
        return pl.col(key).replace_strict({k: float(s) for k, s in size.items()},
                                          default=None, return_dtype=pl.Float64)
    if size <= 0:
        raise ValueError(f"size must be > 0, got {size}")
    return pl.lit(float(size))


def _fee_expr(fees: float | Mapping[str, float] | None, col: str, default: float) -> pl.Expr:
    """Fee as a fraction for the venue in ``col``."""
    if fees is None:
        fees = DEFAULT_TAKER_BPS
    if isinstance(fees, Mapping):
        return pl.col(col).replace_strict({k: v / 1e4 for k, v in fees.items()},
                                          default=default / 1e4, return_dtype=pl.Float64)
    return pl.lit(float(fees) / 1e4)


def _fee(fees: float | Mapping[str, float] | None, venue: str, default: float) -> float:
    if fees is None:
        fees = DEFAULT_TAKER_BPS
    if isinstance(fees, Mapping):
        return float(fees.get(venue, default)) / 1e4
    return float(fees) / 1e4


# --------------------------------------------------------------------------- book walks
def walk_buy(size: pl.Expr | float, depth: int, prefix: str = "") -> pl.Expr:
    """VWAP of buying ``size`` base units by lifting the asks (null if too thin).

    :func:`lab.book.walk_expr` (the Polars twin of :func:`lab.l2.walk`) on the asks;
    ``size`` may be an expression.

    >>> b = pl.DataFrame({"ask_px_0": [100.0], "ask_qty_0": [1.0], "ask_px_1": [102.0], "ask_qty_1": [3.0]})
    >>> b.select(walk_buy(2.0, 2)).item(), b.select(walk_buy(5.0, 2)).item()
    (101.0, None)
    """
    return walk_expr(size, depth, f"{prefix}ask")


def walk_sell(size: pl.Expr | float, depth: int, prefix: str = "") -> pl.Expr:
    """VWAP of selling ``size`` base units into the bids (null if too thin).

    >>> b = pl.DataFrame({"bid_px_0": [100.0], "bid_qty_0": [1.0], "bid_px_1": [98.0], "bid_qty_1": [3.0]})
    >>> b.select(walk_sell(2.0, 2)).item()
    99.0
    """
    return walk_expr(size, depth, f"{prefix}bid")


def walk_spend(notional: pl.Expr | float, depth: int, prefix: str = "") -> pl.Expr:
    """Base units bought by spending ``notional`` quote units on the asks (null if too thin).

    The Polars twin of :func:`lab.l2.spend` (columnar), the same operations in the
    same order; tests/micro/test_one_book.py checks that they agree.

    >>> b = pl.DataFrame({"ask_px_0": [100.0], "ask_qty_0": [1.0], "ask_px_1": [200.0], "ask_qty_1": [1.0]})
    >>> b.select(walk_spend(200.0, 2)).item(), b.select(walk_spend(400.0, 2)).item()
    (1.5, None)
    """
    n = notional if isinstance(notional, pl.Expr) else pl.lit(float(notional))
    side = f"{prefix}ask"
    spent = pl.lit(0.0)
    got = pl.lit(0.0)
    for i in range(depth):
        p, q = pl.col(f"{side}_px_{i}"), pl.col(f"{side}_qty_{i}").fill_null(0.0)
        take = pl.min_horizontal(pl.max_horizontal(n - spent, pl.lit(0.0)), p.fill_null(0.0) * q)
        got = got + pl.when(take > 0).then(take / p).otherwise(0.0)
        spent = spent + (p.fill_null(0.0) * q)
    return pl.when(spent >= n * THIN).then(got).otherwise(None)


def _proceeds(qty: pl.Expr, depth: int, prefix: str = "") -> pl.Expr:
    """Quote units received selling ``qty`` base into the bids (null if too thin)."""
    return walk_sell(qty, depth, prefix) * qty


# --------------------------------------------------------------------------- timeline
def _venues(lf: pl.LazyFrame, col: str, given: Sequence[str] | None) -> list[str]:
    if given is not None:
        return list(given)
    # the only eager step: the set of venues names the as-of columns
    return sorted(lf.select(pl.col(col).unique()).collect().to_series().drop_nulls().to_list())


def _keep(keep: str) -> None:
    if keep not in ("signals", "episodes", "all"):
        raise ValueError(f"keep must be 'signals', 'episodes' or 'all', got {keep!r}")


def _check(lf: pl.LazyFrame, cols: Sequence[str], fn: str) -> list[str]:
    names = lf.collect_schema().names()
    missing = [c for c in cols if c not in names]
    if missing:
        raise ValueError(f"{fn}: missing column(s) {missing}; got {names}")
    return names


@nb.njit(cache=True, nogil=True)
def _cross_kernel(ts: np.ndarray, order: np.ndarray, vphys: np.ndarray, sphys: np.ndarray,
                  vlook: np.ndarray, slook: np.ndarray, s_asset: np.ndarray, s_size: np.ndarray,
                  s_rate: np.ndarray, ap: np.ndarray, aq: np.ndarray, bpx: np.ndarray,
                  bq: np.ndarray, n_v: int, n_a: int, fee: np.ndarray, max_age: int,
                  min_edge: float, mode: int) -> tuple:
    """One pass over books in time order (``order``); per asset the last book of each venue.

    Each row's venue and symbol come from its categorical codes through the
    ``vlook``/``slook`` tables (``-1``: not used); its USD buy/sell prices are
    the walks of the ``(n, depth)`` level arrays for the symbol's size. At each
    row of venue ``v`` it compares ``v`` with every other venue in both
    directions. mode 0: profitable rows only, 1: plus the row ending a run,
    2: every comparison. Returns (row, row_buy, row_sell, buy_px, sell_px,
    profitable, fresh), rows as indices of the input.
    """
    last = np.full((n_a, n_v), -1, np.int64)
    l_ts = np.zeros((n_a, n_v), np.int64)
    l_buy = np.zeros((n_a, n_v), np.float64)
    l_sell = np.zeros((n_a, n_v), np.float64)
    prev = np.zeros((n_a, n_v, n_v), np.bool_)
    cap = 1024
    o_row = np.empty(cap, np.int64)
    o_rb = np.empty(cap, np.int64)
    o_rs = np.empty(cap, np.int64)
    o_bp = np.empty(cap, np.float64)
    o_sp = np.empty(cap, np.float64)
    o_p = np.empty(cap, np.bool_)
    o_f = np.empty(cap, np.bool_)
    k = 0
    for n in range(order.shape[0]):
        i = order[n]
        v = vlook[vphys[i]]
        s = slook[sphys[i]]
        if v < 0 or s < 0:
            continue
        a = s_asset[s]
        size = s_size[s]
        # walk both sides for the size (NaN when the visible levels are too thin)
        buy = walk_nb(ap[i], aq[i], size) * s_rate[s]
        sell = walk_nb(bpx[i], bq[i], size) * s_rate[s]
        last[a, v] = i
        l_ts[a, v] = ts[i]
        l_buy[a, v] = buy
        l_sell[a, v] = sell
        for w in range(n_v):
            if w == v or last[a, w] < 0:
                continue
            j = last[a, w]
            fresh = ts[i] - l_ts[a, w] <= max_age
            for dd in range(2):
                if dd == 0:
                    rb, rs, bv, sv, bp, sp = i, j, v, w, buy, l_sell[a, w]
                else:
                    rb, rs, bv, sv, bp, sp = j, i, w, v, l_buy[a, w], sell
                if bp == bp and sp == sp:
                    cost = bp * (1.0 + fee[bv])
                    net = (sp * (1.0 - fee[sv]) - cost) / cost * 1e4
                    prof = fresh and net > min_edge
                else:  # NaN: a book too thin for the size
                    prof = False
                emit = prof or mode == 2 or (mode == 1 and prev[a, bv, sv])
                prev[a, bv, sv] = prof
                if not emit:
                    continue
                if k == cap:
                    cap *= 2
                    o_row = _grow(o_row, cap)
                    o_rb = _grow(o_rb, cap)
                    o_rs = _grow(o_rs, cap)
                    o_bp = _grow(o_bp, cap)
                    o_sp = _grow(o_sp, cap)
                    o_p = _grow(o_p, cap)
                    o_f = _grow(o_f, cap)
                o_row[k] = i
                o_rb[k] = rb
                o_rs[k] = rs
                o_bp[k] = bp
                o_sp[k] = sp
                o_p[k] = prof
                o_f[k] = fresh
                k += 1
    return o_row[:k], o_rb[:k], o_rs[:k], o_bp[:k], o_sp[:k], o_p[:k], o_f[:k]


@nb.njit(cache=True)
def _grow(a: np.ndarray, cap: int) -> np.ndarray:
    b = np.empty(cap, a.dtype)
    b[: a.shape[0]] = a
    return b


def cross_venue(
    lf: pl.LazyFrame,
    *,
    fees: float | Mapping[str, float] | None = None,
    size: float | Mapping[str, float] = 1.0,
    max_age: float | dt.timedelta | str = 2000.0,
    min_edge_bps: float = 0.0,
    quote_rates: Mapping[str, float] | None = None,
    venues: Sequence[str] | None = None,
    assets: Sequence[str] | None = None,
    time_column: str = "ts_local",
    default_fee_bps: float = 10.0,
    keep: str = "signals",
) -> pl.LazyFrame:
    """Buy on one venue, sell on another: every moment it pays after fees and depth.

    ``lf``: quotes or wide books with ``venue``, ``symbol`` (``BASE-QUOTE``)
    and ``time_column``. USD-like quotes (``quote_rates``, default USD, USDT,
    USDC at 1.0) are converted to USD, so ``BTC-USDT`` on one venue and
    ``BTC-USD`` on another are the same asset. ``fees``: taker fee in bps per
    venue (mapping, default :data:`DEFAULT_TAKER_BPS`) or one number.
    ``size``: base units per trade (one number or per asset). ``max_age``: ms
    (or ``"500ms"``/timedelta) after which a venue's last book is stale.
    ``venues``/``assets``: restrict to these.

    At each book update of venue ``v`` the latest book of every other venue
    (same asset) is compared with ``v``'s, in both directions:
    ``buy_px`` = VWAP lifting ``size`` on the buy venue's asks, ``sell_px`` =
    VWAP hitting the sell venue's bids (USD);
    ``gross_edge_bps = (sell_px − buy_px)/buy_px·1e4``;
    ``net_edge_bps = (sell_px·(1−f_sell) − buy_px·(1+f_buy))/(buy_px·(1+f_buy))·1e4``;
    ``profit_quote = size·(sell_px·(1−f_sell) − buy_px·(1+f_buy))`` (USD);
    ``volume_usd = size·buy_px``. A side too thin for ``size`` gives no row;
    the other venue's book older than ``max_age`` makes the moment not ``fresh``.

    ``keep="signals"`` (default): rows in the ``arbitrage_signals`` layout
    (``kind="cross_venue"``) where ``net_edge_bps > min_edge_bps`` and both
    books are fresh, in time order. ``keep="episodes"``: also the row that
    ends each run (input of :func:`episodes` / :func:`summary`);
    ``keep="all"``: every comparison. Both add ``fresh``, ``venue`` (whose
    update it was) and ``profitable``.

    The time-ordered pass runs in a compiled kernel (rows are collected into
    arrays; a day of 3 venues × 3 assets takes seconds); the result is lazy.

    >>> t = lambda ms: dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(milliseconds=ms)
    >>> q = pl.LazyFrame({"ts_local": [t(0), t(10), t(20)], "venue": ["a", "b", "b"],
    ...     "symbol": ["BTC-USDT", "BTC-USD", "BTC-USD"], "bid_px": [99.0, 101.0, 100.0],
    ...     "bid_qty": [5.0, 5.0, 5.0], "ask_px": [100.0, 102.0, 100.5], "ask_qty": [5.0, 5.0, 5.0]})
    >>> cross_venue(q, fees=0.0, size=1.0).select("buy_venue", "sell_venue", "net_edge_bps").collect().rows()
    [('a', 'b', 100.0)]
    >>> cross_venue(q, fees={"a": 60.0, "b": 60.0}, size=1.0).collect().height
    0
    """
    _keep(keep)
    _check(lf, ["venue", "symbol", time_column], "cross_venue")
    books = as_books(lf)
    depth = _depth(books.collect_schema().names())
    rates = dict(quote_rates or _DEFAULT_RATES)
    max_age_us = int(_ms(max_age) * 1000)
    q = books.select(pl.col(time_column).alias("ts"), "venue", "symbol", *wide_columns_of(depth))
    if venues is not None:
        q = q.filter(pl.col("venue").is_in(list(venues)))
    raw = q.collect()
    # symbols and venues are few: one categorical pass each gives small integer
    # codes; everything after is numbers, in one compiled pass
    v_phys, v_names = _categorize(raw["venue"])
    s_phys, s_names = _categorize(raw["symbol"])
    keep_syms = []
    for s in sorted(x for x in s_names if x):
        base, _, quote = s.partition("-")
        sz = size.get(base) if isinstance(size, Mapping) else size
        if quote in rates and sz is not None and (assets is None or base in assets):
            if not isinstance(size, Mapping) and size <= 0:
                raise ValueError(f"size must be > 0, got {size}")
            keep_syms.append((s, base, float(sz), float(rates[quote])))
    vnames = sorted(x for x in v_names if x)
    anames = sorted({b for _, b, _, _ in keep_syms})
    s_idx = {s: i for i, (s, *_r) in enumerate(keep_syms)}
    s_asset = np.array([anames.index(b) for _, b, _, _ in keep_syms], np.int64)
    s_size = np.array([z for *_r, z, _ in keep_syms], np.float64)
    s_rate = np.array([r for *_r, r in keep_syms], np.float64)
    vlook = _look(v_names, {v: i for i, v in enumerate(vnames)})
    slook = _look(s_names, s_idx)
    tsn = _arr(raw["ts"].dt.cast_time_unit("us").dt.epoch("us").to_numpy(), np.int64)

    def levels(side: str, what: str) -> np.ndarray:
        cols = [raw[f"{side}_{what}_{i}"].cast(pl.Float64).fill_null(np.nan).to_numpy()  # noqa: F821 - used before the del below
                for i in range(depth)]
        return _arr(cols[0], np.float64)[:, None] if depth == 1 else np.column_stack(cols)

    ap, aq, bpx, bq = levels("ask", "px"), levels("ask", "qty"), levels("bid", "px"), levels("bid", "qty")
    del raw
    if tsn.shape[0] > 1 and not np.all(tsn[1:] >= tsn[:-1]):
        order = np.argsort(tsn, kind="stable")
    else:
        order = np.arange(tsn.shape[0], dtype=np.int64)
    fee = np.array([_fee(fees, v, default_fee_bps) for v in vnames], np.float64)
    row, rb, rs, bp, sp, prof, fresh = _cross_kernel(
        tsn, _arr(order, np.int64), _arr(v_phys, np.int64), _arr(s_phys, np.int64), vlook, slook,
        s_asset, s_size, s_rate, ap, aq, bpx, bq, len(vnames), len(anames), fee, max_age_us,
        float(min_edge_bps), {"signals": 0, "episodes": 1, "all": 2}[keep])
    vn = pl.Series(vnames, dtype=pl.String)
    sn = pl.Series([s for s, *_r in keep_syms], dtype=pl.String)
    an = pl.Series(anames, dtype=pl.String)
    bv, sv = vlook[v_phys[rb]], vlook[v_phys[rs]]
    scode = slook[s_phys[row]]
    fb, fs = fee[bv], fee[sv]
    out = pl.DataFrame({
        "ts": pl.Series(tsn[row], dtype=pl.Int64).cast(pl.Datetime("us", "UTC")),
        "asset": an.gather(s_asset[scode]),
        "buy_venue": vn.gather(bv), "sell_venue": vn.gather(sv),
        "buy_symbol": sn.gather(slook[s_phys[rb]]), "sell_symbol": sn.gather(slook[s_phys[rs]]),
        "size": s_size[scode], "buy_px": bp, "sell_px": sp,
        "__cost": bp * (1 + fb), "__proceeds": sp * (1 - fs),
        "fresh": fresh, "venue": vn.gather(vlook[v_phys[row]]), "profitable": prof,
    })
    cost, proceeds = pl.col("__cost"), pl.col("__proceeds")
    lazy = out.lazy().with_columns(
        pl.lit("cross_venue").alias("kind"),
        ((pl.col("sell_px") - pl.col("buy_px")) / pl.col("buy_px") * 1e4).alias("gross_edge_bps"),
        ((proceeds - cost) / cost * 1e4).alias("net_edge_bps"),
        (pl.col("size") * (proceeds - cost)).alias("profit_quote"),
        (pl.col("size") * pl.col("buy_px")).alias("volume_usd")).fill_nan(None)
    if keep == "signals":
        return lazy.select(list(SIGNAL_COLUMNS))
    return lazy.select(*SIGNAL_COLUMNS, "fresh", "venue", "profitable")


def _scan_day(quotes: pl.LazyFrame, *, day_start: dt.datetime, kw: dict) -> pl.DataFrame:
    out = cross_venue(quotes, **kw)
    return out.filter(pl.col("ts") >= day_start).collect()


def scan(
    start: dt.datetime | dt.date | str,
    end: dt.datetime | dt.date | str,
    *,
    lake: object = None,
    venues: Sequence[str] | None = None,
    cluster: object = None,
    warmup: float | dt.timedelta | str = dt.timedelta(hours=1),
    time_column: str = "ts_local",
    **kw: object,
) -> pl.DataFrame:
    """:func:`cross_venue` over the lake's ``quotes`` with ``time_column`` in ``[start, end)``, collected.

    ``kw`` are :func:`cross_venue`'s options (``fees``, ``size``, ``max_age``,
    ``keep``, ...); the rows are the ones one :func:`cross_venue` pass over the
    whole range gives, in the same order, so :func:`episodes` and
    :func:`summary` of the result see an opportunity open before midnight and
    close after it as one episode. A range over more than one UTC day, or a
    configured cluster, runs one task per day (every venue and symbol of that
    day together) through :func:`lab.distributed.map_days` on a pinned version;
    a one-day call with no cluster is one pass here.

    Midnight: a pass carries each venue's last book over it. Each day's task
    therefore first replays the ``warmup`` before the day (at least ``max_age``:
    ms, ``"500ms"`` or a timedelta) and keeps only the rows from midnight on.
    The signals (``keep="signals"``) equal one pass exactly; with ``keep="episodes"``
    or ``"all"``, the rows equal it whenever every venue quotes within the
    ``warmup`` before each midnight (a venue silent longer is stale then anyway:
    only a row recording that staleness could be missing).
    """
    from lab.distributed import cluster_configured, map_days, spans_days

    if time_column not in ("ts_local", "ts_exchange"):
        raise ValueError(f"scan: time_column must be ts_local or ts_exchange, got {time_column!r}")
    args = {**kw, "time_column": time_column}
    if venues is not None:
        args["venues"] = list(venues)
    wu = max(_ms(warmup), _ms(args.get("max_age", 2000.0)))  # type: ignore[arg-type]
    if not spans_days(start, end) and not cluster_configured(cluster):  # type: ignore[arg-type]
        from lab.distributed import as_utc
        from lab.lake import Lake, default_lake

        lk = lake if isinstance(lake, Lake) else Lake(lake) if lake is not None else default_lake()  # type: ignore[arg-type]
        t0, t1 = as_utc(start), as_utc(end)
        q = lk.scan("quotes", venue=venues).filter(pl.col(time_column) >= t0, pl.col(time_column) < t1)
        return cross_venue(q, **args).collect()  # type: ignore[arg-type]
    import functools

    job = map_days(functools.partial(_scan_day, kw=args), "quotes", start, end, venues=venues, by=(),
                   on=time_column, warmup=dt.timedelta(milliseconds=wu), lake=lake, cluster=cluster)  # type: ignore[arg-type]
    if job.failures:
        from lab.errors import DataError

        (key, err), more = job.failures[0], len(job.failures) - 1
        raise DataError(f"arbitrage scan: day {key[-1]} failed: {err}" + (f" (and {more} more)" if more else ""))
    return job.frame.drop("day") if "day" in job.frame.columns else job.frame


def _arr(a: np.ndarray, dtype: type) -> np.ndarray:
    """Contiguous, writable ``dtype`` array: one compiled kernel signature for every input
    (a read-only view from Polars would otherwise trigger a fresh compilation)."""
    a = np.ascontiguousarray(a, dtype)
    return a if a.flags.writeable else a.copy()


def _categorize(col: pl.Series) -> tuple[np.ndarray, list[str]]:
    """Per-row categorical codes (``-1`` for null) and the name of each code.

    >>> c, names = _categorize(pl.Series(["b", "a", None, "b"]))
    >>> [names[i] if i >= 0 else None for i in c.tolist()]
    ['b', 'a', None, 'b']
    """
    cat = col.cast(pl.Categorical)
    phys = cat.to_physical().cast(pl.Int64).fill_null(-1).to_numpy()
    u = cat.unique().drop_nulls()
    names = [""] * (int(phys.max()) + 1 if phys.shape[0] else 0)
    for code, name in zip(u.to_physical().to_list(), u.cast(pl.String).to_list()):
        names[code] = name
    return phys, names


def _look(names: list[str], index: Mapping[str, int]) -> np.ndarray:
    """Table from categorical code to ``index`` position; the extra last slot (``-1``)
    is what a null's code ``-1`` reads.

    >>> _look(["b", "a"], {"a": 0}).tolist()
    [-1, 0, -1]
    """
    look = np.full(len(names) + 1, -1, np.int64)
    for code, name in enumerate(names):
        look[code] = index.get(name, -1)
    return look


def wide_columns_of(depth: int) -> list[str]:
    """Level columns of a wide book of ``depth`` levels (as :func:`lab.book.wide_columns`).

    >>> wide_columns_of(1)
    ['bid_px_0', 'bid_qty_0', 'ask_px_0', 'ask_qty_0']
    """
    return [c for i in range(depth)
            for c in (f"bid_px_{i}", f"bid_qty_{i}", f"ask_px_{i}", f"ask_qty_{i}")]


# which currency quotes a pair: the one listed first here (venues' convention)
QUOTE_PRIORITY = ("USD", "EUR", "BTC", "ETH", "BNB")


def _pair_symbol(x: str, y: str) -> str:
    """The canonical book trading ``x`` against ``y`` (``BASE-QUOTE``).

    >>> _pair_symbol("USD", "BTC"), _pair_symbol("ETH", "BTC")
    ('BTC-USD', 'ETH-BTC')
    """
    rank = {c: i for i, c in enumerate(QUOTE_PRIORITY)}
    rx, ry = rank.get(x, len(rank)), rank.get(y, len(rank))
    if rx == ry:
        raise ValueError(f"triangular: cannot tell which of {x}/{y} is the quote currency; "
                         f"known quotes: {QUOTE_PRIORITY}")
    return f"{y}-{x}" if rx < ry else f"{x}-{y}"


def _legs(cycle: Sequence[str]) -> list[tuple[str, str]]:
    return [(cycle[i], cycle[(i + 1) % len(cycle)]) for i in range(len(cycle))]


def triangular(
    lf: pl.LazyFrame,
    *,
    cycles: Sequence[Sequence[str]] = (("USD", "BTC", "ETH"),),
    fees: float | Mapping[str, float] | None = None,
    notional: float = 1000.0,
    max_age: float | dt.timedelta | str = 2000.0,
    min_edge_bps: float = 0.0,
    quote_rates: Mapping[str, float] | None = None,
    time_column: str = "ts_local",
    default_fee_bps: float = 10.0,
    both_directions: bool = True,
    keep: str = "signals",
) -> pl.LazyFrame:
    """Currency cycles within one venue (e.g. USD→BTC→ETH→USD), after fees and depth.

    Each leg X→Y trades the venue's ``Y-X`` book (spend X on its asks) or
    ``X-Y`` book (sell X into its bids), walking the levels and paying the
    venue's taker fee; USDT and USD name the same currency here (a venue lists
    one of them). Starting with ``notional`` of the first currency, the cycle
    ends with ``notional·product``; ``net_edge_bps = (product − 1)·1e4``,
    ``gross_edge_bps`` the same without fees, ``profit_quote`` in the first
    currency, ``volume_usd`` its USD value when it is USD-like. Rows use the
    ``arbitrage_signals`` layout with ``kind="triangular"``, ``asset`` the
    path (``USD>BTC>ETH>USD``), ``buy_venue == sell_venue``, ``buy_symbol``
    the first leg's book, ``sell_symbol`` the last, ``buy_px``/``sell_px``
    the first and last legs' VWAPs. Evaluated at each update of any leg's book,
    only while all three books are fresh. ``keep`` as in :func:`cross_venue`.

    >>> t = lambda ms: dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(milliseconds=ms)
    >>> q = pl.LazyFrame({"ts_local": [t(0), t(1), t(2)], "venue": "x",
    ...     "symbol": ["BTC-USDT", "ETH-BTC", "ETH-USDT"], "bid_px": [99.0, 0.0299, 3.03],
    ...     "bid_qty": 1000.0, "ask_px": [100.0, 0.03, 3.04], "ask_qty": 1000.0})
    >>> r = triangular(q, fees=0.0, both_directions=False).collect()
    >>> round(r["net_edge_bps"][0], 6)   # 1000/100/0.03*3.03/1000 = 1.01
    100.0
    """
    _keep(keep)
    _check(lf, ["venue", "symbol", time_column], "triangular")
    books = as_books(lf)
    depth = _depth(books.collect_schema().names())
    rates = dict(quote_rates or _DEFAULT_RATES)
    usd_like = set(rates)
    norm = lambda c: "USD" if c in usd_like else c  # noqa: E731
    max_age_us = int(_ms(max_age) * 1000)
    cyc: list[tuple[str, ...]] = []
    for c in cycles:
        c = tuple(norm(x) for x in c)
        if len(c) < 3:
            raise ValueError(f"triangular: a cycle needs 3+ currencies, got {c}")
        cyc.append(c)
        if both_directions:
            cyc.append((c[0], *reversed(c[1:])))
    need: set[str] = set()
    plan = []
    for c in cyc:
        legs = _legs(c)
        need.update(_pair_symbol(x, y) for x, y in legs)
        plan.append((c, legs))
    t = pl.col(time_column)
    lvl = [f"{s}_{k}_{i}" for i in range(depth) for s in ("bid", "ask") for k in ("px", "qty")]
    base = (books
            .with_columns(pl.col("symbol").str.split_exact("-", 1)
                          .struct.rename_fields(["__b", "__q"]).alias("__s"))
            .unnest("__s")
            .with_columns(pl.when(pl.col("__q").is_in(list(usd_like))).then(pl.lit("USD"))
                          .otherwise(pl.col("__q")).alias("__q"),
                          pl.when(pl.col("__b").is_in(list(usd_like))).then(pl.lit("USD"))
                          .otherwise(pl.col("__b")).alias("__b"))
            .with_columns((pl.col("__b") + "-" + pl.col("__q")).alias("__nsym"))
            .filter(pl.col("__nsym").is_in(sorted(need)))
            .select(t.alias("ts"), "venue", "symbol", "__nsym", *lvl)
            .sort("ts", maintain_order=True))
    syms = sorted(need)
    key = {s: s.replace("-", "_") for s in syms}
    ff = []
    for s in syms:
        on = pl.col("__nsym") == s
        # a level the book no longer has is null on its own row: carry it as NaN so the
        # forward fill (which only spans other symbols' rows) cannot resurrect an old value
        ff += [pl.when(on).then(pl.col(c).fill_null(np.nan)).forward_fill().over("venue")
               .fill_nan(None).alias(f"{key[s]}__{c}") for c in lvl]
        ff.append(pl.when(on).then(pl.col("symbol")).forward_fill().over("venue")
                  .alias(f"{key[s]}__symbol"))
        ff.append(pl.when(on).then(pl.col("ts")).forward_fill().over("venue")
                  .alias(f"{key[s]}__ts"))
    wide = base.with_columns(ff)
    parts = []
    fee = _fee_expr(fees, "venue", default_fee_bps)
    for c, legs in plan:
        # which book each leg uses (prefer Y-X when both exist: buy on asks)
        leg_syms = [_pair_symbol(x, y) for x, y in legs]
        w = wide.filter(pl.col("__nsym").is_in(leg_syms))
        # each leg's amount becomes a column the next leg reads: nesting the walks as one
        # expression grows as (2·depth+1)^legs and took ~40 s to plan at depth 10
        for tag, with_fee in (("n", True), ("g", False)):
            amt = pl.lit(float(notional))
            for j, (x, y) in enumerate(legs):
                sym = _pair_symbol(x, y)
                pre = f"{key[sym]}__"
                step = walk_spend(amt, depth, pre) if sym == f"{y}-{x}" else _proceeds(amt, depth, pre)
                if with_fee:
                    step = step * (1 - fee)
                w = w.with_columns(step.alias(f"__{tag}{j}"))
                amt = pl.col(f"__{tag}{j}")
            if with_fee:
                net_end = amt
            else:
                gross_end = amt
        involved = [key[s] for s in leg_syms]
        fresh = pl.lit(True)
        for k in involved:
            fresh = fresh & ((pl.col("ts") - pl.col(f"{k}__ts")).dt.total_microseconds()
                             <= max_age_us)
        first, last = involved[0], involved[-1]
        first_px = (pl.col(f"{first}__ask_px_0") if leg_syms[0] == f"{legs[0][1]}-{legs[0][0]}"
                    else pl.col(f"{first}__bid_px_0"))
        last_px = (pl.col(f"{last}__ask_px_0") if leg_syms[-1] == f"{legs[-1][1]}-{legs[-1][0]}"
                   else pl.col(f"{last}__bid_px_0"))
        start_rate = rates.get(c[0], rates.get("USD", 1.0)) if c[0] == "USD" else None
        product = net_end / notional
        part = (w
                .select("ts", pl.lit("triangular").alias("kind"),
                        pl.lit(">".join((*c, c[0]))).alias("asset"),
                        pl.col("venue").alias("buy_venue"), pl.col("venue").alias("sell_venue"),
                        pl.col(f"{first}__symbol").alias("buy_symbol"),
                        pl.col(f"{last}__symbol").alias("sell_symbol"),
                        pl.lit(float(notional)).alias("size"),
                        first_px.alias("buy_px"), last_px.alias("sell_px"),
                        ((gross_end / notional - 1) * 1e4).alias("gross_edge_bps"),
                        ((product - 1) * 1e4).alias("net_edge_bps"),
                        (net_end - notional).alias("profit_quote"),
                        (pl.lit(float(notional) * start_rate) if start_rate is not None
                         else pl.lit(None, pl.Float64)).alias("volume_usd"),
                        fresh.fill_null(False).alias("fresh"), pl.col("venue"))
                .filter(pl.col("net_edge_bps").is_not_null()))
        parts.append(part)
    out = pl.concat(parts).with_columns(
        pl.col("ts").cast(TS),
        (pl.col("fresh") & (pl.col("net_edge_bps") > min_edge_bps)).alias("profitable"))
    out = out.sort("ts", maintain_order=True)
    if keep == "signals":
        return out.filter("profitable").select(list(SIGNAL_COLUMNS))
    if keep == "episodes":
        prev = pl.col("profitable").shift(1).over(_PAIR).fill_null(False)
        return out.filter(pl.col("profitable") | prev)
    return out


# --------------------------------------------------------------------------- episodes
_PAIR = ["kind", "asset", "buy_venue", "sell_venue"]


def episodes(timeline: pl.LazyFrame) -> pl.LazyFrame:
    """Group consecutive profitable moments of one pair into episodes.

    ``timeline``: :func:`cross_venue` or :func:`triangular` with
    ``keep="episodes"``. An episode starts at the first profitable moment and
    ends at the first later moment of the same pair that is not profitable
    (or the pair's last row). Columns: ``kind, asset, buy_venue, sell_venue,
    start, end, duration_ms, updates, peak_net_edge_bps, avg_net_edge_bps``
    (time-weighted over the episode), ``size`` (executable size used),
    ``profit_quote`` (net profit executing ``size`` at the start),
    ``peak_profit_quote``, ``opened_by`` (venue whose update opened it) and
    ``closed_by`` (venue whose update closed it: usually the laggard catching up).

    >>> t = lambda ms: dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(milliseconds=ms)
    >>> tl = pl.LazyFrame({"ts": [t(0), t(100), t(300), t(400)], "kind": "cross_venue",
    ...     "asset": "BTC", "buy_venue": "a", "sell_venue": "b", "size": 1.0,
    ...     "net_edge_bps": [-1.0, 4.0, 2.0, -1.0], "profit_quote": [-0.1, 0.4, 0.2, -0.1],
    ...     "venue": ["a", "a", "b", "b"], "profitable": [False, True, True, False]})
    >>> e = episodes(tl).collect()   # avg: 4 bps for 200 ms, 2 bps for 100 ms
    >>> e.select("duration_ms", "peak_net_edge_bps", "closed_by").rows(), round(e["avg_net_edge_bps"][0], 4)
    ([(300.0, 4.0, 'b')], 3.3333)
    """
    pair = _PAIR
    tl = (timeline.sort("ts", maintain_order=True)
          .with_columns(
              (pl.col("profitable") != pl.col("profitable").shift(1).fill_null(False))
              .cum_sum().over(pair).alias("__grp"),
              pl.col("ts").shift(-1).over(pair).alias("__next"),
              pl.col("venue").shift(-1).over(pair).alias("__next_venue"))
          .filter("profitable"))
    w = (pl.col("__next").fill_null(pl.col("ts")) - pl.col("ts")).dt.total_microseconds() / 1e3
    tl = tl.with_columns(w.alias("__w"))
    return (tl.group_by([*pair, "__grp"], maintain_order=True)
            .agg(pl.col("ts").first().alias("start"),
                 pl.col("__next").last().fill_null(pl.col("ts").last()).alias("end"),
                 pl.len().alias("updates"),
                 pl.col("net_edge_bps").max().alias("peak_net_edge_bps"),
                 pl.when(pl.col("__w").sum() > 0)
                 .then((pl.col("net_edge_bps") * pl.col("__w")).sum() / pl.col("__w").sum())
                 .otherwise(pl.col("net_edge_bps").mean()).alias("avg_net_edge_bps"),
                 pl.col("size").first().alias("size"),
                 pl.col("profit_quote").first().alias("profit_quote"),
                 pl.col("profit_quote").max().alias("peak_profit_quote"),
                 pl.col("venue").first().alias("opened_by"),
                 pl.col("__next_venue").last().alias("closed_by"))
            .with_columns(((pl.col("end") - pl.col("start")).dt.total_microseconds() / 1e3)
                          .alias("duration_ms"))
            .select(*pair, "start", "end", "duration_ms", "updates", "peak_net_edge_bps",
                    "avg_net_edge_bps", "size", "profit_quote", "peak_profit_quote",
                    "opened_by", "closed_by")
            .sort("start", maintain_order=True))


def _edge_after(timeline: pl.LazyFrame, eps: pl.LazyFrame, latency_ms: float) -> pl.LazyFrame:
    """Net edge of each episode's pair as of ``start + latency`` (as-of the timeline)."""
    probe = eps.select(*_PAIR, "start", "end",
                       (pl.col("start") + pl.duration(microseconds=int(latency_ms * 1000)))
                       .alias("ts")).sort("ts")
    tl = (timeline.select(*_PAIR, "ts", "net_edge_bps", "fresh").sort("ts")
          .rename({"net_edge_bps": "__edge", "fresh": "__fresh"}))
    return probe.join_asof(tl, on="ts", by=_PAIR, strategy="backward", check_sortedness=False)


def summary(
    timeline: pl.LazyFrame,
    *,
    latencies_ms: Sequence[float] = (5.0, 50.0, 200.0),
    quantiles: Sequence[float] = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99),
) -> dict[str, pl.LazyFrame]:
    """The researcher's questions, from an ``keep="episodes"`` timeline.

    Returns lazy frames:

    * ``per_hour``: episodes per hour per pair (``episodes / hours`` of data);
    * ``edge``: quantiles of the episodes' peak and average net edge (bps);
    * ``duration``: quantiles of episode duration (ms);
    * ``lagging``: per venue, how many episodes its update closed (the venue
      that lags closes the windows the leader opened) and opened;
    * ``latency``: per latency, the share of episodes still profitable and the
      mean net edge (bps, stale counts as 0) when an order arrives that late.

    >>> t = lambda ms: dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(milliseconds=ms)
    >>> tl = pl.LazyFrame({"ts": [t(0), t(100), t(300), t(400)], "kind": "cross_venue",
    ...     "asset": "BTC", "buy_venue": "a", "sell_venue": "b", "size": 1.0,
    ...     "net_edge_bps": [-1.0, 4.0, 2.0, -1.0], "profit_quote": 0.0, "fresh": True,
    ...     "venue": ["a", "a", "b", "b"], "profitable": [False, True, True, False]})
    >>> s = summary(tl, latencies_ms=(150.0, 5000.0))
    >>> s["latency"].collect().rows()
    [(150.0, 1, 1.0, 4.0), (5000.0, 1, 0.0, 0.0)]
    """
    eps = episodes(timeline)
    span = timeline.select(((pl.col("ts").max() - pl.col("ts").min()).dt.total_microseconds()
                            / 3.6e9).alias("hours"))
    per_hour = (eps.group_by(["kind", "asset", "buy_venue", "sell_venue"]).agg(pl.len().alias("episodes"))
                .join(span, how="cross")
                .with_columns((pl.col("episodes") / pl.col("hours")).alias("per_hour"))
                .sort("per_hour", descending=True))
    q = list(quantiles)
    edge = eps.select(*[pl.col("peak_net_edge_bps").quantile(x).alias(f"peak_q{x}") for x in q],
                      *[pl.col("avg_net_edge_bps").quantile(x).alias(f"avg_q{x}") for x in q])
    duration = eps.select(pl.len().alias("episodes"),
                          *[pl.col("duration_ms").quantile(x).alias(f"q{x}") for x in q],
                          pl.col("duration_ms").mean().alias("mean"))
    closed = eps.group_by(pl.col("closed_by").alias("venue")).agg(pl.len().alias("closed"))
    opened = eps.group_by(pl.col("opened_by").alias("venue")).agg(pl.len().alias("opened"))
    lagging = (closed.join(opened, on="venue", how="full", coalesce=True)
               .drop_nulls("venue").fill_null(0)
               .with_columns((pl.col("closed") / (pl.col("closed") + pl.col("opened")))
                             .alias("lag_share"))
               .sort("closed", descending=True))
    lat_parts = []
    for lat in latencies_ms:
        a = _edge_after(timeline, eps, lat)
        alive = pl.col("__fresh").fill_null(False) & (pl.col("__edge") > 0)
        lat_parts.append(a.select(
            pl.lit(float(lat)).alias("latency_ms"), pl.len().alias("episodes"),
            alive.cast(pl.Float64).mean().alias("still_profitable"),
            pl.when(alive).then(pl.col("__edge")).otherwise(0.0).mean().alias("mean_edge_bps")))
    latency = pl.concat(lat_parts) if lat_parts else pl.LazyFrame()
    return {"per_hour": per_hour, "edge": edge, "duration": duration, "lagging": lagging,
            "latency": latency}
