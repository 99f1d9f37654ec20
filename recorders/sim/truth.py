"""The simulator's ground truth, read back: what was published, when connections were open,
and the true book at each checkpoint, with the comparisons recorder tests and the soak bench make.

``lab simulate --truth-dir DIR`` (or ``SimConfig(truth_dir=...)``) writes ``faults.jsonl``,
``trades.jsonl``, ``books.jsonl`` and ``connections.jsonl`` (see docs/CONTRACTS.md).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl

__all__ = ["read_truth", "iso_us", "windows", "connected_stretches", "silences", "trades_due", "replay_book",
           "book_mismatches"]


def read_truth(d: Path) -> dict[str, list[dict]]:
    out = {}
    for k in ("faults", "trades", "books", "connections"):
        p = d / f"{k}.jsonl"
        out[k] = [json.loads(l) for l in p.read_text().splitlines() if l.strip()] if p.exists() else []
    return out


def iso_us(s: str) -> int:
    d = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.timezone.utc)
    return int(d.timestamp()) * 1_000_000 + d.microsecond


def windows(connections: list[dict], venue: str) -> list[tuple[int, int]]:
    """(open, close) intervals in µs of every simulator connection of ``venue``."""
    opened: dict[str, int] = {}
    out = []
    for c in connections:
        if c["venue"] != venue:
            continue
        t = iso_us(c["ts"])
        if c["event"] == "open":
            opened[c["conn_id"]] = t
        elif c["conn_id"] in opened:
            out.append((opened.pop(c["conn_id"]), t))
    out += [(t, 1 << 62) for t in opened.values()]
    return out


def connected_stretches(connections: list[dict], venue: str) -> list[tuple[int, int]]:
    """The union of :func:`windows` of ``venue`` (overlapping connections merged), in order.

    >>> c = [{"venue": "okx", "conn_id": i, "event": e, "ts": f"2026-01-01T00:00:{s:02d}Z"}
    ...      for i, e, s in ((1, "open", 0), (2, "open", 5), (1, "close", 8), (2, "close", 9),
    ...                      (3, "open", 20), (3, "close", 30))]
    >>> [(a % 60_000_000 // 1_000_000, b % 60_000_000 // 1_000_000) for a, b in connected_stretches(c, "okx")]
    [(0, 9), (20, 30)]
    """
    out: list[tuple[int, int]] = []
    for a, b in sorted(windows(connections, venue)):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def silences(faults: list[dict], trades: pl.DataFrame) -> list[tuple[str, int, int]]:
    """(venue, start µs, end µs) of each ``silent`` fault: a silent venue sends nothing, trades
    included, so those trades are lost to every client. It starts 200 ms before the fault's
    time and ends where the first trade received live after it was made (its exchange time):
    rows a REST backfill brought back (``source`` set) are the silence's own trades, fetched
    afterwards, and say nothing about when the venue spoke again."""
    if "source" in trades.columns:
        trades = trades.filter(pl.col("source").is_null())
    te = trades.select("venue", pl.col("ts_exchange").dt.epoch("us").alias("te"))
    out = []
    for f in faults:
        if f["kind"] == "silent":
            t = iso_us(f["ts"])
            after = te.filter((pl.col("venue") == f["venue"]) & (pl.col("te") > t))["te"].min()
            out.append((f["venue"], t - 200_000, after or 1 << 62))
    return out


def trades_due(truth: dict[str, list[dict]], venue: str, recorded: set[tuple[str, str, str]],
               quiet: list[tuple[str, int, int]], live: set[tuple[str, str, str]] | None = None) -> list[dict]:
    """The published trades of ``venue`` a recorder must hold (``recorded``: its (venue,
    symbol, trade_id) keys): within each :func:`connected_stretches`, per symbol, every trade
    published between the first and the last one it received live there (``live``: the keys of
    the rows without a ``source``; all of ``recorded`` if not given), except during the
    :func:`silences` ``quiet``. Trades outside those spans (down time, the uncommitted last
    flush, reconnects) only a REST backfill brings back.

    The span's ends are live rows because a backfill's rows say nothing about what was received
    while connected: after a kill -9, the restarted recorder's backfill brings back the newest
    part of the hole, which can reach into the stretch the killed process was connected in; its
    uncommitted tail (received, never written) lies before those rows, and when the venue's
    REST window no longer reaches it (Bybit serves its last 60 trades) it stays a recorded hole.

    >>> t = {"trades": [{"venue": "bybit", "symbol": "S", "trade_id": i,
    ...                  "ts_exchange": f"2026-01-01T00:00:{i:02d}Z"} for i in range(1, 6)],
    ...      "connections": [{"venue": "bybit", "conn_id": 1, "event": e, "ts": f"2026-01-01T00:00:{s:02d}Z"}
    ...                      for e, s in (("open", 0), ("close", 9))]}
    >>> held = {("bybit", "S", str(i)) for i in (1, 2, 5)}  # 3, 4 lost at a kill; 5 came over REST
    >>> [r["trade_id"] for r in trades_due(t, "bybit", held, [])]
    [1, 2, 3, 4, 5]
    >>> [r["trade_id"] for r in trades_due(t, "bybit", held, [], live=held - {("bybit", "S", "5")})]
    [1, 2]
    """
    ends = recorded if live is None else live
    by_sym: dict[str, list[dict]] = {}
    for t in truth["trades"]:
        if t["venue"] == venue:
            by_sym.setdefault(t["symbol"], []).append(t)
    out = []
    for a, b in connected_stretches(truth["connections"], venue):
        for sym, sent_all in by_sym.items():
            sent = [t for t in sent_all if a <= iso_us(t["ts_exchange"]) <= b]
            seen = [i for i, t in enumerate(sent) if (venue, sym, str(t["trade_id"])) in ends]
            if not seen:
                continue
            out += [t for t in sent[seen[0]:seen[-1] + 1]
                    if not any(v == venue and a0 <= iso_us(t["ts_exchange"]) < b0 for v, a0, b0 in quiet)]
    return out


def replay_book(bu: pl.DataFrame):
    """Yield (seq, ts_exchange µs, next ts_exchange µs, bids, asks) after each recorded message."""
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    rows = bu.with_columns(pl.col("ts_local").dt.epoch("us").alias("tl"),
                           pl.col("ts_exchange").dt.epoch("us").alias("te")).to_dicts()
    i = 0
    while i < len(rows):
        j = i
        tl = rows[i]["tl"]
        while j < len(rows) and rows[j]["tl"] == tl:
            j += 1
        if rows[i]["is_snapshot"]:
            bids.clear()
            asks.clear()
        for r in rows[i:j]:
            side = bids if r["side"] == "bid" else asks
            if r["qty"] == 0:
                side.pop(r["price"], None)
            else:
                side[r["price"]] = r["qty"]
        nxt = rows[j]["te"] if j < len(rows) else None
        # a group can be a snapshot plus the buffered diffs applied after it: the state
        # afterwards is that of the group's last row
        yield (rows[j - 1]["seq"], rows[j - 1]["te"], nxt,
               sorted(bids.items(), reverse=True)[:25], sorted(asks.items())[:25])
        i = j


def book_mismatches(lake, truth_books: list[dict], venue: str, symbols: list[str],
                    levels: int = 25) -> tuple[int, list[tuple]]:
    """Compare the book rebuilt from the lake's ``book_updates`` with every truth
    checkpoint it lines up with; return (compared, mismatches).

    Binance and OKX carry the simulator's sequence, so a checkpoint lines up with one
    recorded message. The others line up by exchange time, which Bybit and OKX send in
    milliseconds: a checkpoint taken between two events of the same millisecond sits
    between two recorded messages of that millisecond. A time-keyed checkpoint is right
    when the recorded book passed through its state at its time: the state after one of
    the messages of that time unit, or the state just before the first of them (the
    checkpoint's event changed nothing the venue shows).
    """
    books: dict[str, list[dict]] = {}
    for b in truth_books:
        if b["venue"] == venue:
            books.setdefault(b["symbol"], []).append(b)
    by_seq = venue in ("binance", "okx")
    res = 1000 if venue in ("okx", "bybit") else 1
    compared, bad = 0, []
    for sym in symbols:
        index = {(b["seq"] if by_seq else iso_us(b["ts_exchange"]) // res * res): b
                 for b in books.get(sym, [])}
        bu = lake.scan("book_updates", venue=venue, symbol=sym).collect().sort("ts_local", maintain_order=True)
        states = list(replay_book(bu))
        if by_seq:
            groups = [(seq, [st]) for st in states for seq in (st[0],)]
        else:  # consecutive states of one time unit, with the state before them
            groups, prev = [], None
            for st in states:
                key = st[1] // res * res
                if groups and groups[-1][0] == key:
                    groups[-1][1].append(st)
                else:
                    groups.append((key, ([prev] if prev is not None else []) + [st]))
                prev = st
        for key, cands in groups:
            cp = index.get(key)
            if cp is None:
                continue
            compared += 1
            want_b = [tuple(x) for x in cp["bids"][:levels]]
            want_a = [tuple(x) for x in cp["asks"][:levels]]
            if not any(st[3][:levels] == want_b and st[4][:levels] == want_a for st in cands):
                seq, te, _, bids, asks = cands[-1]
                bad.append((sym, seq, te, bids[:3], want_b[:3], asks[:3], want_a[:3]))
    return compared, bad
