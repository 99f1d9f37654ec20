"""What every venue adapter shares: columnar row batches, trade de-duplication,
the book bookkeeping (quotes after each change, sampled top-N snapshots) and
the adapter interface the connection loop drives.

Adapters are pure: they never open sockets or read clocks. The receive time
``ts_local`` (int microseconds since the epoch) is an argument, so replaying a
journal gives exactly the rows recorded live.
"""

from __future__ import annotations

import bisect
import datetime as dt
import heapq
import json
from array import array
from collections.abc import Iterable
from typing import ClassVar

import polars as pl

from lab.schema import table_spec
from recorders.book import Book

_NAN = float("nan")
_INF = float("inf")

__all__ = [
    "Rows", "TradeIds", "Adapter", "COLUMNS", "rfc3339_us", "ms_us", "split_symbol", "bad_number",
]

# Column order per table (timestamps are int microseconds here; the writer casts).
# Column order and dtypes come from the one home of columns, lab/schema.py; the adapters fill
# them positionally (times as µs integers until the frame is built). Optional columns (filled
# with nulls by the lake) are not the adapters' to fill.
_ROW_TABLES = ("trades", "book_updates", "quotes", "book_snapshots", "raw_messages", "feed_events")
COLUMNS: dict[str, tuple[str, ...]] = {
    t: tuple(c for c in table_spec(t).columns if c not in table_spec(t).optional) for t in _ROW_TABLES}
_TS_COLS = {"ts_exchange", "ts_local"}
_DTYPES: dict[str, pl.DataType] = {
    name: (pl.Int64() if name in _TS_COLS else dtype)
    for t in _ROW_TABLES for name, dtype in table_spec(t).columns.items() if dtype != pl.String()}


class Rows:
    """Rows for every table as columnar Python lists (cheap appends, one
    DataFrame per table at flush time).

    >>> r = Rows()
    >>> r.event(1_700_000_000_000_000, "binance", "BTC-USDT", "gap", "U=5 expected 4")
    >>> r.frame("feed_events").select("kind", "ts_local").row(0)
    ('gap', datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=zoneinfo.ZoneInfo(key='UTC')))
    """

    __slots__ = ("cols", "trades", "book_updates", "quotes", "book_snapshots", "raw_messages",
                 "feed_events")

    def __init__(self) -> None:
        self.cols: dict[str, tuple[list, ...]] = {t: tuple([] for _ in c) for t, c in COLUMNS.items()}
        for t, c in self.cols.items():
            setattr(self, t, c)

    def __len__(self) -> int:
        return sum(len(c[0]) for c in self.cols.values())

    def count(self, table: str) -> int:
        return len(self.cols[table][0])

    def counts(self) -> dict[str, int]:
        return {t: len(c[0]) for t, c in self.cols.items()}

    def event(self, ts_local: int, venue: str, symbol: str | None, kind: str, detail: str) -> None:
        c = self.feed_events
        c[0].append(ts_local); c[1].append(venue); c[2].append(symbol); c[3].append(kind)
        c[4].append(detail)

    def raw(self, ts_local: int, venue: str, conn_id: str, recv_seq: int, payload: str) -> None:
        c = self.raw_messages
        c[0].append(ts_local); c[1].append(venue); c[2].append(conn_id); c[3].append(recv_seq)
        c[4].append(payload)

    def extend(self, other: Rows) -> None:
        for t, cols in self.cols.items():
            for a, b in zip(cols, other.cols[t]):
                a.extend(b)

    def dicts(self, table: str, start: int = 0) -> list[dict]:
        """Rows ``start:`` of ``table`` as dicts (timestamps stay int microseconds)."""
        names = COLUMNS[table]
        cols = [c[start:] for c in self.cols[table]]
        return [dict(zip(names, vals)) for vals in zip(*cols)]

    def frame(self, table: str) -> pl.DataFrame:
        """``table``'s rows as a canonical-dtype DataFrame."""
        names = COLUMNS[table]
        series = []
        for name, values in zip(names, self.cols[table]):
            dtype = _DTYPES.get(name, pl.String())
            if values and isinstance(values[0], str) and values.count(values[0]) == len(values):
                s = pl.repeat(values[0], len(values), dtype=dtype, eager=True).alias(name)
            else:
                s = pl.Series(name, values, dtype=dtype)
            if name in _TS_COLS:
                s = s.cast(pl.Datetime("us", "UTC"))
            series.append(s)
        return pl.DataFrame(series)

    def frames(self) -> dict[str, pl.DataFrame]:
        return {t: self.frame(t) for t in COLUMNS if self.count(t)}


class TradeIds:
    """Recently seen trade ids per symbol (bounded), for de-duplication across
    overlapping connections and restarts.

    >>> ids = TradeIds(capacity=2)
    >>> ids.add("BTC-USDT", "1"), ids.add("BTC-USDT", "1"), ids.add("BTC-USDT", "2")
    (True, False, True)

    Each symbol holds its newest ``capacity`` ids (by arrival) in two ``array('q')``: one in
    arrival order, one sorted (looked up by bisection). 16 bytes an id where a ``set`` and a
    ``deque`` of the id texts took ~125: a recorder of 15 symbols at the simulator's ~80
    trades/s grew by ~35 MiB an hour before reaching its cap. A venue's decimal ids (Binance,
    OKX, Coinbase, Kraken) are held as their value; any other id text (a UUID, a leading zero)
    as a negative 62-bit hash of it, which only :meth:`add` looks at.

    Why :data:`CAPACITY` ids: what can arrive again is recent. A reconnect's or restart's
    replay and trades in flight are seconds old; the backfill asks only for ids after the
    newest held or inside a hole among the newest ``recorders.backfill.SCAN_IDS`` (5,000), and
    a venue page brings at most 1,000 (Binance, OKX, Coinbase, Kraken); the restart seeds this
    many from the lake (``recorders.runtime.Recorder.seed_trade_ids``). 8,192 covers those
    6,000 with room; it was 20,000, which at the simulator's ~5 trades/s a symbol took an hour
    to fill: a recorder's memory grew ~4.6 MiB an hour (its glibc heap, measured with
    ``mallinfo2``) before flattening. Now ~2.2 MiB for 15 symbols, reached in ~25 minutes.
    """

    CAPACITY: ClassVar[int] = 8_192

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = self.CAPACITY if capacity is None else capacity
        self._order: dict[str, array] = {}  # arrival order, oldest first
        self._sorted: dict[str, array] = {}
        self.added: dict[str, int] = {}  # ids remembered so far per symbol (the backfill scans what is new)

    @staticmethod
    def key(trade_id: str) -> int:
        """The value held for ``trade_id``: a canonical decimal id (no sign, no leading zero,
        at most 18 digits) as its value, any other text as a negative 62-bit hash.

        >>> TradeIds.key("12345"), TradeIds.key("0"), TradeIds.key("012") < 0, TradeIds.key("a-b") < 0
        (12345, 0, True, True)
        """
        if trade_id.isascii() and trade_id.isdigit() and len(trade_id) <= 18 and (
                trade_id[0] != "0" or len(trade_id) == 1):
            return int(trade_id)
        return -1 - (hash(trade_id) & 0x3FFF_FFFF_FFFF_FFFF)

    def _new(self, symbol: str) -> array:
        """Empty arrays for a symbol first seen; returns the sorted one."""
        self._order[symbol] = array("q")
        srt = self._sorted[symbol] = array("q")
        return srt

    def add(self, symbol: str, trade_id: str) -> bool:
        """Remember ``trade_id``; False if it was already seen."""
        x = self.key(trade_id)
        srt = self._sorted.get(symbol)
        if srt is None:
            srt = self._new(symbol)
        if srt and x <= srt[-1]:
            i = bisect.bisect_left(srt, x)
            if i < len(srt) and srt[i] == x:
                return False
            srt.insert(i, x)
        else:  # the usual case: a venue's ids grow
            srt.append(x)
        order = self._order[symbol]
        order.append(x)
        self.added[symbol] = self.added.get(symbol, 0) + 1
        if len(order) > self.capacity + max(64, self.capacity // 8):
            self._evict(symbol)
        return True

    def add_backfilled(self, symbol: str, trade_ids: list[str]) -> list[bool]:
        """Remember ids fetched to fill a hole; for each, False if it was already seen.

        They go to the *old* end of the arrival order, so they are the first forgotten: a hole
        can be 200,000 trades long (``recorders.backfill.MAX_REQUESTS_PER_HOLE`` pages) and must
        not push out the live ids received since, which a reconnect's replay may bring again.
        (The backfill does not ask a filled range twice: its own ids need no long memory.)"""
        srt = self._sorted.get(symbol)
        if srt is None:
            srt = self._new(symbol)
        out: list[bool] = []
        fresh: list[int] = []
        batch: set[int] = set()
        for t in trade_ids:
            x = self.key(t)
            i = bisect.bisect_left(srt, x)
            new = not (i < len(srt) and srt[i] == x) and x not in batch
            out.append(new)
            if new:
                batch.add(x)
                fresh.append(x)
        if fresh:  # one merge, not an insert per id (a hole can be 200,000 ids)
            self._sorted[symbol] = array("q", heapq.merge(srt, sorted(fresh)))
            order = self._order[symbol]
            order[0:0] = array("q", fresh)
            if len(order) > self.capacity + max(64, self.capacity // 8):
                self._evict(symbol)
        return out

    def _evict(self, symbol: str) -> None:
        """Forget the oldest ids beyond ``capacity`` (in batches: one pass over the arrays)."""
        order, srt = self._order[symbol], self._sorted[symbol]
        k = len(order) - self.capacity
        old = sorted(order[:k])
        del order[:k]
        if srt[:k].tolist() == old:  # growing ids: the oldest are the smallest
            del srt[:k]
        else:
            drop = set(old)
            self._sorted[symbol] = array("q", [v for v in srt if v not in drop])

    def __len__(self) -> int:
        return sum(len(o) for o in self._order.values())

    def recent_ids(self, symbol: str, n: int) -> list[int]:
        """The decimal ids among the ``n`` ids of ``symbol`` remembered last, in arrival order
        (the backfill looks for its holes there)."""
        order = self._order.get(symbol)
        if not order or n <= 0:
            return []
        return [v for v in order[-n:] if v >= 0]

    def recent(self, symbol: str, n: int) -> list[str]:
        """:meth:`recent_ids` as text."""
        return [str(v) for v in self.recent_ids(symbol, n)]

    def seed(self, symbol: str, trade_ids: Iterable[str]) -> None:
        for t in trade_ids:
            self.add(symbol, t)


_EPOCH_CACHE: dict[str, int] = {}


def rfc3339_us(s: str) -> int:
    """RFC 3339 UTC text (any fraction length) to int microseconds.

    >>> rfc3339_us("2023-02-09T20:32:50.714964855Z")
    1675974770714964
    >>> rfc3339_us("2023-02-09T20:32:50Z")
    1675974770000000
    """
    head = s[:19]
    base = _EPOCH_CACHE.get(head)
    if base is None:
        d = dt.datetime.fromisoformat(head).replace(tzinfo=dt.timezone.utc)
        base = int(d.timestamp()) * 1_000_000
        if len(_EPOCH_CACHE) > 100_000:
            _EPOCH_CACHE.clear()
        _EPOCH_CACHE[head] = base
    if len(s) > 20 and s[19] == ".":
        frac = s[20:].rstrip("Z")
        end = len(frac)
        for i, ch in enumerate(frac):
            if not ch.isdigit():
                end = i
                break
        frac = frac[:end]
        return base + int((frac + "000000")[:6])
    return base


def ms_us(ms: int | str) -> int:
    """Milliseconds (int or decimal text) to microseconds."""
    return int(ms) * 1000


def split_symbol(symbol: str) -> tuple[str, str]:
    """Canonical ``BASE-QUOTE`` into its parts, with a clear error otherwise.

    >>> split_symbol("btc-usdt")
    ('BTC', 'USDT')
    """
    parts = symbol.upper().replace("/", "-").split("-")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"symbol {symbol!r} is not BASE-QUOTE (e.g. BTC-USDT)")
    return parts[0], parts[1]


def bad_number(value: float, *, allow_zero: bool) -> bool:
    """True if ``value`` cannot be a price (``allow_zero=False``) or a size
    (``allow_zero=True``: 0 deletes a book level): NaN, infinite (an overflowing
    ``"1e309"`` parses to inf), negative, or zero where zero means nothing.

    >>> [bad_number(x, allow_zero=False) for x in (1.5, 0.0, -1.0, float("nan"), float("1e309"))]
    [False, True, True, True, True]
    >>> bad_number(0.0, allow_zero=True), bad_number(-0.5, allow_zero=True)
    (False, True)
    """
    if allow_zero:
        return not (0.0 <= value < _INF)
    return not (0.0 < value < _INF)


class Adapter:
    """One connection's worth of venue state: books, sequence checks, parsing.

    Subclasses implement :meth:`url`, :meth:`subscribe_messages` and
    :meth:`on_message` (and :meth:`on_snapshot` for venues that take REST
    snapshots). Requests for the connection loop go to :attr:`actions`:
    ``("snapshot", symbol)`` (fetch a REST snapshot), ``("send", text)``.
    """

    venue: ClassVar[str] = ""
    rest_snapshots: ClassVar[bool] = False
    keepalive_every: ClassVar[float] = 0.0  # seconds; 0 = the venue needs no client ping
    silence_timeout: ClassVar[float] = 30.0
    # a ``silence`` event when a connection was quiet this long before a message arrived
    # (venues with heartbeats never are; a stalled or silent venue is)
    quiet_after: ClassVar[float] = 2.0
    # a ``lag`` event when receive time minus exchange time rises this much above its
    # recent floor (the least delay of the last 3-6 s, or 0 if that is negative),
    # ``lag_end`` when it is back under half of that: a stalled venue or a slow link,
    # seen even on top of a steady offset between the venue's clock and ours
    lag_after: ClassVar[float] = 0.5
    lag_window: ClassVar[float] = 3.0
    # what the venue calls a symbol, as named in an "unsubscribed ..." rejection
    symbol_field: ClassVar[str] = "symbol"

    def __init__(
        self,
        symbols: Iterable[str],
        out: Rows | None = None,
        *,
        trade_ids: TradeIds | None = None,
        depth: int | None = None,
        snapshot_levels: int = 25,
        snapshot_every_us: int = 1_000_000,
    ) -> None:
        self.symbols = [s.upper() for s in symbols]
        if not self.symbols:
            raise ValueError(f"{self.venue}: no symbols given")
        for s in self.symbols:
            split_symbol(s)
        self.out = out if out is not None else Rows()
        self.trade_ids = trade_ids if trade_ids is not None else TradeIds()
        if depth is not None:
            self.depth = depth
        self.snapshot_levels = snapshot_levels
        self.snapshot_every_us = snapshot_every_us
        self.books: dict[str, Book] = {s: Book() for s in self.symbols}
        self.synced: dict[str, bool] = {s: False for s in self.symbols}
        self.actions: list[tuple[str, str]] = []
        self.book_enabled = True  # False while draining an old connection (trades only)
        self.stats: dict[str, int] = {"messages": 0, "gaps": 0, "resyncs": 0,
                                      "checksum_failures": 0, "rejected": 0, "duplicates": 0,
                                      "bad_values": 0, "crossed_books": 0,
                                      "duplicate_messages": 0}
        self.last_msg_us: dict[str, int] = {}
        self._last_top: dict[str, tuple] = {}
        self._next_sample: dict[str, int] = {}
        self._raw: bytes | str = ""  # the message being parsed (quoted in bad_value events)
        self._last_feed_us = 0
        self._quiet_us = int(self.quiet_after * 1e6)
        self._lag_us = int(self.lag_after * 1e6)
        self._lagging: tuple[int, int] | None = None  # (since µs, worst delay µs) of a lag episode
        self._lag_win = (0, 1 << 62, 1 << 62)  # (window start µs, least delay in it, in the one before)

    # -- interface -------------------------------------------------------
    def url(self, base_url: str) -> str:
        return base_url

    def subscribe_messages(self) -> list[str]:
        raise NotImplementedError

    def keepalive_message(self) -> str | None:
        return None

    def on_message(self, raw: bytes | str, ts_local: int) -> None:
        raise NotImplementedError

    def on_snapshot(self, symbol: str, body: bytes | str, ts_local: int) -> None:
        raise NotImplementedError(f"{self.venue} takes no REST snapshots")

    def snapshot_url(self, rest_base: str, symbol: str) -> str:
        raise NotImplementedError(f"{self.venue} takes no REST snapshots")

    def on_open(self, ts_local: int) -> None:
        """The connection is open: a venue that then says nothing for :attr:`quiet_after`
        is silent too (the first message reports it)."""
        self._last_feed_us = ts_local

    def on_close(self, ts_local: int) -> None:
        """The connection is closing: a silence it ends is a silence too (a planned
        rotation can retire a connection the venue had stopped talking on)."""
        last = self._last_feed_us
        if last and ts_local - last > self._quiet_us:
            self.event(ts_local, None, "silence",
                       f"no message for {(ts_local - last) / 1e6:.1f} s on this connection before it closed")

    def request_book(self, symbol: str) -> None:
        """Ask the venue for a fresh book of ``symbol`` (a resubscription or a REST
        snapshot), after :meth:`resync` forgot it."""
        raise NotImplementedError

    # -- helpers for subclasses -------------------------------------------
    def _sym(self, venue_sym: str) -> str:
        """Our symbol for the venue's (``_by_venue``); a ValueError (a rejected message) for
        one this connection did not subscribe."""
        sym = self._by_venue.get(venue_sym)  # type: ignore[attr-defined]
        if sym is None:
            raise ValueError(f"unsubscribed {self.symbol_field} {venue_sym!r}")
        return sym

    def send_json(self, *messages: object) -> None:
        """Ask the connection loop to send ``messages`` to the venue as JSON, in order."""
        for m in messages:
            self.actions.append(("send", json.dumps(m)))

    def accept_book_message(self, symbol: str, is_snapshot: bool) -> bool:
        """Whether to apply a book message of ``symbol``: a snapshot starts the book afresh
        (:meth:`start_book`); an update is skipped (False) while the book waits for its
        snapshot (after a resync, or before the first one)."""
        if is_snapshot:
            self.start_book(symbol)
            return True
        return self.synced[symbol]

    def lost_message(self, ts_local: int, symbol: str, gap: str, why: str) -> None:
        """A book message of ``symbol`` was lost (its sequence says so, ``gap``): a ``gap``
        event, the book resynced (``why``) and asked for again."""
        self.gap(ts_local, symbol, gap)
        self.resync(ts_local, symbol, why)
        self.request_book(symbol)

    def start_book(self, symbol: str) -> None:
        """A snapshot message starts ``symbol``'s book afresh: empty it, forget its last
        quote, and count it synced (the snapshot's levels follow)."""
        self.books[symbol].clear()
        self._last_top.pop(symbol, None)
        self.synced[symbol] = True

    def set_text_levels(self, ts_local: int, symbol: str,
                        sides: Iterable[tuple[str, Iterable[tuple[str, str]]]]) -> list[tuple[str, float, float]] | None:
        """For venues whose checksum is over the levels' text (Kraken, OKX): every (price
        text, size text) of one message, per side, checked by :meth:`levels_ok` (None if one
        is bad: resyncing, nothing applied), then set in ``symbol``'s book with its text.
        Returns the (side, price, size) changes, in order."""
        parsed = []
        for side, levels in sides:
            for pt, qt in levels:
                px, qty = float(pt), float(qt)
                if not self.levels_ok(ts_local, symbol, side, ((px, qty),)):
                    return None
                parsed.append((side, px, qty, pt, qt))
        book = self.books[symbol]
        changes = []
        for side, px, qty, pt, qt in parsed:
            book.set(side, px, qty, (pt, qt))
            changes.append((side, px, qty))
        return changes

    def feed(self, raw: bytes | str, ts_local: int) -> None:
        """:meth:`on_message` that quarantines anything unparseable as a
        ``rejected_message`` feed event instead of raising."""
        self._raw = raw
        last = self._last_feed_us
        if last and ts_local - last > self._quiet_us:
            self.event(ts_local, None, "silence",
                       f"no message for {(ts_local - last) / 1e6:.1f} s on this connection")
        self._last_feed_us = ts_local
        try:
            self.on_message(raw, ts_local)
        except Exception as e:  # noqa: BLE001 - any bad input is data, never a crash
            self.reject(raw, ts_local, e)

    def reject(self, raw: bytes | str, ts_local: int, err: BaseException | str,
               symbol: str | None = None) -> None:
        self.stats["rejected"] += 1
        text = raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else str(raw)
        self.out.event(ts_local, self.venue, symbol, "rejected_message",
                       f"{type(err).__name__ if isinstance(err, BaseException) else 'error'}: "
                       f"{err} | raw: {text[:20000]}")

    def event(self, ts_local: int, symbol: str | None, kind: str, detail: str) -> None:
        self.out.event(ts_local, self.venue, symbol, kind, detail)

    def gap(self, ts_local: int, symbol: str | None, detail: str) -> None:
        self.stats["gaps"] += 1
        self.event(ts_local, symbol, "gap", detail)

    def resync(self, ts_local: int, symbol: str, detail: str) -> None:
        """Forget ``symbol``'s book until a fresh snapshot arrives."""
        self.stats["resyncs"] += 1
        self.books[symbol].clear()
        self.synced[symbol] = False
        self._last_top.pop(symbol, None)
        self.event(ts_local, symbol, "resync", detail)

    # -- values from the wire ------------------------------------------------
    def bad_value(self, ts_local: int, symbol: str | None, field: str, value: object,
                  *, book: bool = False) -> None:
        """Record a value no venue can mean (``bad_value`` feed event naming the
        field and the value); for a book message, the book is lost: resync it."""
        self.stats["bad_values"] += 1
        raw = to_text(self._raw)
        self.event(ts_local, symbol, "bad_value",
                   f"{field}={value!r}" + (f" | raw: {raw[:2000]}" if raw else ""))
        if book and symbol is not None and self.synced.get(symbol):
            self.resync(ts_local, symbol, f"bad {field} in a book message")
            self.request_book(symbol)

    def levels_ok(self, ts_local: int, symbol: str, side: str,
                  levels: Iterable[tuple[float, float]]) -> bool:
        """True if every (price, size) of ``levels`` can be real; else a
        ``bad_value`` event, the book resynced, and False (apply nothing)."""
        for px, qty in levels:
            if not (0.0 < px < _INF):
                self.bad_value(ts_local, symbol, f"{side} price", px, book=True)
                return False
            if not (0.0 <= qty < _INF):
                self.bad_value(ts_local, symbol, f"{side} qty", qty, book=True)
                return False
        return True

    def commit_book(self, symbol: str, mark: int, ts_ex: int, ts_local: int) -> bool:
        """After one venue message changed ``symbol``'s book: a crossed book (best
        bid >= best ask) is a lost book: the message's ``book_updates`` rows (from
        row ``mark`` on) are taken back, a ``crossed_book`` event is written and the
        book resynced. Otherwise the quote/snapshot bookkeeping of
        :meth:`book_changed`. True if the book is good."""
        book = self.books[symbol]
        if book.bid_px and book.ask_px and book.bid_px[-1] >= book.ask_px[0]:
            for col in self.out.book_updates:
                del col[mark:]
            self.stats["crossed_books"] += 1
            bp, bq, ap, aq = book.top()
            self.event(ts_local, symbol, "crossed_book",
                       f"best bid {bp!r} >= best ask {ap!r} after a venue message")
            self.resync(ts_local, symbol, "crossed book")
            self.request_book(symbol)
            return False
        self.book_changed(symbol, ts_ex, ts_local)
        return True

    def checksum_failure(self, ts_local: int, symbol: str, want: object, got: int, detail: str) -> None:
        """``symbol``'s book disagrees with the venue's checksum, so it is wrong: a
        ``checksum_failure`` event, the book resynced (``detail``) and asked for again."""
        self.stats["checksum_failures"] += 1
        self.event(ts_local, symbol, "checksum_failure", f"expected {want}, computed {got}")
        self.resync(ts_local, symbol, detail)
        self.request_book(symbol)

    def commit_levels(self, symbol: str, changes: Iterable[tuple[str, float, float]], ts_ex: int, ts_local: int,
                      is_snapshot: bool, seq: int | None) -> bool:
        """The ``book_updates`` rows of one message already applied to the book (the
        (side, price, size) ``changes``), then :meth:`commit_book`."""
        mark = self.mark()
        for side, px, qty in changes:
            self.level(ts_ex, ts_local, symbol, side, px, qty, is_snapshot, seq)
        return self.commit_book(symbol, mark, ts_ex, ts_local)

    def mark(self) -> int:
        """Where this message's ``book_updates`` rows start (for :meth:`commit_book`)."""
        return len(self.out.book_updates[0])

    def delay_floor_us(self) -> int | None:
        """The least receive delay (``ts_local - ts_exchange``, µs; negative when the venue's clock
        runs ahead of ours) over the last few seconds, ``None`` before any sample: it maps a time
        of ours to the venue's (the backfill asks for a silence by exchange time)."""
        d = min(self._lag_win[1], self._lag_win[2])
        return None if d > 1 << 60 else d

    def lag(self, ts_ex: int, ts_local: int, symbol: str) -> None:
        """Track the receive delay (``ts_local - ts_exchange``) against its recent floor:
        one ``lag`` event when it passes the floor by :attr:`lag_after`, one ``lag_end``
        when it is back under half of that."""
        d = ts_local - ts_ex
        w0, cur, prev = self._lag_win
        if ts_local - w0 > self.lag_window * 1e6:
            w0, cur, prev = ts_local, d, cur
        elif d < cur:
            cur = d
        self._lag_win = (w0, cur, prev)
        floor = max(min(cur, prev), 0)
        if floor > 1 << 60:
            floor = 0
        ep = self._lagging
        if ep is None:
            if d > floor + self._lag_us:
                self._lagging = (ts_local, d)
                self.event(ts_local, symbol, "lag",
                           f"receive delay {d / 1e6:.3f} s, {(d - floor) / 1e6:.3f} s over its recent floor "
                           f"(threshold {self.lag_after:g} s)")
        elif d < floor + self._lag_us // 2:
            self._lagging = None
            self.event(ts_local, symbol, "lag_end",
                       f"receive delay back to {d / 1e6:.3f} s after {(ts_local - ep[0]) / 1e6:.1f} s "
                       f"(worst {max(ep[1], d) / 1e6:.3f} s)")
        elif d > ep[1]:
            self._lagging = (ep[0], d)

    def duplicate(self) -> None:
        """A message the venue sent twice: counted (the recorder reports the counts as
        ``duplicates`` events), not applied again."""
        self.stats["duplicate_messages"] += 1

    def trade(self, ts_ex: int, ts_local: int, symbol: str, trade_id: str, price: float,
              qty: float, side: str) -> None:
        if not (0.0 < price < _INF):
            self.bad_value(ts_local, symbol, "trade price", price)
            return
        if not (0.0 < qty < _INF):
            self.bad_value(ts_local, symbol, "trade qty", qty)
            return
        if not self.trade_ids.add(symbol, trade_id):
            self.stats["duplicates"] += 1
            return
        self.lag(ts_ex, ts_local, symbol)
        c = self.out.trades
        c[0].append(ts_ex); c[1].append(ts_local); c[2].append(self.venue); c[3].append(symbol)
        c[4].append(trade_id); c[5].append(price); c[6].append(qty); c[7].append(side)

    def level(self, ts_ex: int, ts_local: int, symbol: str, side: str, price: float, qty: float,
              is_snapshot: bool, seq: int | None) -> None:
        c = self.out.book_updates
        c[0].append(ts_ex); c[1].append(ts_local); c[2].append(self.venue); c[3].append(symbol)
        c[4].append(side); c[5].append(price); c[6].append(qty); c[7].append(is_snapshot)
        c[8].append(seq)

    def restate_books(self, ts_local: int) -> None:
        """Write every synced book again as snapshot rows (after rows were lost,
        so the lake's book restarts from a correct state)."""
        for sym, side, p, q in self._synced_levels():
            self.level(ts_local, ts_local, sym, side, p, q, True, None)

    def book_rows(self, ts_local: int) -> list[dict]:
        """Every synced book as one ``is_snapshot`` message of ``book_updates`` dicts
        (for a late subscriber of the live bus; nothing goes to the lake)."""
        names = COLUMNS["book_updates"]
        return [dict(zip(names, (ts_local, ts_local, self.venue, sym, side, p, q, True, None)))
                for sym, side, p, q in self._synced_levels()]

    def _synced_levels(self) -> Iterable[tuple[str, str, float, float]]:
        """(symbol, side, price, qty) of every level of every synced book this
        connection owns (none while it only drains trades)."""
        if not self.book_enabled:
            return
        for sym, book in self.books.items():
            if self.synced.get(sym):
                for side in ("bid", "ask"):
                    for p, q in book.levels(side, 10**9):
                        yield sym, side, p, q

    def book_changed(self, symbol: str, ts_ex: int, ts_local: int) -> None:
        """After a book message: a quote row if the top changed, a top-N
        snapshot if the sampling interval has passed (sampled on receive time,
        so replaying the journal reproduces it)."""
        self.lag(ts_ex, ts_local, symbol)
        book = self.books[symbol]
        bpx, apx = book.bid_px, book.ask_px
        if bpx:
            bp = bpx[-1]; bq = book.bid_qty[bp]
        else:
            bp = bq = _NAN
        if apx:
            ap = apx[0]; aq = book.ask_qty[ap]
        else:
            ap = aq = _NAN
        top = (bp, bq, ap, aq)
        if top != self._last_top.get(symbol) and (bpx or apx):
            self._last_top[symbol] = top
            c = self.out.quotes
            c[0].append(ts_ex); c[1].append(ts_local); c[2].append(self.venue); c[3].append(symbol)
            c[4].append(top[0]); c[5].append(top[1]); c[6].append(top[2]); c[7].append(top[3])
        nxt = self._next_sample.get(symbol, 0)
        if ts_local >= nxt:
            every = self.snapshot_every_us
            self._next_sample[symbol] = (ts_local // every + 1) * every
            c = self.out.book_snapshots
            n = self.snapshot_levels
            for side in ("bid", "ask"):
                for i, (p, q) in enumerate(book.levels(side, n)):
                    c[0].append(ts_ex); c[1].append(ts_local); c[2].append(self.venue)
                    c[3].append(symbol); c[4].append(i); c[5].append(side); c[6].append(p)
                    c[7].append(q)


def to_text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else raw
