"""Lake rows -> hftbacktest's event format (``lab export hftbacktest``).

hftbacktest (https://github.com/nkaz001/hftbacktest) reads a structured numpy
array of events (``ev`` flags, ``exch_ts``, ``local_ts`` in ns, ``px``,
``qty``, ``order_id``, ``ival``, ``fval``), saved as ``.npz`` with key
``data``. This module builds it from one venue/symbol's ``trades`` and
``book_updates`` by the rules of hftbacktest's documented data format:

* trades -> ``TRADE_EVENT`` with the aggressor's side flag (none when the
  side is unknown); book rows -> ``DEPTH_EVENT`` with ``BUY`` for bids and
  ``SELL`` for asks;
* each book snapshot (a message of ``is_snapshot`` rows) -> per side, a
  ``DEPTH_CLEAR_EVENT`` (``px`` = the side's last snapshot level: the book is
  cleared up to there) followed by that side's ``DEPTH_SNAPSHOT_EVENT`` rows;
* all trades first, then the book rows (a trade must be seen before the book
  change it caused, so the queue position is not reduced twice), each in
  receive order; local times shifted forward if any precede their exchange
  time; then every row ordered for both clocks: a row whose exchange and
  local orders disagree is split into an exchange-only and a local-only event.

The independent check is hftbacktest's own tardis converter: the same tardis
files through ``lab import tardis`` and this export give the same array
(``tests/backtest/test_tardis_hftbacktest.py``).
"""

from __future__ import annotations

import numpy as np
import polars as pl
from numba import njit

from lab.backtest.peer import HBT_EVENT_DTYPE

__all__ = ["to_hftbacktest_events", "EXCH_EVENT", "LOCAL_EVENT", "BUY_EVENT", "SELL_EVENT",
           "DEPTH_EVENT", "TRADE_EVENT", "DEPTH_CLEAR_EVENT", "DEPTH_SNAPSHOT_EVENT"]

DEPTH_EVENT, TRADE_EVENT, DEPTH_CLEAR_EVENT, DEPTH_SNAPSHOT_EVENT = 1, 2, 3, 4
EXCH_EVENT, LOCAL_EVENT = 1 << 31, 1 << 30
BUY_EVENT, SELL_EVENT = 1 << 29, 1 << 28


def _ns(col: str) -> pl.Expr:
    return pl.col(col).dt.cast_time_unit("ns").dt.epoch("ns")


def _trade_events(trades: pl.DataFrame) -> np.ndarray:
    t = trades.sort("ts_local", maintain_order=True)
    out = np.zeros(t.height, HBT_EVENT_DTYPE)
    side = t["side"].to_numpy()
    flags = np.full(t.height, TRADE_EVENT, np.uint64)
    flags[side == "buy"] |= np.uint64(BUY_EVENT)
    flags[side == "sell"] |= np.uint64(SELL_EVENT)
    out["ev"] = flags
    out["exch_ts"] = t.select(_ns("ts_exchange")).to_series().to_numpy()
    out["local_ts"] = t.select(_ns("ts_local")).to_series().to_numpy()
    out["px"] = t["price"].to_numpy()
    out["qty"] = t["qty"].to_numpy()
    return out


@njit(cache=True)
def _depth(exch, local, px, qty, is_bid, snap, msg, out):  # pragma: no cover - compiled
    n = 0
    i = 0
    m = len(exch)
    while i < m:
        if not snap[i]:
            out[n].ev = DEPTH_EVENT | (BUY_EVENT if is_bid[i] else SELL_EVENT)
            out[n].exch_ts = exch[i]
            out[n].local_ts = local[i]
            out[n].px = px[i]
            out[n].qty = qty[i]
            n += 1
            i += 1
            continue
        j = i
        while j < m and snap[j] and msg[j] == msg[i]:
            j += 1
        for want_bid in (True, False):
            first = -1
            last = -1
            for k in range(i, j):
                if is_bid[k] == want_bid:
                    if first < 0:
                        first = k
                    last = k
            if first < 0:
                continue
            out[n].ev = DEPTH_CLEAR_EVENT | (BUY_EVENT if want_bid else SELL_EVENT)
            out[n].exch_ts = exch[first]
            out[n].local_ts = local[first]
            out[n].px = px[last]
            out[n].qty = 0.0
            n += 1
            for k in range(i, j):
                if is_bid[k] == want_bid:
                    out[n].ev = DEPTH_SNAPSHOT_EVENT | (BUY_EVENT if want_bid else SELL_EVENT)
                    out[n].exch_ts = exch[k]
                    out[n].local_ts = local[k]
                    out[n].px = px[k]
                    out[n].qty = qty[k]
                    n += 1
        i = j
    return n


def _depth_events(book: pl.DataFrame) -> np.ndarray:
    b = book.sort("ts_local", "seq", maintain_order=True)
    snap = b["is_snapshot"].fill_null(False).to_numpy()
    out = np.zeros(b.height + 2 * max(1, int(snap.sum())), HBT_EVENT_DTYPE)
    n = _depth(b.select(_ns("ts_exchange")).to_series().to_numpy(), b.select(_ns("ts_local")).to_series().to_numpy(),
               b["price"].to_numpy(), b["qty"].to_numpy(), (b["side"] == "bid").to_numpy(), snap,
               b["seq"].fill_null(-1).to_numpy(), out)
    return out[:n]


@njit(cache=True)
def _order(data, by_exch, by_local, out):  # pragma: no cover - compiled
    n = len(data)
    e = 0
    lo = 0
    k = 0
    while e < n or lo < n:
        if e < n and lo < n:
            a = data[by_exch[e]]
            b = data[by_local[lo]]
            if a.exch_ts == b.exch_ts and a.local_ts == b.local_ts:
                out[k] = a
                out[k].ev = a.ev | EXCH_EVENT | LOCAL_EVENT
                e += 1
                lo += 1
            elif a.exch_ts < b.exch_ts or (a.exch_ts == b.exch_ts and a.local_ts < b.local_ts):
                out[k] = a
                out[k].ev = a.ev | EXCH_EVENT
                e += 1
            else:
                out[k] = b
                out[k].ev = b.ev | LOCAL_EVENT
                lo += 1
        elif e < n:
            out[k] = data[by_exch[e]]
            out[k].ev = out[k].ev | EXCH_EVENT
            e += 1
        else:
            out[k] = data[by_local[lo]]
            out[k].ev = out[k].ev | LOCAL_EVENT
            lo += 1
        k += 1
    return k


def to_hftbacktest_events(trades: pl.DataFrame, book_updates: pl.DataFrame) -> np.ndarray:
    """One instrument's trades and book rows as hftbacktest's event array (see the module doc)."""
    data = np.concatenate([_trade_events(trades), _depth_events(book_updates)])
    if len(data) == 0:
        return data
    lag = int((data["local_ts"] - data["exch_ts"]).min())
    if lag < 0:
        data["local_ts"] -= lag
    out = np.zeros(2 * len(data), HBT_EVENT_DTYPE)
    k = _order(data, np.argsort(data["exch_ts"], kind="mergesort"),
               np.argsort(data["local_ts"], kind="mergesort"), out)
    return out[:k]
