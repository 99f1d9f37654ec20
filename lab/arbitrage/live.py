"""The live arbitrage detector: the historical rules, applied row by row on the bus.

:class:`Detector` consumes ``quotes`` rows (dicts with the canonical columns,
timestamps as int µs, as the live bus delivers them) in arrival order and
returns ``arbitrage_signals`` rows. It applies exactly the rules of
:func:`lab.arbitrage.cross_venue` / :func:`lab.arbitrage.triangular` with
``time_column="ts_local"``: the same inputs give the same rows, which is how
record-then-replay is checked. :func:`run_live` wires it to the bus, the lake
and the alert sinks (``lab arbitrage``).

Depth mode (``ArbConfig.depth = N > 0``): everything reads ``book_updates``
rows instead (:meth:`Detector.on_book_updates`; ``quotes`` are ignored), keeps
an L2 book per venue and symbol and walks its top ``N`` levels: for the size
(cross-venue) and for the notional through each leg (triangles). The rows are
those of :func:`lab.arbitrage.cross_venue` and :func:`lab.arbitrage.triangular`
(``both_directions=True``) on ``books_from_updates(updates, depth=N)``, when
rows arrive in receive order and a receive time is not split across frames. A
book is used from its first snapshot on: ``lab arbitrage`` subscribes with
``restate=True``, so each recorder sends it every synced book as a snapshot
when it joins (and rejoins), however late it starts.

>>> d = Detector(ArbConfig(fees_bps={"a": 0.0, "b": 0.0}, sizes={"BTC": 1.0}, triangles=[]))
>>> d.on_quote({"ts_local": 0, "venue": "a", "symbol": "BTC-USDT", "bid_px": 99.0,
...             "bid_qty": 5.0, "ask_px": 100.0, "ask_qty": 5.0})
[]
>>> [(s["buy_venue"], s["sell_venue"], s["net_edge_bps"]) for s in d.on_quote(
...     {"ts_local": 10_000, "venue": "b", "symbol": "BTC-USD", "bid_px": 101.0,
...      "bid_qty": 5.0, "ask_px": 102.0, "ask_qty": 5.0})]
[('a', 'b', 100.0)]
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable

import numpy as np
import polars as pl

from lab.alerts import Alert, Sink, emit
from lab.arbitrage.config import ArbConfig
from lab.arbitrage.historical import SIGNAL_COLUMNS, _pair_symbol
from lab.l2 import THIN, Book, spend, walk
from lab.times import EPOCH, epoch_us

__all__ = ["Detector", "run_live", "signals_frame", "replay_rows", "bus_tables"]

log = logging.getLogger("lab.arbitrage")
NAN = float("nan")



_us = epoch_us


def _walk_qty(px: float, qty: float, size: float) -> float:
    """VWAP of ``size`` on a one-level book (NaN when too thin): :func:`lab.l2.walk` on one
    level, without building lists for it (quote mode's hot path)."""
    if px is None or qty is None or not (qty >= size * THIN) or size <= 0:
        return NAN
    return float(px)


def _seq(r: dict) -> int:
    s = r["seq"]
    return -1 if s is None else s


def _book_order(r: dict) -> tuple:
    return r["venue"], r["symbol"], _seq(r)


class _L2(Book):
    """One venue/symbol's L2 book (:class:`lab.l2.Book`, kept as :func:`lab.book.rebuild`
    keeps it) and the detector's state for it: ``synced`` (a snapshot seen) and ``last_top``
    (the top levels last evaluated, :meth:`Book.top_levels`)."""

    __slots__ = ("synced", "last_top")

    def __init__(self) -> None:
        super().__init__()
        self.synced = False
        self.last_top: tuple | None = None


class _Tri:
    """One currency cycle: its legs, the book each trades and whether it spends on the asks."""

    __slots__ = ("cycle", "legs", "syms", "label", "spend")

    def __init__(self, cycle: tuple[str, ...]) -> None:
        self.cycle = cycle
        self.legs = [(cycle[i], cycle[(i + 1) % len(cycle)]) for i in range(len(cycle))]
        self.syms = [_pair_symbol(x, y) for x, y in self.legs]
        self.label = ">".join((*cycle, cycle[0]))
        # leg x -> y on the book y-x spends x on its asks; on x-y it sells x into the bids
        self.spend = [s == f"{y}-{x}" for (x, y), s in zip(self.legs, self.syms)]


class Detector:
    """Cross-venue and triangular detection on a stream of quote (or book update) rows.

    State per asset and venue: the last quote's (depth mode: book's) receive
    time, the USD price of buying/selling the configured size (NaN if the
    visible levels are too thin) and its symbol. Thread-unsafe; feed it from
    one task.

    Depth mode (``cfg.depth > 0``), on ``book_updates`` only: the VWAP of 2
    BTC over asks 100 × 1, 101 × 1 is 100.5.

    >>> d = Detector(ArbConfig(fees_bps={"a": 0.0, "b": 0.0}, sizes={"BTC": 2.0}, depth=5,
    ...                        triangles=[]))
    >>> u = lambda ms, v, side, px, qty: {"ts_local": ms * 1000, "venue": v, "symbol": "BTC-USD",
    ...     "side": side, "price": px, "qty": qty, "is_snapshot": True, "seq": 1}
    >>> d.on_book_updates([u(0, "a", "ask", 100.0, 1.0), u(0, "a", "ask", 101.0, 1.0),
    ...                    u(0, "a", "bid", 99.0, 1.0)])
    []
    >>> [(s["buy_px"], s["sell_px"]) for s in d.on_book_updates([u(1, "b", "bid", 102.5, 5.0)])]
    [(100.5, 102.5)]
    """

    def __init__(self, cfg: ArbConfig, *, venues: Iterable[str] | None = None) -> None:
        self.cfg = cfg
        self.venues = set(venues) if venues is not None else None
        self.max_age_us = int(cfg.max_age_ms * 1000)
        self.rates = dict(cfg.quote_rates)
        self.fee: dict[str, float] = {}  # venue -> taker fee as a fraction, filled on first use
        # asset -> venue -> (ts, buy, sell, symbol, size)
        self.last: dict[str, dict[str, tuple[int, float, float, str, float]]] = {}
        self.prev: dict[tuple[str, str, str, str], bool] = {}
        self.rows_in = 0
        self.signals_out = 0
        self.bad_frames = 0  # frames run_live skipped because they broke the detector
        self.opened: list[dict] = []  # signals that opened an episode (for alerts)
        tris = []
        for cycle in cfg.triangles:
            c = tuple("USD" if x in self.rates else x for x in cycle)
            tris.append(_Tri(c))
            tris.append(_Tri((c[0], *reversed(c[1:]))))
        self.tris = tris
        self.tri_syms = {s for t in tris for s in t.syms}
        # venue -> normalised symbol -> (ts, bid, bid_qty, ask, ask_qty, symbol)
        self.books: dict[str, dict[str, tuple]] = {}
        # depth mode: (venue, symbol) -> L2 book; the rows of the current receive time
        self.depth = int(cfg.depth)
        self.l2: dict[tuple[str, str], _L2] = {}
        self._pend: list[dict] = []
        self._pend_ts = 0
        # depth mode: venue -> normalised symbol -> (ts, top levels, symbol) for the triangles
        self.tbooks: dict[str, dict[str, tuple]] = {}
        # depth mode: symbol -> (USD-like quote, normalised symbol if a triangle trades it)
        self._syms: dict[str, tuple[bool, str | None]] = {}

    def _norm(self, sym: str) -> tuple[bool, str | None]:
        """Whether ``sym``'s quote is USD-like, and its normalised name if a triangle trades it."""
        v = self._syms.get(sym)
        if v is None:
            base, _, quote = sym.partition("-")
            nsym = (f"{'USD' if base in self.rates else base}-"
                    f"{'USD' if quote in self.rates else quote}")
            v = self._syms[sym] = (quote in self.rates, nsym if nsym in self.tri_syms else None)
        return v

    def _fee(self, venue: str) -> float:
        f = self.fee.get(venue)
        if f is None:
            f = self.fee[venue] = self.cfg.fee_bps(venue) / 1e4
        return f

    # ------------------------------------------------------------------ rows
    def on_quote(self, r: dict) -> list[dict]:
        """Apply one ``quotes`` row; return the signal rows it produced.

        In depth mode (``cfg.depth > 0``) quotes are ignored: every book comes
        from :meth:`on_book_update`.
        """
        self.rows_in += 1
        venue = r["venue"]
        if self.depth or (self.venues is not None and venue not in self.venues):
            return []
        sym = r["symbol"]
        base, _, quote = sym.partition("-")
        ts = _us(r["ts_local"])
        out: list[dict] = []
        if quote in self.rates:
            size = self.cfg.size_of(base)
            rate = self.rates[quote]
            out += self._cross(ts, venue, sym, base, size,
                               _walk_qty(r["ask_px"], r["ask_qty"], size) * rate,
                               _walk_qty(r["bid_px"], r["bid_qty"], size) * rate)
        if self.tris:
            out += self._triangular(ts, venue, sym, base, quote, r)
        self.signals_out += len(out)
        return out

    def on_book_update(self, r: dict) -> list[dict]:
        """Take one ``book_updates`` row (depth mode); return the signals it released.

        Rows are held until a row with another receive time arrives (or
        :meth:`flush`): the historical rebuild orders the books of one
        ``ts_local`` by venue and symbol, and a message (rows sharing book,
        ``ts_local``, ``seq`` and ``is_snapshot``) is one book state. Feed a
        whole bus frame with :meth:`on_book_updates`, which flushes at its end.
        """
        self.rows_in += 1
        venue = r["venue"]
        if self.venues is not None and venue not in self.venues:
            return []
        usd, nsym = self._norm(r["symbol"])
        if not usd and nsym is None:
            return []
        ts = _us(r["ts_local"])
        out = self.flush() if self._pend and ts != self._pend_ts else []
        self._pend.append(r)
        self._pend_ts = ts
        return out

    def on_book_updates(self, rows: Iterable[dict]) -> list[dict]:
        """Take a frame of ``book_updates`` rows; return every signal up to its end."""
        out: list[dict] = []
        for r in rows:
            sig = self.on_book_update(r)
            if sig:
                out += sig
        out += self.flush()
        return out

    def flush(self) -> list[dict]:
        """Apply the held book rows (one receive time) and evaluate each changed book.

        Mirrors :func:`lab.book.rebuild` (``only_changes=True``, as
        :func:`lab.arbitrage.books_from_updates` calls it): books in (venue,
        symbol) order, each book's messages in ``seq`` order; a snapshot
        message clears the book first; nothing before a book's first snapshot;
        a book state is evaluated only when its top ``depth`` levels changed.
        Triangle rows come after the cross-venue rows, cycle by cycle (the
        order of :func:`lab.arbitrage.triangular` within one time).
        """
        rows = self._pend
        if not rows:
            return []
        self._pend = []
        ts = self._pend_ts
        if len(rows) > 1:
            rows.sort(key=_book_order)
        out: list[dict] = []
        tri_out: list[list[dict]] = [[] for _ in self.tris]
        depth = self.depth
        i, n = 0, len(rows)
        while i < n:
            r = rows[i]
            venue, sym, seq, snap = r["venue"], r["symbol"], _seq(r), bool(r["is_snapshot"])
            j = i + 1
            while j < n:
                x = rows[j]
                if (x["venue"] != venue or x["symbol"] != sym or _seq(x) != seq
                        or bool(x["is_snapshot"]) != snap):
                    break
                j += 1
            book = self.l2.get((venue, sym))
            if book is None:
                book = self.l2[(venue, sym)] = _L2()
            if snap:
                book.clear()
                book.synced = True
            if book.synced:  # diffs before the first snapshot build an unknown book
                bset = book.set
                for k in range(i, j):
                    x = rows[k]
                    px, qty = x["price"], x["qty"]
                    if px is not None and px == px:  # a level without a price is not a level
                        bset(x["side"], px, 0.0 if qty is None else qty)
                top = book.top_levels(depth)
                if top != book.last_top:
                    book.last_top = top
                    usd, nsym = self._norm(sym)
                    if usd:
                        base, _, quote = sym.partition("-")
                        size = self.cfg.size_of(base)
                        rate = self.rates[quote]
                        out += self._cross(ts, venue, sym, base, size,
                                           walk(top[2], top[3], size) * rate,
                                           walk(top[0], top[1], size) * rate)
                    if nsym is not None:
                        self._triangular_depth(ts, venue, sym, nsym, top, tri_out)
            i = j
        for t in tri_out:
            out += t
        self.signals_out += len(out)
        return out

    def _cross(self, ts: int, venue: str, sym: str, base: str, size: float, buy: float,
               sell: float) -> list[dict]:
        """Compare ``venue``'s new USD prices for ``size`` with every other venue's last."""
        per = self.last.setdefault(base, {})
        per[venue] = (ts, buy, sell, sym, size)
        out = []
        for w in sorted(per):
            if w == venue:
                continue
            tw, bw, sw, symw, _ = per[w]
            fresh = ts - tw <= self.max_age_us
            for d in (0, 1):
                if d == 0:
                    bv, sv, bp, sp, bsym, ssym = venue, w, buy, sw, sym, symw
                else:
                    bv, sv, bp, sp, bsym, ssym = w, venue, bw, sell, symw, sym
                key = ("cross_venue", base, bv, sv)
                if math.isnan(bp) or math.isnan(sp):
                    self.prev[key] = False
                    continue
                fb, fs = self._fee(bv), self._fee(sv)
                cost = bp * (1.0 + fb)
                proceeds = sp * (1.0 - fs)
                net = (proceeds - cost) / cost * 1e4
                prof = fresh and net > self.cfg.min_edge_bps
                was = self.prev.get(key, False)
                self.prev[key] = prof
                if not prof:
                    continue
                row = {"ts": ts, "kind": "cross_venue", "asset": base, "buy_venue": bv,
                       "sell_venue": sv, "buy_symbol": bsym, "sell_symbol": ssym, "size": size,
                       "buy_px": bp, "sell_px": sp, "gross_edge_bps": (sp - bp) / bp * 1e4,
                       "net_edge_bps": net, "profit_quote": size * (proceeds - cost),
                       "volume_usd": size * bp}
                out.append(row)
                if not was:
                    self.opened.append(row)
        return out

    def _triangular_depth(self, ts: int, venue: str, sym: str, nsym: str, top: tuple,
                          out: list[list[dict]]) -> None:
        """Depth mode: walk every cycle through ``venue``'s book ``nsym`` (new top levels
        ``top``); append each signal to ``out[cycle index]``.

        As :func:`lab.arbitrage.triangular` on wide books: each leg spends on the
        asks (``walk_spend``) or sells into the bids, then pays the venue's fee;
        a cycle some leg is too thin for gives no row (and leaves the episode
        as it was); ``buy_px``/``sell_px`` are the first/last legs' best prices.
        """
        books = self.tbooks.setdefault(venue, {})
        books[nsym] = (ts, top, sym)
        n0 = float(self.cfg.triangle_notional)
        keep = 1.0 - self._fee(venue)
        for ti, tri in enumerate(self.tris):
            if nsym not in tri.syms:
                continue
            legs = [books[s] for s in tri.syms if s in books]
            if len(legs) < len(tri.syms):  # some leg's book not seen yet
                continue
            net_amt, gross_amt = n0, n0
            for spends, b in zip(tri.spend, legs):
                bk, bq, ak, aq = b[1]
                if spends:
                    net_amt = spend(ak, aq, net_amt)
                    gross_amt = spend(ak, aq, gross_amt)
                else:  # proceeds of selling: as the historical walk_sell(size) * size
                    net_amt = walk(bk, bq, net_amt) * net_amt
                    gross_amt = walk(bk, bq, gross_amt) * gross_amt
                net_amt *= keep
            if net_amt != net_amt:
                continue
            key = ("triangular", tri.label, venue, venue)
            net = (net_amt / n0 - 1) * 1e4
            fresh = all(ts - b[0] <= self.max_age_us for b in legs)
            prof = fresh and net > self.cfg.min_edge_bps
            was = self.prev.get(key, False)
            self.prev[key] = prof
            if not prof:
                continue
            first, last = legs[0], legs[-1]
            ft, lt = first[1], last[1]
            if tri.spend[0]:
                buy_px = ft[2][0] if ft[2] else None
            else:
                buy_px = ft[0][0] if ft[0] else None
            if tri.spend[-1]:
                sell_px = lt[2][0] if lt[2] else None
            else:
                sell_px = lt[0][0] if lt[0] else None
            row = {"ts": ts, "kind": "triangular", "asset": tri.label, "buy_venue": venue,
                   "sell_venue": venue, "buy_symbol": first[2], "sell_symbol": last[2],
                   "size": n0, "buy_px": buy_px, "sell_px": sell_px,
                   "gross_edge_bps": (None if gross_amt != gross_amt
                                      else (gross_amt / n0 - 1) * 1e4),
                   "net_edge_bps": net, "profit_quote": net_amt - n0,
                   "volume_usd": n0 * self.rates.get("USD", 1.0) if tri.cycle[0] == "USD" else None}
            out[ti].append(row)
            if not was:
                self.opened.append(row)

    def _triangular(self, ts: int, venue: str, sym: str, base: str, quote: str,
                    r: dict) -> list[dict]:
        nb_ = "USD" if base in self.rates else base
        nq = "USD" if quote in self.rates else quote
        nsym = f"{nb_}-{nq}"
        if nsym not in self.tri_syms:
            return []
        books = self.books.setdefault(venue, {})
        books[nsym] = (ts, r["bid_px"], r["bid_qty"], r["ask_px"], r["ask_qty"], sym)
        out = []
        n0 = float(self.cfg.triangle_notional)
        fee = self._fee(venue)
        for tri in self.tris:
            if nsym not in tri.syms or any(s not in books for s in tri.syms):
                continue
            fresh = all(ts - books[s][0] <= self.max_age_us for s in tri.syms)
            net_amt, gross_amt = n0, n0
            for (x, y), s in zip(tri.legs, tri.syms):
                _, bid, bq, ask, aq, _ = books[s]
                if s == f"{y}-{x}":  # spend x on the asks of y-x
                    ok = ask is not None and ask > 0 and aq is not None
                    net_amt = net_amt / ask if ok and ask * aq >= net_amt * (1 - 1e-12) else NAN
                    gross_amt = gross_amt / ask if ok and ask * aq >= gross_amt * (1 - 1e-12) else NAN
                else:  # sell x into the bids of x-y
                    ok = bid is not None and bq is not None
                    net_amt = net_amt * bid if ok and bq >= net_amt * (1 - 1e-12) else NAN
                    gross_amt = gross_amt * bid if ok and bq >= gross_amt * (1 - 1e-12) else NAN
                net_amt *= 1.0 - fee
            key = ("triangular", tri.label, venue, venue)
            if math.isnan(net_amt):
                continue
            net = (net_amt / n0 - 1) * 1e4
            prof = fresh and net > self.cfg.min_edge_bps
            was = self.prev.get(key, False)
            self.prev[key] = prof
            if not prof:
                continue
            first, last = books[tri.syms[0]], books[tri.syms[-1]]
            (x0, y0), (xl, yl) = tri.legs[0], tri.legs[-1]
            row = {"ts": ts, "kind": "triangular", "asset": tri.label, "buy_venue": venue,
                   "sell_venue": venue, "buy_symbol": first[5], "sell_symbol": last[5],
                   "size": n0,
                   "buy_px": first[3] if tri.syms[0] == f"{y0}-{x0}" else first[1],
                   "sell_px": last[3] if tri.syms[-1] == f"{yl}-{xl}" else last[1],
                   "gross_edge_bps": (gross_amt / n0 - 1) * 1e4, "net_edge_bps": net,
                   "profit_quote": net_amt - n0,
                   "volume_usd": n0 * self.rates.get("USD", 1.0) if tri.cycle[0] == "USD" else None}
            out.append(row)
            if not was:
                self.opened.append(row)
        return out


def signals_frame(rows: list[dict]) -> pl.DataFrame:
    """Signal dicts (``ts`` in µs) → a frame in the ``arbitrage_signals`` layout.

    >>> signals_frame([]).columns[:3]
    ['ts', 'kind', 'asset']
    """
    if not rows:
        return pl.DataFrame(schema=SIGNAL_COLUMNS)
    df = pl.DataFrame(rows, schema={**SIGNAL_COLUMNS, "ts": pl.Int64})
    return df.with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))


def replay_rows(lf: pl.LazyFrame, time_column: str = "ts_local",
                batch: int = 50_000) -> Iterable[list[dict]]:
    """Rows of ``lf`` (``quotes`` or ``book_updates``) in receive order, as the bus
    delivers them (µs ints), in batches of about ``batch`` rows.

    A batch never splits the rows of one ``time_column`` value, so a
    :class:`Detector` flushing at each batch end sees whole receive times.

    >>> t = [dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=m)
    ...      for m in (0, 1, 1, 2)]
    >>> lf = pl.LazyFrame({"ts_exchange": t, "ts_local": t, "qty": [1.0, 2.0, 3.0, 4.0]})
    >>> [[r["qty"] for r in b] for b in replay_rows(lf, batch=2)]
    [[1.0, 2.0, 3.0], [4.0]]
    """
    df = (lf.with_columns(pl.col(c).dt.epoch("us") for c in ("ts_exchange", "ts_local"))
          .sort(time_column, maintain_order=True).collect())
    ts = df[time_column].to_numpy()
    i = 0
    while i < df.height:
        j = min(i + batch, df.height)
        if j < df.height:
            j = int(np.searchsorted(ts, ts[j - 1], side="right"))
        yield df.slice(i, j - i).to_dicts()
        i = j


def bus_tables(cfg: ArbConfig) -> list[str]:
    """The bus tables a detector with ``cfg`` reads.

    >>> bus_tables(ArbConfig()), bus_tables(ArbConfig(depth=10))
    (['quotes'], ['book_updates'])
    """
    return ["book_updates"] if cfg.depth else ["quotes"]


async def run_live(
    cfg: ArbConfig,
    source: AsyncIterator[tuple[str, list[dict]]],
    *,
    sinks: list[Sink],
    write: Callable[[pl.DataFrame], None] | None = None,
    duration: float | None = None,
    on_signal: Callable[[dict, float], None] | None = None,
    stats_every: float = 0.0,
    stop: asyncio.Event | None = None,
) -> Detector:
    """Run a :class:`Detector` on ``source`` (``(table, rows)`` frames, e.g. the bus).

    Reads the tables of :func:`bus_tables`: ``quotes`` (``cfg.depth == 0``),
    or ``book_updates`` walked ``cfg.depth`` levels deep; other tables are
    ignored. Signals are buffered and handed to ``write`` (a lake append, run
    in a thread) every ``cfg.flush_every_s``; each opened episode whose edge
    reaches ``cfg.alert_min_edge_bps`` raises one alert. ``on_signal(row,
    t_detect)`` sees every signal as it is produced (latency benches).

    Never dies of data: a frame whose rows break the detector is skipped,
    counted in ``det.bad_frames`` and logged (at most every 10 s). Returns
    when ``source`` ends, after ``duration`` seconds or when ``stop`` is set,
    always after writing the pending signals.
    """
    det = Detector(cfg)
    last_bad = 0.0
    pending: list[dict] = []
    last_flush = time.monotonic()
    started = time.monotonic()
    last_stats = started
    flush_tasks: set[asyncio.Task] = set()

    def flush() -> None:
        nonlocal pending
        if not pending or write is None:
            pending = []
            return
        df = signals_frame(pending)
        pending = []
        t = asyncio.create_task(asyncio.to_thread(write, df))
        flush_tasks.add(t)
        t.add_done_callback(flush_tasks.discard)

    def found(sig: list[dict]) -> None:
        now = time.time()
        pending.extend(sig)
        if on_signal is not None:
            for s in sig:
                on_signal(s, now)

    def apply(table: str, rows: list[dict]) -> bool:
        if table == "quotes" and not det.depth:
            for r in rows:
                sig = det.on_quote(r)
                if sig:
                    found(sig)
        elif table == "book_updates" and det.depth:
            sig = det.on_book_updates(rows)
            if sig:
                found(sig)
        else:
            return False
        return True

    async def consume() -> None:
        nonlocal last_flush, last_stats, last_bad
        async for table, rows in source:
            try:
                if not apply(table, rows):
                    continue
            except Exception as e:  # noqa: BLE001 - one bad frame must not stop the detector
                det.bad_frames += 1
                det._pend = []
                if time.monotonic() - last_bad >= 10.0:
                    last_bad = time.monotonic()
                    log.warning("skipped a %s frame the detector could not use (%s: %s); %d so far",
                                table, type(e).__name__, str(e)[:200], det.bad_frames)
                continue
            if det.opened:
                for s in det.opened:
                    if s["net_edge_bps"] >= cfg.alert_min_edge_bps:
                        emit(sinks, _alert(s))
                det.opened.clear()
            m = time.monotonic()
            if m - last_flush >= cfg.flush_every_s:
                flush()
                last_flush = m
            if stats_every and m - last_stats >= stats_every:
                last_stats = m
                log.info("rows %d, signals %d", det.rows_in, det.signals_out)
            if duration is not None and m - started >= duration:
                return

    consumer = asyncio.create_task(consume())
    waits: set[asyncio.Future] = {consumer}
    stopper = asyncio.create_task(stop.wait()) if stop is not None else None
    if stopper is not None:
        waits.add(stopper)
    try:
        await asyncio.wait(waits, timeout=duration, return_when=asyncio.FIRST_COMPLETED)
        if consumer.done():
            consumer.result()  # a failing source is an error, not a silent stop
    finally:
        for t in (consumer, stopper):
            if t is not None and not t.done():
                t.cancel()
                try:
                    await t
                except (asyncio.CancelledError, Exception):  # noqa: BLE001
                    pass
        flush()
        if flush_tasks:
            await asyncio.gather(*flush_tasks, return_exceptions=True)
    return det


def _alert(s: dict) -> Alert:
    ts = EPOCH + dt.timedelta(microseconds=s["ts"])
    if s["kind"] == "cross_venue":
        key = f"{s['asset']} {s['buy_venue']}>{s['sell_venue']}"
        msg = (f"buy {s['size']:g} {s['asset']} on {s['buy_venue']} at {s['buy_px']:.6g}, sell on "
               f"{s['sell_venue']} at {s['sell_px']:.6g}: net {s['net_edge_bps']:.2f} bps "
               f"({s['profit_quote']:.4g} USD)")
    else:
        key = f"{s['asset']} {s['buy_venue']}"
        msg = (f"cycle {s['asset']} on {s['buy_venue']}: net {s['net_edge_bps']:.2f} bps "
               f"({s['profit_quote']:.4g})")
    payload = {k: v for k, v in s.items() if k != "ts"}
    return Alert(ts=ts, source="arbitrage", kind="opportunity", key=key, message=msg,
                 payload=payload)
