"""Backfill: fetch the trades a recorder missed from the venue's public REST history.

After a reconnect or a restart the recorder knows the last trade id it had per
symbol (seeded from the lake on restart) and sees the first trade id received
live; :func:`fetch_between` pages the venue's trade history between the two,
within the venue's page limit (docs/CONTRACTS.md, "Backfill"), through
:class:`recorders.rest.RestClient` (HTTP 429 -> back off, ``Retry-After``
honoured). :class:`Backfiller` is the recorder's hook: it dedups against live
rows by trade id, writes the rows to ``trades`` with ``source = 'rest'`` and
records one ``feed_events`` row of kind ``backfill`` per (symbol, hole): the
ids asked for, the rows found and whether the hole is closed or how many
trades remain missing (never a silent hole).

Trade ids are taken as consecutive integers per symbol (true on Binance, OKX,
Kraken v2 and Coinbase, and in the simulator), so a hole's size is exact: ids
asked minus ids found.

Bybit's ids are not (its spot docs: shared across symbols), so a venue that went
silent without closing the socket leaves no id gap to see there. For such a venue
(:data:`RECENT_WINDOW_ONLY`) :meth:`Backfiller._watch_quiet` looks at the time instead:
no market data (trade or book update) for longer than :data:`QUIET_S`, then data again on the same connection,
is a possible hole per symbol, filled from the recent window by exchange time (:class:`QuietFill`:
one ``backfill`` event per symbol and silence, its detail a time range).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import polars as pl

from lab.tail import TailWriter
from recorders.lakework import asked_before, trade_ts

__all__ = ["Trade", "Result", "QuietFill", "fetch_between", "fetch_window", "parse_page", "Backfiller", "PAGE_LIMITS",
           "venue_symbol", "result_frame", "parse_time"]

log = logging.getLogger("recorders.backfill")

#: venues whose trade ids are consecutive integers per symbol (a gap between two ids is a hole)
CONSECUTIVE_IDS = frozenset({"binance", "okx", "kraken", "coinbase"})
SCAN_IDS = 5000  # newest ids per symbol a full gap scan looks at
SCAN_MARGIN = 1000  # ids before the new ones a later scan looks at again

#: requests one hole may cost the recorder (the REST client is shared with book snapshots, so
#: a week-long outage must not hold their slots for an hour): 200 Binance pages = 200,000 trades;
#: what lies beyond stays a recorded hole, for ``lab backfill`` to fetch on demand
MAX_REQUESTS_PER_HOLE = 200

#: venues whose trade history is a window of the most recent trades (no cursor): a hole must be
#: fetched before the window moves past it, so the window is asked for as soon as a connection
#: opens (before the REST queue fills with the other venues' snapshots) and again once the
#: first live trade shows where the hole ends, if the first answer did not cover it
RECENT_WINDOW_ONLY = frozenset({"bybit"})

#: seconds a recent-window venue may go without market data (a trade or a book update) on any of
#: its symbols before the next push marks a possible hole. The simulator's symbols trade several
#: times a second each and their books move many times a second, as liquid Bybit spot pairs do, so
#: 2 s without a single push on all of them is a stall, not a lull. A false alarm (a venue
#: recorded for a few illiquid symbols whose books are quiet too) costs one REST request per
#: symbol and one ``backfill`` event finding nothing new (``lab.tape`` shows no range for it: the
#: window proved nothing was missed). Shorter than the silence watchdog (``silence_timeout``,
#: 30 s): a longer silence is a reconnect, filled by the reconnect path.
QUIET_S = 2.0
#: how often (s) the quiet watcher looks at the venues' market data counts (a poll off the message
#: loop: the loop itself is not touched); the hole's ends are known to this precision
QUIET_POLL_S = 0.25
#: µs before the last push seen ahead of a silence that its hole starts: a trade made just
#: before the silence may still have been on the wire when the venue stopped sending, or received
#: late by a recorder short of CPU (the ids held de-duplicate what was not lost)
QUIET_MARGIN_US = 1_000_000

#: venues whose history pages by time (the hole's start time is looked up in the lake)
TIME_PAGED = frozenset({"kraken", "coinbase"})

#: rows per request the backfill asks for (each venue's documented maximum)
PAGE_LIMITS: dict[str, int] = {"binance": 1000, "okx": 100, "kraken": 1000, "coinbase": 1000, "bybit": 60}

Get = Callable[[str], Awaitable[str]]


class Trade(NamedTuple):
    ts_us: int
    trade_id: int
    price: float
    qty: float
    side: str  # aggressor: buy / sell


class Result(NamedTuple):
    """One backfilled hole: ids ``lo..hi`` (inclusive) were asked for."""

    venue: str
    symbol: str
    lo: int
    hi: int
    trades: list[Trade]
    requests: int

    @property
    def asked(self) -> int:
        return max(0, self.hi - self.lo + 1)

    def _found(self) -> list[int]:
        return sorted({t.trade_id for t in self.trades if self.lo <= t.trade_id <= self.hi})

    @property
    def missing(self) -> int:
        return self.asked - len(self._found())

    def missing_span(self) -> tuple[int, int] | None:
        """The first and last id not found (``None`` if the hole is closed), in time linear in
        the ids *found*: a hole can be hundreds of millions of ids wide (a lake holding another
        market run's ids, a week-long outage), and walking it id by id stalled the recorder.

        >>> Result("x", "S", 10, 10**12, [Trade(0, 10, 1.0, 1.0, "buy"), Trade(0, 10**12, 1.0, 1.0, "buy")], 1).missing_span()
        (11, 999999999999)
        """
        found = self._found()
        if len(found) == self.asked:
            return None
        first = self.lo
        for i in found:
            if i != first:
                break
            first += 1
        last = self.hi
        for i in reversed(found):
            if i != last:
                break
            last -= 1
        return first, last

    def detail(self) -> str:
        found = len(self.trades)
        head = (f"ids {self.lo}..{self.hi} asked ({self.asked}); found {found} over REST "
                f"in {self.requests} request(s); ")
        span = self.missing_span()
        if span is None:
            return head + "hole closed"
        return head + f"hole remains: {self.missing} trade(s) missing, ids {span[0]}..{span[1]}"


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _iso(us: int) -> str:
    """µs since the epoch as ISO-8601 UTC text (the inverse of :func:`parse_time`).

    >>> _iso(1704067201000000)
    '2024-01-01T00:00:01.000000Z'
    """
    return (_EPOCH + dt.timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # exact (no float)


class QuietFill(NamedTuple):
    """One silence backfilled by time on a recent-window venue: trades with exchange time in
    ``start_us <= ts < end_us`` were asked for. ``trades``: those the window held (``new`` of
    them were not held yet); ``reached_us``: the exchange time of the window's oldest trade
    (``None``: the window was empty). The hole is closed when the window reached back to the
    silence's start, ``since_us`` (``start_us`` less the margin asked for on top, in case a
    trade was late: default ``start_us``); otherwise trades before ``reached_us`` may be
    missing, and the detail says so.

    >>> t0 = 1704067201000000
    >>> QuietFill("bybit", "BTC-USDT", t0, t0 + 3_000_000, [Trade(t0 + 1, 5, 1.0, 1.0, "buy")], 1, 1, t0 - 9).detail()
    'time 2024-01-01T00:00:01.000000Z..2024-01-01T00:00:04.000000Z asked (3.0 s, a silence without reconnect); found 1 over REST in 1 request(s), 1 new; hole closed'
    >>> QuietFill("bybit", "BTC-USDT", t0, t0 + 3_000_000, [], 0, 1, t0 + 2_000_000).detail().split("; ")[-1]
    "hole may remain: the venue's recent window reaches back only to 2024-01-01T00:00:03.000000Z, trades before it may be missing"
    """

    venue: str
    symbol: str
    start_us: int
    end_us: int
    trades: list[Trade]
    new: int
    requests: int
    reached_us: int | None
    error: str = ""
    since_us: int | None = None

    @property
    def closed(self) -> bool:
        since = self.start_us if self.since_us is None else self.since_us
        return not self.error and self.reached_us is not None and self.reached_us <= since

    def detail(self) -> str:
        head = (f"time {_iso(self.start_us)}..{_iso(self.end_us)} asked "
                f"({(self.end_us - self.start_us) / 1e6:.1f} s, a silence without reconnect); ")
        if self.error:
            return head + f"failed: {self.error}; hole may remain: trades in it may be missing"
        head += f"found {len(self.trades)} over REST in {self.requests} request(s), {self.new} new; "
        if self.closed:
            return head + "hole closed"
        if self.reached_us is None:
            return head + "hole may remain: the venue's recent window was empty, trades in it may be missing"
        return head + (f"hole may remain: the venue's recent window reaches back only to {_iso(self.reached_us)}, "
                       "trades before it may be missing")


def venue_symbol(venue: str, symbol: str) -> str:
    """The REST symbol text for a canonical ``BASE-QUOTE`` symbol.

    >>> venue_symbol("binance", "BTC-USDT"), venue_symbol("kraken", "BTC-USD"), venue_symbol("okx", "BTC-USDT")
    ('BTCUSDT', 'BTC/USD', 'BTC-USDT')
    """
    s = symbol.upper()
    if venue in ("binance", "bybit"):
        return s.replace("-", "")
    if venue == "kraken":
        return s.replace("-", "/")
    return s


def _ms(v: str | int) -> int:
    return int(v) * 1000


def _iso_us(s: str) -> int:
    from recorders.venues.base import rfc3339_us

    return rfc3339_us(s)


def parse_page(venue: str, body: str) -> list[Trade]:
    """One REST trade-history answer as trades, oldest first.

    >>> parse_page("binance", '[{"id":7,"price":"1.5","qty":"2","quoteQty":"3","time":1000,'
    ...            '"isBuyerMaker":true,"isBestMatch":true}]')
    [Trade(ts_us=1000000, trade_id=7, price=1.5, qty=2.0, side='sell')]
    """
    d = json.loads(body)
    out: list[Trade] = []
    if venue == "binance":
        out = [Trade(_ms(r["time"]), int(r["id"]), float(r["price"]), float(r["qty"]),
                     "sell" if r["isBuyerMaker"] else "buy") for r in d]
    elif venue == "okx":
        if d.get("code") not in ("0", 0):
            raise ValueError(f"OKX error {d.get('code')}: {d.get('msg')}")
        out = [Trade(_ms(r["ts"]), int(r["tradeId"]), float(r["px"]), float(r["sz"]), r["side"])
               for r in d["data"]]
    elif venue == "kraken":
        if d.get("error"):
            raise ValueError(f"Kraken error: {d['error']}")
        res = d["result"]
        rows = next(v for k, v in res.items() if k != "last")
        out = [Trade(int(round(float(r[2]) * 1e6)), int(r[6]), float(r[0]), float(r[1]),
                     "buy" if r[3] == "b" else "sell") for r in rows]
    elif venue == "coinbase":
        out = [Trade(_iso_us(r["time"]), int(r["trade_id"]), float(r["price"]), float(r["size"]),
                     r["side"].lower()) for r in d["trades"]]
    elif venue == "bybit":
        if d.get("retCode") != 0:
            raise ValueError(f"Bybit error {d.get('retCode')}: {d.get('retMsg')}")
        out = [Trade(_ms(r["time"]), int(r["execId"]), float(r["price"]), float(r["size"]),
                     r["side"].lower()) for r in d["result"]["list"]]
    else:
        raise ValueError(f"no trade history for venue {venue!r}")
    out.sort(key=lambda t: t.trade_id)
    return out


async def fetch_between(venue: str, rest_url: str, symbol: str, lo: int, hi: int, get: Get, *,
                        lo_ts_us: int | None = None, hi_ts_us: int | None = None,
                        progress: Callable[[int], None] | None = None,
                        max_requests: int | None = None) -> Result:
    """Fetch trades with ids ``lo..hi`` (inclusive) of ``symbol``, paging within the venue's limit.

    ``lo_ts_us``/``hi_ts_us`` bound the hole in time for the venues that page by time
    (Kraken, Coinbase). ``get(url) -> body`` is the HTTP client (429 back-off inside).
    ``max_requests`` stops paging after that many requests (what was found is returned;
    the rest of the hole stays missing and is reported so by :meth:`Result.detail`).
    """
    base = rest_url.rstrip("/")
    vs = venue_symbol(venue, symbol)
    limit = PAGE_LIMITS[venue]
    got: dict[int, Trade] = {}
    requests = 0

    async def page(url: str) -> list[Trade]:
        nonlocal requests
        if max_requests is not None and requests >= max_requests:
            raise _Capped
        requests += 1
        trades = parse_page(venue, await get(url))
        n0 = len(got)
        for t in trades:
            if lo <= t.trade_id <= hi:
                got[t.trade_id] = t
        if progress is not None and len(got) > n0:
            progress(len(got) - n0)
        return trades

    if hi < lo:
        return Result(venue, symbol, lo, hi, [], 0)
    try:
        await _page_all(venue, base, vs, lo, hi, limit, page, lo_ts_us, hi_ts_us)
    except _Capped:
        log.info("%s %s backfill: stopped after %d request(s)", venue, symbol, requests)
    return Result(venue, symbol, lo, hi, sorted(got.values()), requests)


class _Capped(Exception):
    """fetch_between's request budget is spent."""


async def _page_all(venue: str, base: str, vs: str, lo: int, hi: int, limit: int,
                    page: Callable[[str], Awaitable[list[Trade]]], lo_ts_us: int | None,
                    hi_ts_us: int | None) -> None:
    """Page the venue's trade history over ids ``lo..hi`` (each venue's own cursor rules)."""
    if venue == "binance":  # forward by id: fromId, oldest first
        nxt = lo
        while nxt <= hi:
            n = min(limit, hi - nxt + 1)
            tr = await page(f"{base}/api/v3/historicalTrades?symbol={vs}&fromId={nxt}&limit={n}")
            if not tr:
                break
            nxt = tr[-1].trade_id + 1
    elif venue == "okx":  # backward by id: after=<id> gives older trades, newest first
        cursor = hi + 1
        while cursor > lo:
            tr = await page(f"{base}/api/v5/market/history-trades?instId={vs}&type=1&after={cursor}&limit={limit}")
            if not tr:
                break
            cursor = tr[0].trade_id
    elif venue == "kraken":  # forward by time: since=<ns>, oldest first, ``last`` is the cursor
        since = ((lo_ts_us or 0) - 1) * 1000
        while True:
            tr = await page(f"{base}/0/public/Trades?pair={vs}&since={since}&count={limit}")
            if not tr or tr[-1].trade_id >= hi:
                break
            nxt = max(t.ts_us for t in tr) * 1000 - 1  # re-ask the last microsecond (ids dedup)
            if nxt <= since:
                nxt = since + 1000
            since = nxt
    elif venue == "coinbase":  # backward by time: end (exclusive, UNIX s), newest first
        end = (hi_ts_us // 1_000_000 + 1) if hi_ts_us else int(time.time()) + 1
        floor = (lo_ts_us // 1_000_000) if lo_ts_us else 0
        while end > floor:
            tr = await page(f"{base}/api/v3/brokerage/market/products/{vs}/ticker?limit={limit}"
                            f"&start={floor}&end={end}")
            if not tr:
                break
            s = tr[0].ts_us // 1_000_000
            if len(tr) >= limit:  # the page may have cut second s short: fetch that second alone
                await page(f"{base}/api/v3/brokerage/market/products/{vs}/ticker?limit={limit}"
                           f"&start={s}&end={s + 1}")
            if tr[0].trade_id <= lo:
                break
            end = s
    elif venue == "bybit":  # the recent window only: one request, no cursor
        await page(f"{base}/v5/market/recent-trade?category=spot&symbol={vs}&limit={limit}")
    else:
        raise ValueError(f"no trade history for venue {venue!r}")


async def _id_at(venue: str, base: str, vs: str, x: int, get: Get) -> Trade | None:
    """Binance: the first trade with id >= x; OKX: the last trade with id <= x (one row)."""
    if venue == "binance":
        tr = parse_page(venue, await get(f"{base}/api/v3/historicalTrades?symbol={vs}&fromId={x}&limit=1"))
    else:
        tr = parse_page(venue, await get(f"{base}/api/v5/market/history-trades?instId={vs}&type=1&after={x + 1}&limit=1"))
    return tr[0] if tr else None


async def fetch_window(venue: str, rest_url: str, symbol: str, start_us: int, end_us: int, get: Get, *,
                       progress: Callable[[int], None] | None = None,
                       total: Callable[[int], None] | None = None) -> Result:
    """Every trade of ``symbol`` with ``start_us <= ts < end_us`` the venue still serves.

    Id-paged venues (Binance, OKX) first find the window's id range by bisection on
    one-row requests (about 2 x log2(ids) requests), then page it with
    :func:`fetch_between`; time-paged venues (Kraken, Coinbase) page the window
    directly; Bybit returns what its recent window holds. ``total(n)`` is told the
    number of ids once known (for a progress bar).
    """
    base = rest_url.rstrip("/")
    vs = venue_symbol(venue, symbol)
    requests = 0

    async def counted(url: str) -> str:
        nonlocal requests
        requests += 1
        return await get(url)

    if venue in ("binance", "okx"):
        newest = parse_page(venue, await counted(
            f"{base}/api/v3/historicalTrades?symbol={vs}&limit=1" if venue == "binance"
            else f"{base}/api/v5/market/history-trades?instId={vs}&type=1&limit=1"))
        if not newest:
            return Result(venue, symbol, 0, -1, [], requests)

        async def first_at(t_us: int) -> int:
            """The smallest id whose trade time is >= t_us (newest id + 1 if none)."""
            a, b = 0, newest[-1].trade_id + 1  # invariant: time(id < a) < t_us <= time(id >= b)
            oldest = await _id_at(venue, base, vs, 0, counted) if venue == "binance" else None
            if oldest is not None:
                a = oldest.trade_id
                if oldest.ts_us >= t_us:
                    return a
            while a < b:
                m = (a + b) // 2
                tr = await _id_at(venue, base, vs, m, counted)
                if tr is None or (venue == "okx" and tr.trade_id < m):  # not served: treat as before t
                    a = m + 1
                elif tr.ts_us >= t_us:
                    b = tr.trade_id if venue == "binance" else m
                else:
                    a = (tr.trade_id if venue == "binance" else m) + 1
            return a

        lo = await first_at(start_us)
        hi = await first_at(end_us) - 1
        if total is not None:
            total(max(0, hi - lo + 1))
        r = await fetch_between(venue, rest_url, symbol, lo, hi, get, progress=progress)
        return r._replace(requests=r.requests + requests)
    got: dict[int, Trade] = {}
    if venue == "kraken":
        since = start_us * 1000 - 1
        while True:
            tr = parse_page(venue, await counted(f"{base}/0/public/Trades?pair={vs}&since={since}&count=1000"))
            new = [t for t in tr if start_us <= t.ts_us < end_us and t.trade_id not in got]
            for t in new:
                got[t.trade_id] = t
            if progress is not None and new:
                progress(len(new))
            if not tr or tr[-1].ts_us >= end_us:
                break
            nxt = max(t.ts_us for t in tr) * 1000 - 1
            since = nxt if nxt > since else since + 1000
    elif venue in ("coinbase", "bybit"):
        lo_ts = {"coinbase": start_us, "bybit": None}[venue]
        r = await fetch_between(venue, rest_url, symbol, 0, 1 << 62, counted, lo_ts_us=lo_ts,
                                hi_ts_us=end_us - 1)
        for t in r.trades:
            if start_us <= t.ts_us < end_us:
                got[t.trade_id] = t
        if progress is not None and got:
            progress(len(got))
    else:
        raise ValueError(f"no trade history for venue {venue!r}")
    trades = sorted(got.values())
    lo, hi = (trades[0].trade_id, trades[-1].trade_id) if trades else (0, -1)
    return Result(venue, symbol, lo, hi, [t for t in trades if lo <= t.trade_id <= hi], requests)


def result_frame(r: Result, ts_local_us: int) -> pl.DataFrame:
    """A backfill's trades as ``trades`` rows with ``source = 'rest'``."""
    n = len(r.trades)
    return pl.DataFrame({
        "ts_exchange": pl.Series([t.ts_us for t in r.trades], dtype=pl.Int64).cast(pl.Datetime("us", "UTC")),
        "ts_local": pl.Series([ts_local_us] * n, dtype=pl.Int64).cast(pl.Datetime("us", "UTC")),
        "venue": [r.venue] * n, "symbol": [r.symbol] * n,
        "trade_id": [str(t.trade_id) for t in r.trades],
        "price": pl.Series([t.price for t in r.trades], dtype=pl.Float64),
        "qty": pl.Series([t.qty for t in r.trades], dtype=pl.Float64),
        "side": [t.side for t in r.trades], "source": ["rest"] * n,
    }, schema_overrides={"venue": pl.String, "symbol": pl.String, "trade_id": pl.String,
                         "side": pl.String, "source": pl.String})


class _Quiet:
    """What the quiet watcher knows of one venue (:meth:`Backfiller._watch_quiet`)."""

    __slots__ = ("count", "poll_us", "after_us", "seen_us", "conns", "quiet")

    def __init__(self, count: int, poll_us: int, after_us: int | None, seen_us: int,
                 conns: frozenset[str]) -> None:
        self.count = count  # market data pushes received so far (the open connections')
        self.poll_us = poll_us  # the last poll
        self.after_us = after_us  # the newest push arrived after this (None: none seen yet)
        self.seen_us = seen_us  # the poll that saw the newest push
        self.conns = conns  # the connections open (and spoken) then
        self.quiet = False  # no push for longer than the threshold


class Backfiller:
    """The recorder's backfill hook (one per recorder).

    :meth:`on_open` is called when a venue connection opens: it notes the newest
    trade id already held per symbol, waits for the first trade of each symbol on the
    new connection, then fills the ids in between. A scanner fills trade-id gaps on live
    streams of :data:`CONSECUTIVE_IDS` venues (:meth:`_scan`), a quiet watcher the silences
    of :data:`RECENT_WINDOW_ONLY` venues that end without a reconnect (:meth:`_watch_quiet`).
    """

    def __init__(self, rec, wait_live_s: float = 30.0, scan_every: float = 2.0, quiet_s: float = QUIET_S) -> None:
        self.rec = rec
        self.quiet_s = quiet_s  # 0: no silence watch on recent-window venues
        self.lake = type(rec.lake)(rec.lake.root)  # its own handles: the writer thread owns rec.lake's
        # committer = "maintainer": backfilled trades go to a tail of their own (lab.tail), which
        # the maintainer commits with the recorder's; None: appended (committed) at once
        self.tail = (TailWriter(self.lake, commits=False) if rec.tail_by_maintainer else None)
        self._tail_lock = threading.Lock()
        self.wait_live_s = wait_live_s
        self.scan_every = scan_every
        self.tasks: set[asyncio.Task] = set()
        self.results: list[Result] = []
        self.busy: set[tuple[str, str]] = set()  # (venue, symbol) with a fill in flight
        self._scanner: asyncio.Task | None = None
        self._seen_gaps: set[tuple[str, str, int, int]] = set()
        self._done: dict[tuple[str, str], list[tuple[int, int]]] = {}  # ranges already backfilled
        self._baseline: dict[tuple[str, str], int] = {}  # oldest id scanned for gaps
        self._scanned: dict[tuple[str, str], tuple[int, int]] = {}  # (scans done, ids added at the last)
        self._waiting: set[tuple[str, str]] = set()  # (venue, symbol) a reconnect's fill waits on
        self._quiet_watch: asyncio.Task | None = None
        self.quiet_results: list[QuietFill] = []
        self._quiet_fills: set[asyncio.Task] = set()  # silences' fills in flight (also in ``tasks``)

    def on_open(self, runner) -> None:
        rest = runner.rest_url
        if not rest or runner.venue not in PAGE_LIMITS:
            return
        if self._scanner is None and self.scan_every > 0:
            # The tape this process starts from is scanned too, not only what it receives: a live
            # gap an earlier process saw but was killed before filling is committed in the lake,
            # behind the newest id, and would otherwise stay a silent hole for ever. Holes earlier
            # processes already asked for are not asked again (their ``backfill`` events, read
            # when the scanner starts).
            for r in self.rec.runners:
                for sym in (x.upper() for x in r.vc.symbols):
                    ids = r.trade_ids.recent_ids(sym, 5000)
                    self._baseline[(r.venue, sym)] = min(ids) if ids else -1
            self._scanner = asyncio.get_running_loop().create_task(self._scan())
        if self._quiet_watch is None and self.quiet_s > 0 and runner.venue in RECENT_WINDOW_ONLY:
            self._quiet_watch = asyncio.get_running_loop().create_task(self._watch_quiet())
        last = {}
        for sym in (s.upper() for s in runner.vc.symbols):
            if (runner.venue, sym) in self._waiting:
                # an earlier connection's fill still waits for this symbol's first live trade (the
                # connection dropped before one came): that fill covers this connection's hole too,
                # and a second one would ask the venue twice and record the hole twice
                continue
            ids = runner.trade_ids.recent_ids(sym, 2000)
            if ids:
                last[sym] = max(ids)
        if not last:  # nothing held yet: no hole to speak of
            return
        t = asyncio.get_running_loop().create_task(self._run(runner, last))
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    async def close(self, timeout: float = 3.0) -> None:
        """At a stop: fill the live gaps seen so far (a gap seen once is filled now rather than
        left unrecorded) and let the silences' fills in flight end (one request each), within
        ``timeout`` seconds; other backfills in flight are cancelled."""
        if self._scanner is not None:
            self._scanner.cancel()
        if self._quiet_watch is not None:
            self._quiet_watch.cancel()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.sleep(0.5)  # a trade in flight out of order lands
                await self._scan_once(final=True)
                if self._quiet_fills:
                    await asyncio.gather(*self._quiet_fills, return_exceptions=True)
        except TimeoutError:
            log.warning("backfill: stop reached before every gap was filled")
        for t in list(self.tasks):
            t.cancel()

    async def _scan(self) -> None:
        """Trade-id gaps on a live stream (no reconnect: e.g. messages lost while a venue was
        silent): a gap between two ids held, seen in two scans in a row (so not a trade merely
        in flight out of order), is filled like a reconnect's hole. Only venues whose ids are
        consecutive integers per symbol (:data:`CONSECUTIVE_IDS`)."""
        for key, ranges in (await asyncio.to_thread(self._asked_before)).items():
            self._done.setdefault(key, []).extend(ranges)
        while not self.rec.stopping.is_set():
            await asyncio.sleep(self.scan_every)
            await self._scan_once()

    def _asked_before(self) -> dict[tuple[str, str], list[tuple[int, int]]]:
        """The id ranges earlier processes asked for (``backfill`` feed events of the window the
        trade ids are seeded from), per (venue, symbol): each hole is asked for and recorded once,
        whichever process saw it. Blocking (a lake read): called through ``asyncio.to_thread``."""
        out: dict[tuple[str, str], list[tuple[int, int]]] = {}
        if self.tail is not None:  # read by the recorder's start-up child (recorders.lakework)
            rows = self.rec.asked_before
        else:
            since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=self.rec.cfg.seed_hours + 1)
            try:
                rows = asked_before(self.lake, since)
            except Exception as e:  # noqa: BLE001 - without them a hole may be asked for twice, no worse
                log.warning("backfill: could not read earlier backfill events: %s", e)
                return out
        for venue, sym, lo, hi in rows:
            out.setdefault((venue, sym), []).append((int(lo), int(hi)))
        return out

    def _append(self, df: pl.DataFrame) -> None:
        """Add backfilled trades to the lake: a Delta commit (Polars writes the file: the
        recorder never loads delta-rs' writer), or this backfiller's own tail when the
        maintainer commits the recorder's (committer = "maintainer"). Blocking: to_thread."""
        if self.tail is None:
            self.lake.append("trades", df, polars_writer=True)
            return
        with self._tail_lock:  # fills of several symbols write at once
            self.tail.write("trades", df)

    async def _scan_once(self, final: bool = False) -> None:
        rec = self.rec
        gaps_now: set[tuple[str, str, int, int]] = set()
        for runner in rec.runners:
            if runner.venue not in CONSECUTIVE_IDS or not runner.rest_url:
                continue
            for sym in (x.upper() for x in runner.vc.symbols):
                if (runner.venue, sym) in self.busy:
                    continue
                key = (runner.venue, sym)
                base = self._baseline.get(key, -1)
                if base < 0:  # nothing held when scanning began: the first ids set the baseline
                    ids0 = runner.trade_ids.recent_ids(sym, SCAN_IDS)
                    self._baseline[key] = base = min(ids0) if ids0 else -1
                # the first two scans of a symbol (a gap counts when seen twice) and the last one
                # look at the newest SCAN_IDS ids; later scans at the ids new since the previous
                # scan plus SCAN_MARGIN (a gap is seen again while it is that recent): the scan
                # parsed 5,000 ids per symbol every 2 s, a tenth of the recorder's CPU
                added = runner.trade_ids.added.get(sym, 0)
                scans, before = self._scanned.get(key, (0, added))
                n = SCAN_IDS if final or scans < 2 else min(SCAN_IDS, added - before + SCAN_MARGIN)
                self._scanned[key] = (scans + 1, added)
                ids = sorted({i for i in runner.trade_ids.recent_ids(sym, n) if i >= base})
                done = self._done.get(key, [])
                for a, b in zip(ids, ids[1:]):
                    if b > a + 1 and not any(lo <= a + 1 and b - 1 <= hi for lo, hi in done):
                        gaps_now.add((runner.venue, sym, a + 1, b - 1))
        for g in sorted(gaps_now if final else gaps_now & self._seen_gaps):
            venue, sym, lo, hi = g
            runner = next(r for r in rec.runners if r.venue == venue)
            if (venue, sym) in self.busy:
                continue
            self.busy.add((venue, sym))
            try:
                await self._fill(runner, sym, lo, hi)
            finally:
                self.busy.discard((venue, sym))
        self._seen_gaps = gaps_now - self._seen_gaps

    async def _watch_quiet(self) -> None:
        """Silences on recent-window venues (:data:`RECENT_WINDOW_ONLY`) that end without a
        reconnect: their trade ids tell nothing (Bybit's are shared across symbols), so a venue
        that stops sending for a few seconds with the socket open would leave a hole nobody asks
        for. The message loop is not touched: every :data:`QUIET_POLL_S` this reads how many
        market data pushes each such venue's open connections have received (the adapters'
        ``stats["messages"]``: trades and book updates, not replies). Data, not any message: a
        venue whose feed stalls may still answer pings and resubscriptions (the simulator's
        ``silent`` fault does: replies are sent, the feed is not), and a pong in the middle must
        neither hide the silence nor end it. Data, not only trades: book updates arriving prove
        the connection delivered what the venue sent then, so a lull between trades of a quiet
        symbol whose book still moves asks nothing. No push on any symbol of the venue for longer
        than ``quiet_s``, then one again with the same connections open, is a possible hole per
        symbol: from the poll before the last push (less
        :data:`QUIET_MARGIN_US`) to the poll that saw data again, both moved to the venue's
        clock by the least receive delay (``Adapter.delay_floor_us``: trades are asked by
        exchange time), filled at once from the recent window (:meth:`_fill_quiet`). A new connection in between is the reconnect
        path's (its on_open asks the window from the last id held)."""
        quiet_us = int(self.quiet_s * 1e6)
        state: dict[str, _Quiet] = {}
        loop = asyncio.get_running_loop()
        while not self.rec.stopping.is_set():
            await asyncio.sleep(QUIET_POLL_S)
            now = time.time_ns() // 1000
            for runner in self.rec.runners:
                if runner.venue not in RECENT_WINDOW_ONLY or not runner.rest_url:
                    continue
                # connections that have spoken: one still opening (subscribing) is not quiet, and
                # what it missed is its on_open's hole
                conns = frozenset(s.conn_id for s in runner.sessions
                                  if s.ws is not None and s.first_message.is_set())
                # market data pushes (trades and book updates; not replies nor pongs) received
                count = sum(s.adapter.stats.get("messages", 0) for s in runner.sessions if s.conn_id in conns)
                st = state.get(runner.venue)
                if st is None or not conns or conns != st.conns:
                    # down, or a connection opened or closed: its on_open / the reconnect path
                    # fills what it missed; watch afresh from here
                    state[runner.venue] = _Quiet(count, now, None, now, conns)
                    continue
                if count == st.count:
                    if st.after_us is not None and now - st.seen_us > quiet_us and not st.quiet:
                        st.quiet = True
                    st.poll_us = now
                    continue
                if st.quiet and st.after_us is not None:  # data again after a silence
                    # our times to the venue's: minus the least receive delay (the venue's clock
                    # and ours differ; the simulator's ran 4 s behind in a soak)
                    floors = [d for s in runner.sessions if s.conn_id in conns
                              if (d := s.adapter.delay_floor_us()) is not None]
                    floor = min(floors, default=0)
                    start = st.after_us - floor - QUIET_MARGIN_US
                    end = now - floor
                    log.info("%s: no market data for %.1f s, connection still open: backfilling by time",
                             runner.venue, (now - st.after_us) / 1e6)
                    for sym in (x.upper() for x in runner.vc.symbols):
                        t = loop.create_task(self._fill_quiet(runner, sym, start, end,
                                                              start + QUIET_MARGIN_US))
                        self.tasks.add(t)
                        self._quiet_fills.add(t)
                        t.add_done_callback(self.tasks.discard)
                        t.add_done_callback(self._quiet_fills.discard)
                # the newest push arrived after the previous poll
                state[runner.venue] = _Quiet(count, now, st.poll_us, now, conns)

    def _get(self, venue: str, sym: str) -> Get:
        """The shared REST client's GET for one symbol's backfill: each failed try is a
        ``rest_error`` feed event of (venue, symbol)."""
        rec = self.rec

        def on_error(detail: str) -> None:
            rec.rows.event(time.time_ns() // 1000, venue, sym, "rest_error", detail)

        async def get(url: str) -> str:
            return await rec.rest.get(url, on_error)

        return get

    async def _fill_quiet(self, runner, sym: str, start_us: int, end_us: int, since_us: int | None = None) -> None:
        """Ask the recent window of ``sym`` once, add its trades with ``start_us <= ts < end_us``
        not held yet (``source = 'rest'``) and record the silence (one ``backfill`` event whose
        detail is :meth:`QuietFill.detail`: the time range, rows found, closed or not: whether the
        window reached back to ``since_us``, the silence's start)."""
        rec = self.rec
        venue = runner.venue
        get = self._get(venue, sym)
        try:
            r = await fetch_between(venue, runner.rest_url, sym, 0, 1 << 62, get, max_requests=1)
        except Exception as e:  # noqa: BLE001 - a failed backfill is a recorded hole, not a crash
            qf = QuietFill(venue, sym, start_us, end_us, [], 0, 1, None, f"{type(e).__name__}: {e}", since_us)
            rec.rows.event(time.time_ns() // 1000, venue, sym, "backfill", qf.detail())
            return
        reached = min((t.ts_us for t in r.trades), default=None)
        inside = [t for t in r.trades if start_us <= t.ts_us < end_us]
        new = runner.trade_ids.add_backfilled(sym, [str(t.trade_id) for t in inside])
        fresh = [t for t, n in zip(inside, new, strict=True) if n]
        qf = QuietFill(venue, sym, start_us, end_us, inside, len(fresh), r.requests, reached, since_us=since_us)
        now = time.time_ns() // 1000
        if fresh:
            df = result_frame(Result(venue, sym, 0, -1, fresh, r.requests), now)
            try:
                await asyncio.to_thread(self._append, df)
            except Exception as e:  # noqa: BLE001
                rec.rows.event(now, venue, sym, "backfill",
                               f"time {_iso(start_us)}..{_iso(end_us)} asked; {len(fresh)} trade(s) fetched "
                               f"but not written: {e}; hole may remain: trades in it may be missing")
                return
        self.quiet_results.append(qf)
        rec.rows.event(now, venue, sym, "backfill", qf.detail())
        log.info("%s %s backfill: %s", venue, sym, qf.detail())

    async def _run(self, runner, last: dict[str, int]) -> None:
        deadline = time.monotonic() + self.wait_live_s
        pending = dict(last)
        for sym in pending:
            self.busy.add((runner.venue, sym))
            self._waiting.add((runner.venue, sym))
        early: dict[str, asyncio.Task] = {}
        if runner.venue in RECENT_WINDOW_ONLY:
            loop = asyncio.get_running_loop()
            early = {sym: loop.create_task(self._window(runner, sym, before)) for sym, before in pending.items()}
        try:
            await self._wait_and_fill(runner, pending, deadline, early)
        finally:
            for t in early.values():
                t.cancel()
            for sym in last:
                self.busy.discard((runner.venue, sym))
                self._waiting.discard((runner.venue, sym))

    async def _window(self, runner, sym: str, before: int) -> tuple[list[Trade], int]:
        """The venue's recent-trade window of ``sym`` right now, the ids above ``before`` kept (a
        venue without a cursor: what the window holds now may have left it by the time the first
        live trade shows where the hole ends). Returns (trades, requests made)."""
        get = self._get(runner.venue, sym)
        try:
            r = await fetch_between(runner.venue, runner.rest_url, sym, before + 1, 1 << 62, get, max_requests=1)
        except Exception as e:  # noqa: BLE001 - the fill after the first live trade asks again
            log.info("%s %s early backfill window failed: %s", runner.venue, sym, e)
            return [], 1
        return r.trades, r.requests

    async def _wait_and_fill(self, runner, pending: dict[str, int], deadline: float,
                             early: dict[str, asyncio.Task] | None = None) -> None:
        rec = self.rec
        early = early or {}
        while pending and not rec.stopping.is_set():
            for sym, before in list(pending.items()):
                newer = [i for i in runner.trade_ids.recent_ids(sym, 2000) if i > before]
                if newer:
                    first_live = min(newer)
                    del pending[sym]
                    self._waiting.discard((runner.venue, sym))
                    if first_live > before + 1:
                        got: tuple[list[Trade], int] = ([], 0)
                        t = early.get(sym)
                        if t is not None:
                            got = await t
                        await self._fill(runner, sym, before + 1, first_live - 1, prefetched=got)
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)

    def _ts_of(self, runner, sym: str, trade_id: int) -> int:
        """Exchange time (µs) of the last trade held before the hole, for the venues that page by
        time: from the lake, else the last message seen on the symbol, else 10 minutes ago.

        Blocking (a lake read): called through ``asyncio.to_thread``. The read covers only the
        window the recorder seeded its trade ids from (``seed_hours``, plus an hour), which the
        time filter prunes to the newest files by their statistics, so a large lake costs no more
        than a small one."""
        hours = self.rec.cfg.seed_hours + 1
        try:
            if self.tail is not None:  # a child reads it: this process never loads delta-rs
                ts = self.rec.lake_child_sync("trade_ts", {"lake": str(self.lake.root), "venue": runner.venue,
                                                           "symbol": sym, "trade_id": str(trade_id),
                                                           "since_hours": hours})["ts"]
            else:
                since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=hours)
                ts = trade_ts(self.lake, runner.venue, sym, str(trade_id), since)
            if ts is not None:
                return int(ts)
        except Exception:  # noqa: BLE001 - fall back below
            pass
        seen = max([s.adapter.last_msg_us.get(sym, 0) for s in runner.sessions] + [runner.last_seen.get(sym, 0)])
        now = time.time_ns() // 1000
        return seen - 5_000_000 if seen else now - 600_000_000

    async def _fill(self, runner, sym: str, lo: int, hi: int,
                    prefetched: tuple[list[Trade], int] = ([], 0)) -> None:
        """Fetch ids ``lo..hi`` of ``sym``, write the new ones, record the hole (one event).
        ``prefetched``: (trades, requests) already fetched for this hole (a recent-window venue's
        early answer); the venue is asked only if they leave ids missing."""
        rec = self.rec
        venue = runner.venue
        self._done.setdefault((venue, sym), []).append((lo, hi))  # one record per hole, never twice
        get = self._get(venue, sym)

        early = Result(venue, sym, lo, hi, [t for t in prefetched[0] if lo <= t.trade_id <= hi], prefetched[1])
        if prefetched[1] and early.missing == 0:
            r = early
        else:
            # only the venues that page by time need the hole's start time (a lake read)
            lo_ts = await asyncio.to_thread(self._ts_of, runner, sym, lo - 1) if venue in TIME_PAGED else None
            try:
                r = await fetch_between(venue, runner.rest_url, sym, lo, hi, get, lo_ts_us=lo_ts,
                                        max_requests=MAX_REQUESTS_PER_HOLE)
            except Exception as e:  # noqa: BLE001 - a failed backfill is a recorded hole, not a crash
                if not early.trades:
                    rec.rows.event(time.time_ns() // 1000, venue, sym, "backfill",
                                   f"ids {lo}..{hi} asked ({hi - lo + 1}); failed: {type(e).__name__}: {e}; "
                                   f"hole remains: {hi - lo + 1} trade(s) missing, ids {lo}..{hi}")
                    return
                log.info("%s %s backfill: second request failed (%s); keeping the early window", venue, sym, e)
                r = early
            else:
                if early.trades or early.requests:
                    merged = {t.trade_id: t for t in early.trades} | {t.trade_id: t for t in r.trades}
                    r = r._replace(trades=sorted(merged.values()), requests=r.requests + early.requests)
        fresh = [t for t, new in zip(r.trades, runner.trade_ids.add_backfilled(sym, [str(t.trade_id) for t in r.trades]),
                                     strict=True) if new]
        r2 = r._replace(trades=fresh) if len(fresh) != len(r.trades) else r
        now = time.time_ns() // 1000
        if fresh:
            df = result_frame(r2, now)
            try:
                await asyncio.to_thread(self._append, df)
            except Exception as e:  # noqa: BLE001
                rec.rows.event(now, venue, sym, "backfill",
                               f"ids {lo}..{hi}: {len(fresh)} trade(s) fetched but not written: {e}")
                return
        self.results.append(r)
        rec.rows.event(now, venue, sym, "backfill", r.detail())
        log.info("%s %s backfill: %s", venue, sym, r.detail())


def parse_time(text: str) -> int:
    """ISO-8601 text (UTC if no zone) to µs since the epoch.

    >>> parse_time("2024-01-01T00:00:01Z")
    1704067201000000
    """
    d = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.timezone.utc)
    return (d - _EPOCH) // dt.timedelta(microseconds=1)  # exact: a float of µs since 1970 rounds
