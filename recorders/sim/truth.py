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

__all__ = ["read_truth", "iso_us", "windows", "replay_book", "book_mismatches"]


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
