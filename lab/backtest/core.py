"""The compiled core of the event-driven backtester (numba, ``cache=True``).

Everything here works on one :class:`State` (a namedtuple of numpy arrays,
which numba passes without boxing Python objects and can cache to disk) and
on the event arrays built by :mod:`lab.backtest.data`.

Two timelines, as in hftbacktest:

* the **exchange** timeline replays every event at its ``ts_exchange`` into the
  exchange book, matches our resting orders (queue model) and receives our
  requests ``entry latency`` after we sent them;
* the **local** timeline replays the same events at ``ts_local`` into the
  local book the strategy sees (so feed latency is exactly the recorded
  ``ts_local - ts_exchange``), and delivers order acks and fills ``response
  latency`` after the exchange produced them.

At equal timestamps the order is: exchange data, order requests arriving at
the exchange, equity sample, responses arriving locally, local data, timer.
Ties inside each stream keep input order, so a run is deterministic.

Units: times are int64 microseconds since the epoch; prices are int64 ticks
(``price / tick``); quantities float64 in base units; fees and balances in
the instrument's quote currency.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit, types
from numba.cpython.unsafe.numbers import leading_zeros, trailing_zeros
from numba.experimental import structref

# -- constants (shared with the Python layer) ---------------------------------
INF = np.int64(2**62)
BID, ASK = 0, 1
BUY, SELL = 1, -1
EV_DEPTH, EV_TRADE, EV_SNAPSHOT = 0, 1, 2
LIMIT, MARKET = 0, 1
GTC, POST_ONLY, IOC, FOK = 0, 1, 2, 3
Q_RISK_AVERSE, Q_PROB_POWER, Q_PROB_LOG = 0, 1, 2
# exchange-side order status
X_FREE, X_INFLIGHT, X_RESTING, X_DONE = 0, 1, 2, 3
# local (strategy-visible) order status
L_FREE, L_PENDING, L_OPEN, L_DONE = 0, 1, 2, 3
# request kinds
RQ_NEW, RQ_CANCEL, RQ_AMEND = 0, 1, 2
# response / order-log event kinds
R_SENT, R_ACK, R_FILL, R_CANCELED, R_REJECTED, R_AMENDED, R_EXPIRED, R_CANCEL_REJECTED = 0, 1, 2, 3, 4, 5, 6, 7
EVENT_NAMES = ("new", "ack", "fill", "canceled", "rejected", "amended", "expired", "cancel_rejected")
# strategy callback codes
CB_NONE, CB_BOOK, CB_TRADE, CB_FILL, CB_ORDER, CB_TIMER, CB_START = 0, 1, 2, 3, 4, 5, 6
CB_NAMES = ("none", "book", "trade", "fill", "order", "timer", "start")

# oi (int64 order fields)
OI_ID, OI_INST, OI_SIDE, OI_PX, OI_TYPE, OI_TIF, OI_XST, OI_LST, OI_PEND, OI_LAST_RQ, OI_LAST_RP, OI_NEWPX = range(12)
N_OI = 12
# of (float64 order fields)
OF_QTY, OF_LEAVES, OF_FRONT, OF_CUM, OF_LFILLED, OF_NEWQTY, OF_XFILLED = range(7)
N_OF = 7
# ctr (int64 counters)
(C_NOW, C_SEQ, C_NEXT_ID, C_NRQ, C_NRP, C_NFILL, C_NLOG, C_NEQ, C_IEX, C_ILO,
 C_TIMER_NEXT, C_TIMER_IV, C_LAT_E, C_LAT_R, C_EQ_NEXT, C_HW, C_NEVENTS, C_QMODEL,
 C_EQ_IV, C_OVERFLOW, C_NCB, C_DROPPED) = range(22)
N_CTR = 24
# rq (requests in flight to the exchange): time, seq, kind, slot, px
RQ_T, RQ_SEQ, RQ_KIND, RQ_SLOT, RQ_PX = range(5)
# rp (responses in flight to us): time, seq, kind, slot, px, maker
RP_T, RP_SEQ, RP_KIND, RP_SLOT, RP_PX, RP_MAKER = range(6)
# fills log ints: ts_exch, ts_local, order_id, inst, side, maker, px
FL_TSX, FL_TSL, FL_ID, FL_INST, FL_SIDE, FL_MAKER, FL_PX = range(7)
# order log ints: ts, order_id, inst, side, type, tif, event, px
LG_TS, LG_ID, LG_INST, LG_SIDE, LG_TYPE, LG_TIF, LG_EV, LG_PX = range(8)

State = namedtuple("State", [
    # static
    "inst_venue", "inst_base", "inst_quote", "tick", "lot",
    "maker_fee", "taker_fee", "asset_inst", "asset_fixed", "lat_entry", "lat_resp", "qparam",
    # books: price-indexed vectors over a window per instrument (see "books" below)
    "bq", "bbits", "bmeta",
    # orders
    "oi", "of", "free",
    # queues
    "rq", "rqf", "rp", "rpf",
    # logs
    "fl", "flf", "lg", "lgf", "eq_ts", "eq_val", "eq_pos", "asset_px",
    # accounts
    "bal", "lpos", "ctr", "cb", "cbf",
])


@structref.register
class _StateType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


class EngineState(structref.StructRefProxy):
    """The numba-side handle on a :class:`State`: one pointer, cheap to pass around."""


structref.define_proxy(EngineState, _StateType, list(State._fields))


@njit(cache=True)
def _make_ref(
    inst_venue, inst_base, inst_quote, tick, lot, maker_fee, taker_fee, asset_inst,
    asset_fixed, lat_entry, lat_resp, qparam, bq, bbits, bmeta,
    oi, of, free, rq, rqf, rp, rpf, fl,
    flf, lg, lgf, eq_ts, eq_val, eq_pos, asset_px, bal,
    lpos, ctr, cb, cbf,
):
    return EngineState(
        inst_venue, inst_base, inst_quote, tick, lot, maker_fee, taker_fee, asset_inst,
        asset_fixed, lat_entry, lat_resp, qparam, bq, bbits, bmeta,
        oi, of, free, rq, rqf, rp, rpf, fl,
        flf, lg, lgf, eq_ts, eq_val, eq_pos, asset_px, bal,
        lpos, ctr, cb, cbf,
    )


def as_ref(arrays: State) -> EngineState:
    """Wrap the arrays of ``arrays`` (shared, not copied) in an :class:`EngineState`."""
    return _make_ref(*arrays)



def new_state(
    *,
    inst_venue: np.ndarray, inst_base: np.ndarray, inst_quote: np.ndarray,
    tick: np.ndarray, lot: np.ndarray, maker_fee: np.ndarray, taker_fee: np.ndarray,
    asset_inst: np.ndarray, asset_fixed: np.ndarray, lat_entry: np.ndarray, lat_resp: np.ndarray,
    queue_model: int = Q_RISK_AVERSE, queue_param: float = 2.0,
    n_venues: int, n_assets: int, eq_interval: int, n_eq: int,
    max_orders: int = 4096, max_inflight: int = 8192,
    max_fills: int = 200_000, max_log: int = 400_000,
) -> State:
    """Allocate a fresh engine state (all books empty, all balances zero).

    The book windows start empty (width 0): :func:`resize_books` places them
    (``Engine.feed`` does so from the prices of the events it is given).
    """
    n = len(inst_venue)
    ctr = np.zeros(N_CTR, np.int64)
    ctr[C_NEXT_ID] = 1
    ctr[C_TIMER_NEXT] = INF
    ctr[C_EQ_NEXT] = INF
    ctr[C_QMODEL] = queue_model
    ctr[C_EQ_IV] = eq_interval
    ctr[C_NOW] = -INF
    free = np.arange(max_orders - 1, -1, -1, dtype=np.int64)  # a stack; top at the end
    bmeta = np.full((n, N_META), -1, np.int64)
    bmeta[:, [M_LO, M_W, M_OFF]] = 0
    return State(
        inst_venue.astype(np.int64), inst_base.astype(np.int64), inst_quote.astype(np.int64),
        tick.astype(np.float64), lot.astype(np.float64),
        maker_fee.astype(np.float64), taker_fee.astype(np.float64),
        asset_inst.astype(np.int64), asset_fixed.astype(np.float64),
        np.ascontiguousarray(lat_entry, np.int64), np.ascontiguousarray(lat_resp, np.int64),
        np.array([queue_param], np.float64),
        np.zeros(0, np.float64), np.zeros(0, np.uint64), bmeta,
        np.zeros((max_orders, N_OI), np.int64), np.zeros((max_orders, N_OF), np.float64),
        np.concatenate([free, np.array([max_orders], np.int64)]),  # last cell: stack size
        np.zeros((max_inflight, 5), np.int64), np.zeros((max_inflight, 1), np.float64),
        np.zeros((max_inflight, 6), np.int64), np.zeros((max_inflight, 2), np.float64),
        np.zeros((max_fills, 7), np.int64), np.zeros((max_fills, 3), np.float64),
        np.zeros((max_log, 8), np.int64), np.zeros((max_log, 1), np.float64),
        np.zeros(n_eq, np.int64), np.zeros((n_eq, n_venues), np.float64),
        np.zeros((n_eq, n), np.float64), np.where(np.isnan(asset_fixed), 0.0, asset_fixed),
        np.zeros((n_venues, n_assets), np.float64), np.zeros(n, np.float64), ctr,
        np.zeros(8, np.int64),  # last callback: code, inst, slot, order id, event kind, px, maker
        np.zeros(2, np.float64),  # last response: qty, fee
    )


# -- books ----------------------------------------------------------------------
# Each instrument's books live in one price-indexed vector over a window of
# ``w`` ticks starting at ``lo`` (a "range of interest", as in hftbacktest's
# ROIVector depth). Row ``r = 2 * b + side`` (book ``b``: 0 exchange, 1 local)
# of instrument ``i`` holds the size at price ``p`` (ticks) in cell
# ``c = off + r * w + p - lo`` of ``bq`` (0 = no level), and bit ``c`` of
# ``bbits`` says whether that level exists. ``bmeta[i]`` holds ``lo, w, off``,
# the best price of each row (-1 = empty side), its extent (the farthest price
# set on that side since it was last empty: a bound for searches, not
# necessarily a level) and the time of the snapshot being applied per book.
# An update is one store and one bit flip; a deleted best level finds the
# next one in the bitmap, 64 prices per word (the simulated books have levels
# hundreds of ticks apart). Windows are multiples of 64 ticks, so a bitmap
# word never spans two rows. The hot helpers take these three arrays rather
# than the state: numba passes each array as a dozen words and reference
# counts every field read from the state, which cost more than the update.
# ``Engine.feed`` places the windows over the prices of the events it is
# given, so no level is lost; a level outside the window (only when a window
# would exceed ``BacktestConfig.book_ticks``) is dropped and counted in
# ``ctr[C_DROPPED]``.
M_LO, M_W, M_OFF, M_TOP, M_EXT, M_SNAP = 0, 1, 2, 3, 7, 11  # M_TOP/M_EXT + r, M_SNAP + b
N_META = 16
_ONE = np.uint64(1)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


@njit(cache=True)
def _below(bits, c, floor):
    """The highest set cell ``<= c`` and ``>= floor`` (cell indices), or -1."""
    if c < floor:
        return np.int64(-1)
    wd = c >> 6
    r = c & 63
    m = bits[wd] & (_ALL if r == 63 else ((_ONE << np.uint64(r + 1)) - _ONE))
    stop = floor >> 6
    while m == 0:
        wd -= 1
        if wd < stop:
            return np.int64(-1)
        m = bits[wd]
    hit = (wd << 6) + 63 - np.int64(leading_zeros(m))
    return hit if hit >= floor else np.int64(-1)


@njit(cache=True)
def _above(bits, c, ceil):
    """The lowest set cell ``>= c`` and ``<= ceil`` (cell indices), or -1."""
    if c > ceil:
        return np.int64(-1)
    wd = c >> 6
    m = bits[wd] & ~((_ONE << np.uint64(c & 63)) - _ONE)
    stop = ceil >> 6
    while m == 0:
        wd += 1
        if wd > stop:
            return np.int64(-1)
        m = bits[wd]
    hit = (wd << 6) + np.int64(trailing_zeros(m))
    return hit if hit <= ceil else np.int64(-1)


@njit(cache=True)
def _next_price(bits, meta, i, r, side, p):
    """The next price after level ``p`` of row ``r``, going away from the touch, or -1."""
    base = meta[i, M_OFF] + r * meta[i, M_W] - meta[i, M_LO]
    e = meta[i, M_EXT + r]
    h = _below(bits, base + p - 1, base + e) if side == BID else _above(bits, base + p + 1, base + e)
    return h - base if h >= 0 else np.int64(-1)


@njit(cache=True)
def book_clear(bq, bits, meta, b, i):
    """Empty both sides of book ``b`` of instrument ``i``."""
    lo = meta[i, M_LO]
    w = meta[i, M_W]
    for side in range(2):
        r = 2 * b + side
        top = meta[i, M_TOP + r]
        if top >= 0:
            base = meta[i, M_OFF] + r * w
            ext = meta[i, M_EXT + r]
            a, z = (ext, top) if side == BID else (top, ext)
            a, z = base + max(a - lo, 0), base + min(z - lo, w - 1)
            for c in range(a, z + 1):
                bq[c] = 0.0
            for wd in range(a >> 6, (z >> 6) + 1):
                bits[wd] = 0
        meta[i, M_TOP + r] = -1
        meta[i, M_EXT + r] = -1


@njit(cache=True)
def level_qty(st, b, i, side, p):
    """Size at price ``p`` (ticks) of a side (0 if no level)."""
    m = st.bmeta
    x = p - m[i, M_LO]
    if x < 0 or x >= m[i, M_W]:
        return 0.0
    return st.bq[m[i, M_OFF] + (2 * b + side) * m[i, M_W] + x]


@njit(cache=True)
def best(st, b, i, side):
    """Best price (ticks) of a side, or -1 if the side is empty."""
    return st.bmeta[i, M_TOP + 2 * b + side]


@njit(cache=True)
def best_qty(st, b, i, side):
    """Size at the best price of a side (0 if the side is empty)."""
    top = best(st, b, i, side)
    return level_qty(st, b, i, side, top) if top >= 0 else 0.0


@njit(cache=True)
def _next_level(st, b, i, side, p):
    """The next price after level ``p`` going away from the touch that has a level, or -1."""
    return _next_price(st.bbits, st.bmeta, i, 2 * b + side, side, p)


@njit(cache=True)
def book_depth(st, b, i, side, levels):
    """The best ``levels`` levels of a side as (prices in ticks, sizes), best first."""
    px = np.zeros(levels, np.int64)
    qty = np.zeros(levels, np.float64)
    p = best(st, b, i, side)
    n = 0
    while p >= 0 and n < levels:
        px[n] = p
        qty[n] = level_qty(st, b, i, side, p)
        n += 1
        p = _next_level(st, b, i, side, p)
    return px[:n], qty[:n]


@njit(cache=True)
def price_bounds(kind, inst, px, n_inst):
    """Lowest and highest book price (ticks) per instrument (-1, -2 where it has no book rows)."""
    mn = np.full(n_inst, np.int64(2**62))
    mx = np.full(n_inst, np.int64(-2))
    for k in range(px.shape[0]):
        if kind[k] == EV_TRADE:
            continue
        i = inst[k]
        p = px[k]
        if p < mn[i]:
            mn[i] = p
        if p > mx[i]:
            mx[i] = p
    for i in range(n_inst):
        if mx[i] < -1:
            mn[i] = -1
    return mn, mx


@njit(cache=True)
def _refill(old, ometa, new, bits, meta):
    """Copy the levels inside both windows; rebuild the bitmap and each side's ends."""
    for i in range(meta.shape[0]):
        olo, ow, nlo, nw = ometa[i, M_LO], ometa[i, M_W], meta[i, M_LO], meta[i, M_W]
        a = max(olo, nlo)
        z = min(olo + ow, nlo + nw)
        for r in range(4):
            so = ometa[i, M_OFF] + r * ow - olo
            sn = meta[i, M_OFF] + r * nw - nlo
            top = np.int64(-1)
            ext = np.int64(-1)
            for p in range(a, z):
                v = old[so + p]
                if v != 0.0:
                    c = sn + p
                    new[c] = v
                    bits[c >> 6] |= _ONE << np.uint64(c & 63)
                    if top < 0:
                        top = p
                        ext = p
                    if r % 2 == BID:
                        top = p  # ascending: the last level is the best bid, the first the extent
                    else:
                        ext = p
            meta[i, M_TOP + r] = top
            meta[i, M_EXT + r] = ext


def resize_books(arrays: State, lo: np.ndarray, width: np.ndarray) -> State:
    """A copy of ``arrays`` whose book windows start at ``lo`` and span ``width`` ticks (multiples of 64).

    Levels inside both the old and the new window are kept; levels outside the
    new one are dropped. Only the book arrays are new; the rest is shared.
    """
    lo = np.asarray(lo, np.int64)
    width = np.asarray(width, np.int64)
    if np.any(width % 64):
        raise ValueError(f"book windows must be multiples of 64 ticks, got {width}")
    meta = arrays.bmeta.copy()
    meta[:, M_LO] = lo
    meta[:, M_W] = width
    meta[:, M_OFF] = np.concatenate([[0], np.cumsum(4 * width)[:-1]])
    bq = np.zeros(int(4 * width.sum()), np.float64)
    bits = np.zeros(len(bq) // 64, np.uint64)
    _refill(arrays.bq, arrays.bmeta, bq, bits, meta)
    return arrays._replace(bq=bq, bbits=bits, bmeta=meta)


# -- in-flight queues -------------------------------------------------------------
# duplicates: _push_rq and _push_rp share a shape on purpose (two queues with their own columns;
# a generic push would cost the engine's hot path an indirection).
@njit(cache=True)
def _push_rq(st, t, kind, slot, px, qty):
    n = st.ctr[C_NRQ]
    if n >= st.rq.shape[0]:
        st.ctr[C_OVERFLOW] = 1
        return
    t = max(t, st.oi[slot, OI_LAST_RQ])  # requests of one order arrive in the order sent
    st.oi[slot, OI_LAST_RQ] = t
    st.ctr[C_SEQ] += 1
    st.rq[n, RQ_T] = t
    st.rq[n, RQ_SEQ] = st.ctr[C_SEQ]
    st.rq[n, RQ_KIND] = kind
    st.rq[n, RQ_SLOT] = slot
    st.rq[n, RQ_PX] = px
    st.rqf[n, 0] = qty
    st.ctr[C_NRQ] = n + 1
    st.oi[slot, OI_PEND] += 1


@njit(cache=True)
def _push_rp(st, t, kind, slot, px, qty, fee, maker):
    n = st.ctr[C_NRP]
    if n >= st.rp.shape[0]:
        st.ctr[C_OVERFLOW] = 1
        return
    t = max(t, st.oi[slot, OI_LAST_RP])
    st.oi[slot, OI_LAST_RP] = t
    st.ctr[C_SEQ] += 1
    st.rp[n, RP_T] = t
    st.rp[n, RP_SEQ] = st.ctr[C_SEQ]
    st.rp[n, RP_KIND] = kind
    st.rp[n, RP_SLOT] = slot
    st.rp[n, RP_PX] = px
    st.rp[n, RP_MAKER] = maker
    st.rpf[n, 0] = qty
    st.rpf[n, 1] = fee
    st.ctr[C_NRP] = n + 1
    st.oi[slot, OI_PEND] += 1


@njit(cache=True)
def _resp_latency(st):
    k = st.ctr[C_LAT_R]
    st.ctr[C_LAT_R] = k + 1
    return st.lat_resp[k % st.lat_resp.shape[0]]


@njit(cache=True)
def _entry_latency(st):
    k = st.ctr[C_LAT_E]
    st.ctr[C_LAT_E] = k + 1
    return st.lat_entry[k % st.lat_entry.shape[0]]


@njit(cache=True)
def _log(st, t, slot, ev, px, qty):
    n = st.ctr[C_NLOG]
    if n >= st.lg.shape[0]:
        st.ctr[C_OVERFLOW] = 2
        return
    st.lg[n, LG_TS] = t
    st.lg[n, LG_ID] = st.oi[slot, OI_ID]
    st.lg[n, LG_INST] = st.oi[slot, OI_INST]
    st.lg[n, LG_SIDE] = st.oi[slot, OI_SIDE]
    st.lg[n, LG_TYPE] = st.oi[slot, OI_TYPE]
    st.lg[n, LG_TIF] = st.oi[slot, OI_TIF]
    st.lg[n, LG_EV] = ev
    st.lg[n, LG_PX] = px
    st.lgf[n, 0] = qty
    st.ctr[C_NLOG] = n + 1


# -- exchange side ----------------------------------------------------------------
@njit(cache=True)
def _fill(st, slot, t, px, qty, maker):
    """Exchange fills ``qty`` of order ``slot`` at ``px`` (ticks) at exchange time ``t``."""
    i = st.oi[slot, OI_INST]
    side = st.oi[slot, OI_SIDE]
    v = st.inst_venue[i]
    price = px * st.tick[i]
    rate = st.maker_fee[v] if maker else st.taker_fee[v]
    fee = price * qty * rate
    st.bal[v, st.inst_base[i]] += side * qty
    st.bal[v, st.inst_quote[i]] -= side * price * qty + fee
    st.of[slot, OF_LEAVES] -= qty
    st.of[slot, OF_XFILLED] += qty
    if st.of[slot, OF_LEAVES] <= 1e-12 * st.of[slot, OF_QTY]:
        st.of[slot, OF_LEAVES] = 0.0
        st.oi[slot, OI_XST] = X_DONE
    tl = t + _resp_latency(st)
    n = st.ctr[C_NFILL]
    if n < st.fl.shape[0]:
        st.fl[n, FL_TSX] = t
        st.fl[n, FL_TSL] = max(tl, st.oi[slot, OI_LAST_RP])
        st.fl[n, FL_ID] = st.oi[slot, OI_ID]
        st.fl[n, FL_INST] = i
        st.fl[n, FL_SIDE] = side
        st.fl[n, FL_MAKER] = 1 if maker else 0
        st.fl[n, FL_PX] = px
        st.flf[n, 0] = price
        st.flf[n, 1] = qty
        st.flf[n, 2] = fee
        st.ctr[C_NFILL] = n + 1
    else:
        st.ctr[C_OVERFLOW] = 3
    _push_rp(st, tl, R_FILL, slot, px, qty, fee, 1 if maker else 0)


@njit(cache=True)
def _available(st, i, side, limit_px, has_limit):
    """Quantity on the opposite side of ``side`` at prices no worse than ``limit_px``."""
    os = ASK if side == BUY else BID
    tot = 0.0
    lp = best(st, 0, i, os)
    while lp >= 0:
        if has_limit and ((side == BUY and lp > limit_px) or (side == SELL and lp < limit_px)):
            break
        tot += level_qty(st, 0, i, os, lp)
        lp = _next_level(st, 0, i, os, lp)
    return tot


@njit(cache=True)
def _take(st, slot, t, limit_px, has_limit):
    """Walk the exchange book for a taker order (the replayed book is not consumed).

    The engine's compiled twin of :func:`lab.l2.walk` (numba forces it: it runs
    inside the engine's kernels), kept separate because it walks the engine's
    tick-indexed book, stops at a limit price and fills the order level by
    level (a fill row per level) instead of returning a price: for a market
    order its fills average :func:`lab.l2.walk`'s price
    (tests/micro/test_one_book.py checks it on random books)."""
    i = st.oi[slot, OI_INST]
    side = st.oi[slot, OI_SIDE]
    os = ASK if side == BUY else BID
    lp = best(st, 0, i, os)
    while lp >= 0:
        if has_limit and ((side == BUY and lp > limit_px) or (side == SELL and lp < limit_px)):
            break
        leaves = st.of[slot, OF_LEAVES]
        if leaves <= 0.0:
            break
        q = min(leaves, level_qty(st, 0, i, os, lp))
        if q > 0.0:
            _fill(st, slot, t, lp, q, False)
        lp = _next_level(st, 0, i, os, lp)


@njit(cache=True)
def _crosses(st, i, side, px):
    if side == BUY:
        a = best(st, 0, i, ASK)
        return a >= 0 and px >= a
    b = best(st, 0, i, BID)
    return b >= 0 and px <= b


@njit(cache=True)
def _finish(st, slot, t, kind):
    st.oi[slot, OI_XST] = X_DONE
    _push_rp(st, t + _resp_latency(st), kind, slot, st.oi[slot, OI_PX], st.of[slot, OF_LEAVES], 0.0, 0)


@njit(cache=True)
def _arrive_new(st, slot, t, is_amend):
    """An order (or an amended order) reaches the matching engine at ``t``."""
    i = st.oi[slot, OI_INST]
    side = st.oi[slot, OI_SIDE]
    px = st.oi[slot, OI_PX]
    tif = st.oi[slot, OI_TIF]
    if st.oi[slot, OI_TYPE] == MARKET:
        _take(st, slot, t, 0, False)
        if st.oi[slot, OI_XST] != X_DONE:
            _finish(st, slot, t, R_EXPIRED)
        return
    crossing = _crosses(st, i, side, px)
    if tif == POST_ONLY and crossing:
        _finish(st, slot, t, R_REJECTED)
        return
    if tif == FOK:
        if _available(st, i, side, px, True) + 1e-12 < st.of[slot, OF_LEAVES]:
            _finish(st, slot, t, R_EXPIRED)
            return
    if crossing:
        _take(st, slot, t, px, True)
        if st.oi[slot, OI_XST] == X_DONE:
            return
    if tif == IOC or tif == FOK:
        _finish(st, slot, t, R_EXPIRED)
        return
    # rest on the book behind everything already at that price
    st.oi[slot, OI_XST] = X_RESTING
    st.of[slot, OF_FRONT] = level_qty(st, 0, i, BID if side == BUY else ASK, px)
    st.of[slot, OF_CUM] = 0.0
    _push_rp(st, t + _resp_latency(st), R_AMENDED if is_amend else R_ACK, slot, px,
             st.of[slot, OF_LEAVES], 0.0, 0)


@njit(cache=True)
def _arrive_request(st, k, t):
    kind = st.rq[k, RQ_KIND]
    slot = st.rq[k, RQ_SLOT]
    px = st.rq[k, RQ_PX]
    qty = st.rqf[k, 0]
    st.oi[slot, OI_PEND] -= 1
    if kind == RQ_NEW:
        _arrive_new(st, slot, t, False)
    elif kind == RQ_CANCEL:
        if st.oi[slot, OI_XST] == X_RESTING:
            _finish(st, slot, t, R_CANCELED)
        else:
            _push_rp(st, t + _resp_latency(st), R_CANCEL_REJECTED, slot, st.oi[slot, OI_PX], 0.0, 0.0, 0)
    else:  # amend: a new price and/or total quantity; the order loses its queue place
        if st.oi[slot, OI_XST] != X_RESTING:
            _push_rp(st, t + _resp_latency(st), R_CANCEL_REJECTED, slot, st.oi[slot, OI_PX], 0.0, 0.0, 0)
            return
        st.oi[slot, OI_PX] = px
        st.of[slot, OF_QTY] = qty
        st.of[slot, OF_LEAVES] = qty - st.of[slot, OF_XFILLED]
        if st.of[slot, OF_LEAVES] <= 0.0:
            st.of[slot, OF_LEAVES] = 0.0
            _finish(st, slot, t, R_CANCELED)
            return
        _arrive_new(st, slot, t, True)


@njit(cache=True)
def _prob(model, a, front, back):
    if model == Q_PROB_POWER:
        fb = back ** a
        ff = front ** a
    else:
        fb = np.log(1.0 + back)
        ff = np.log(1.0 + front)
    s = fb + ff
    if s <= 0.0 or not np.isfinite(s):
        return 1.0
    return fb / s


@njit(cache=True)
def _exch_depth(st, i, side, p, q, prev):
    """Queue-position updates and crossing fills after a depth change at the exchange."""
    model = st.ctr[C_QMODEL]
    for slot in range(st.ctr[C_HW]):
        if st.oi[slot, OI_XST] != X_RESTING or st.oi[slot, OI_INST] != i:
            continue
        oside = st.oi[slot, OI_SIDE]
        opx = st.oi[slot, OI_PX]
        if (oside == BUY and side == BID) or (oside == SELL and side == ASK):
            if opx != p:
                continue
            if model == Q_RISK_AVERSE:
                st.of[slot, OF_FRONT] = min(st.of[slot, OF_FRONT], q)
            else:
                chg = prev - q - st.of[slot, OF_CUM]
                st.of[slot, OF_CUM] = 0.0
                if chg < 0.0:
                    st.of[slot, OF_FRONT] = min(st.of[slot, OF_FRONT], q)
                else:
                    front = st.of[slot, OF_FRONT]
                    back = prev - front
                    pr = _prob(model, st.qparam[0], front, back)
                    est = front - (1.0 - pr) * chg + min(back - pr * chg, 0.0)
                    st.of[slot, OF_FRONT] = min(est, q)
        elif q > 0.0 and ((oside == BUY and p <= opx) or (oside == SELL and p >= opx)):
            # the opposite side moved through our price: we were hit at our price
            _fill(st, slot, st.ctr[C_NOW], opx, st.of[slot, OF_LEAVES], True)


@njit(cache=True)
def _exch_trade(st, i, aggr, p, qty):
    for slot in range(st.ctr[C_HW]):
        if st.oi[slot, OI_XST] != X_RESTING or st.oi[slot, OI_INST] != i:
            continue
        oside = st.oi[slot, OI_SIDE]
        if oside == aggr:
            continue
        opx = st.oi[slot, OI_PX]
        if (oside == BUY and opx > p) or (oside == SELL and opx < p):
            _fill(st, slot, st.ctr[C_NOW], opx, st.of[slot, OF_LEAVES], True)
        elif opx == p:
            st.of[slot, OF_FRONT] -= qty
            st.of[slot, OF_CUM] += qty
            if st.of[slot, OF_FRONT] < 0.0:
                ex = -st.of[slot, OF_FRONT]
                st.of[slot, OF_FRONT] = 0.0
                _fill(st, slot, st.ctr[C_NOW], opx, min(ex, st.of[slot, OF_LEAVES]), True)


# -- local side ---------------------------------------------------------------------
@njit(cache=True)
def _deliver(st, k):
    """A response reaches the strategy; returns (callback code, slot)."""
    kind = st.rp[k, RP_KIND]
    slot = st.rp[k, RP_SLOT]
    t = st.rp[k, RP_T]
    st.oi[slot, OI_PEND] -= 1
    qty = st.rpf[k, 0]
    _log(st, t, slot, kind, st.rp[k, RP_PX], qty)
    code = CB_ORDER
    if kind == R_ACK or kind == R_AMENDED:
        if st.oi[slot, OI_LST] == L_PENDING:
            st.oi[slot, OI_LST] = L_OPEN
    elif kind == R_FILL:
        i = st.oi[slot, OI_INST]
        st.of[slot, OF_LFILLED] += qty
        st.lpos[i] += st.oi[slot, OI_SIDE] * qty
        if st.of[slot, OF_LFILLED] >= st.of[slot, OF_QTY] * (1.0 - 1e-12):
            st.oi[slot, OI_LST] = L_DONE
        elif st.oi[slot, OI_LST] == L_PENDING:
            st.oi[slot, OI_LST] = L_OPEN
        code = CB_FILL
    elif kind == R_CANCEL_REJECTED:
        pass
    else:  # canceled, rejected, expired
        st.oi[slot, OI_LST] = L_DONE
    return code, slot


@njit(cache=True)
def _sample_equity(st, t):
    n = st.ctr[C_NEQ]
    if n >= st.eq_ts.shape[0]:
        return
    for a in range(st.asset_px.shape[0]):
        if not np.isnan(st.asset_fixed[a]):
            continue
        i = st.asset_inst[a]
        if i < 0:
            continue
        b = best(st, 0, i, BID)
        s = best(st, 0, i, ASK)
        if b >= 0 and s >= 0:
            qv = st.inst_quote[i]
            st.asset_px[a] = 0.5 * (b + s) * st.tick[i] * st.asset_px[qv]
    st.eq_ts[n] = t
    for v in range(st.bal.shape[0]):
        tot = 0.0
        for a in range(st.bal.shape[1]):
            if st.bal[v, a] != 0.0:
                tot += st.bal[v, a] * st.asset_px[a]
        st.eq_val[n, v] = tot
    for i in range(st.lpos.shape[0]):
        st.eq_pos[n, i] = st.bal[st.inst_venue[i], st.inst_base[i]]
    st.ctr[C_NEQ] = n + 1


# -- strategy-facing helpers (usable from numba strategies and from Python) -------------
@njit(cache=True)
def submit(st, i, side, px, qty, otype, tif):
    """Send a new order at the current local time; returns its order id (0 if no slot)."""
    top = st.free[-1]
    if top == 0:
        st.ctr[C_OVERFLOW] = 4
        return np.int64(0)
    top -= 1
    slot = st.free[top]
    st.free[-1] = top
    if slot + 1 > st.ctr[C_HW]:
        st.ctr[C_HW] = slot + 1
    oid = st.ctr[C_NEXT_ID]
    st.ctr[C_NEXT_ID] = oid + 1
    oi, of = st.oi, st.of
    for c in range(N_OI):  # element loops: a slice is a new array view, with reference counting
        oi[slot, c] = 0
    for c in range(N_OF):
        of[slot, c] = 0.0
    st.oi[slot, OI_ID] = oid
    st.oi[slot, OI_INST] = i
    st.oi[slot, OI_SIDE] = side
    st.oi[slot, OI_PX] = px
    st.oi[slot, OI_TYPE] = otype
    st.oi[slot, OI_TIF] = tif
    st.oi[slot, OI_XST] = X_INFLIGHT
    st.oi[slot, OI_LST] = L_PENDING
    st.of[slot, OF_QTY] = qty
    st.of[slot, OF_LEAVES] = qty
    now = st.ctr[C_NOW]
    _log(st, now, slot, R_SENT, px, qty)
    _push_rq(st, now + _entry_latency(st), RQ_NEW, slot, px, qty)
    return oid


@njit(cache=True)
def find_slot(st, oid):
    for slot in range(st.ctr[C_HW]):
        if st.oi[slot, OI_ID] == oid and st.oi[slot, OI_LST] != L_FREE:
            return slot
    return -1


@njit(cache=True)
def cancel(st, oid):
    """Request a cancel; False if the order is unknown or already done locally."""
    slot = find_slot(st, oid)
    if slot < 0 or st.oi[slot, OI_LST] == L_DONE:
        return False
    _push_rq(st, st.ctr[C_NOW] + _entry_latency(st), RQ_CANCEL, slot, st.oi[slot, OI_PX], 0.0)
    return True


@njit(cache=True)
def amend(st, oid, px, qty):
    """Request a new price (ticks) and total quantity for an open order."""
    slot = find_slot(st, oid)
    if slot < 0 or st.oi[slot, OI_LST] == L_DONE:
        return False
    _push_rq(st, st.ctr[C_NOW] + _entry_latency(st), RQ_AMEND, slot, px, qty)
    return True


@njit(cache=True)
def cancel_all(st, i):
    """Cancel every live order on instrument ``i`` (all instruments if ``i < 0``)."""
    n = 0
    for slot in range(st.ctr[C_HW]):
        lst = st.oi[slot, OI_LST]
        if (lst == L_PENDING or lst == L_OPEN) and (i < 0 or st.oi[slot, OI_INST] == i):
            _push_rq(st, st.ctr[C_NOW] + _entry_latency(st), RQ_CANCEL, slot, st.oi[slot, OI_PX], 0.0)
            n += 1
    return n


@njit(cache=True)
def open_orders(st, i, side):
    """Number of live (pending or open) orders on instrument ``i`` and ``side`` (0 = both)."""
    n = 0
    for slot in range(st.ctr[C_HW]):
        lst = st.oi[slot, OI_LST]
        if (lst == L_PENDING or lst == L_OPEN) and st.oi[slot, OI_INST] == i:
            if side == 0 or st.oi[slot, OI_SIDE] == side:
                n += 1
    return n


@njit(cache=True)
def set_timer(st, interval):
    """Call the strategy every ``interval`` µs of local time (0 stops the timer)."""
    st.ctr[C_TIMER_IV] = interval
    st.ctr[C_TIMER_NEXT] = st.ctr[C_NOW] + interval if interval > 0 else INF


@njit(cache=True)
def noop_strategy(st, code, i, slot, params, mem):
    return


# -- the loop -------------------------------------------------------------------------
DONE = -1
GROW = -2  # the fill/order logs are nearly full: the caller enlarges them and calls again
MAX_WALK = 1024  # levels a taker order is assumed to walk at most when reserving log room


@njit(cache=True)
def needs_room(st):
    """True when one more step could overflow the fill or order-event log."""
    margin = 2 * st.oi.shape[0] + MAX_WALK + 16
    return st.ctr[C_NLOG] + margin >= st.lg.shape[0] or st.ctr[C_NFILL] + margin >= st.fl.shape[0]



@njit(cache=True, inline="always")
def _release(oi, free, slot):
    """Return order ``slot`` to the free list once the exchange and the strategy are both
    done with it and no message about it is in flight."""
    if oi[slot, OI_XST] == X_DONE and oi[slot, OI_LST] == L_DONE and oi[slot, OI_PEND] == 0:
        oi[slot, OI_XST] = X_FREE
        oi[slot, OI_LST] = L_FREE
        top = free[-1]
        free[top] = slot
        free[-1] = top + 1


@njit(cache=True, nogil=True)
def step(st, ts_x, ts_l, kind, inst, side, px, qty, lorder, t_stop, want):
    """Advance through scheduled items (market events, requests, responses, samples, timers).

    Processes items until one needs a strategy callback the caller wants
    (``want[code] != 0``) and returns its code; returns ``DONE`` when nothing
    more is due up to ``t_stop`` and ``GROW`` when the logs must be enlarged
    first (see ``Engine.feed``). For a callback, ``st.cb = [code, inst,
    slot/event index, order id, response kind, px ticks, maker, side]`` and
    ``st.cbf = [qty, fee]`` describe it. Order
    slots are recycled as soon as both sides are done, so a fill/order callback
    must read ``st.cb``/``st.cbf``, not the slot.

    Market events due before anything else are replayed in a tight inner loop
    (the common case: most of a run is book rows that concern no order of
    ours and no callback); the other items are scheduled one at a time.
    """
    n = ts_x.shape[0]
    ctr = st.ctr
    oi = st.oi
    bq, bits, meta = st.bq, st.bbits, st.bmeta
    # the state fields the loop uses, read once: every read of a field of ``st`` is an atomic
    # reference-count update, and those were most of the time spent per order event
    rq, rqf, rp, rpf, cb, cbf, free = st.rq, st.rqf, st.rp, st.rpf, st.cb, st.cbf, st.free
    margin = 2 * oi.shape[0] + MAX_WALK + 16
    log_room = st.lg.shape[0] - margin  # the logs are enlarged only between calls
    fill_room = st.fl.shape[0] - margin
    want_book = want[CB_BOOK] != 0
    want_trade = want[CB_TRADE] != 0
    while True:
        if ctr[C_NLOG] >= log_room or ctr[C_NFILL] >= fill_room:  # needs_room(st)
            return GROW
        # the earliest request and response in flight (inline: a call per item costs more)
        krq, trq, sq = -1, INF, INF
        for j in range(ctr[C_NRQ]):
            tj = rq[j, RQ_T]
            if tj < trq or (tj == trq and rq[j, RQ_SEQ] < sq):
                krq, trq, sq = j, tj, rq[j, RQ_SEQ]
        krp, trp, sq = -1, INF, INF
        for j in range(ctr[C_NRP]):
            tj = rp[j, RP_T]
            if tj < trp or (tj == trp and rp[j, RP_SEQ] < sq):
                krp, trp, sq = j, tj, rp[j, RP_SEQ]
        tt = ctr[C_TIMER_NEXT]
        te = ctr[C_EQ_NEXT]
        hw = ctr[C_HW]
        # -- market events. At equal times exchange data comes first; local data
        # after requests, equity samples and responses, before the timer.
        hx = min(min(trq, te), min(trp, tt), t_stop)  # an exchange row is due while tx <= hx (and <= tl)
        hl = min(min(trq, te), trp)  # a local row is due while tl < hl, tl <= tt, tl <= t_stop
        hlt = min(tt, t_stop)
        ix = ctr[C_IEX]
        il = ctr[C_ILO]
        tx = ts_x[ix] if ix < n else INF
        tl = ts_l[lorder[il]] if il < n else INF
        now = ctr[C_NOW]
        nev = 0
        code = CB_NONE
        touched = False
        while True:
            # the next market row: exchange (book 0) or local (book 1)
            if tx <= tl:
                if tx > hx or tx >= INF:
                    break
                k = ix
                b = 0
                now = tx
                ix += 1
                tx = ts_x[ix] if ix < n else INF
            else:
                if tl >= hl or tl > hlt:
                    break
                k = lorder[il]
                b = 1
                now = tl
                il += 1
                nev += 1
                tl = ts_l[lorder[il]] if il < n else INF
            i = inst[k]
            kd = kind[k]
            p = px[k]
            q = qty[k]
            if kd == EV_TRADE:
                if b == 1:
                    if want_trade:
                        code = CB_TRADE
                else:
                    aggr = side[k]
                    for slot in range(hw):  # does the trade reach a resting order of ours?
                        if oi[slot, OI_XST] != X_RESTING or oi[slot, OI_INST] != i:
                            continue
                        oside = oi[slot, OI_SIDE]
                        opx = oi[slot, OI_PX]
                        if oside != aggr and ((oside == BUY and opx >= p) or (oside == SELL and opx <= p)):
                            touched = True
                            break
                    if touched:
                        nrp = ctr[C_NRP]
                        ctr[C_NOW] = now
                        _exch_trade(st, i, aggr, p, q)
                        touched = ctr[C_NRP] != nrp  # a fill: its response may be due first
            else:
                sd = BID if side[k] == BUY else ASK
                # -- the depth change, inline (a call costs more than the update; see "books")
                if kd == EV_SNAPSHOT:
                    if meta[i, M_SNAP + b] != ts_x[k]:
                        book_clear(bq, bits, meta, b, i)
                        meta[i, M_SNAP + b] = ts_x[k]
                else:
                    meta[i, M_SNAP + b] = -1
                x = p - meta[i, M_LO]
                w = meta[i, M_W]
                prev = 0.0
                if x < 0 or x >= w:
                    ctr[C_DROPPED] += 1 - b  # count each row once (both books drop it)
                else:
                    r = 2 * b + sd
                    c = meta[i, M_OFF] + r * w + x
                    prev = bq[c]
                    top = meta[i, M_TOP + r]
                    if q <= 0.0:
                        if prev != 0.0:
                            bq[c] = 0.0
                            bits[c >> 6] &= ~(_ONE << np.uint64(c & 63))
                            if p == top:
                                t = _next_price(bits, meta, i, r, sd, p)
                                meta[i, M_TOP + r] = t
                                if t < 0:
                                    meta[i, M_EXT + r] = -1
                    else:
                        bq[c] = q
                        if prev == 0.0:
                            bits[c >> 6] |= _ONE << np.uint64(c & 63)
                        if top < 0:
                            meta[i, M_TOP + r] = p
                            meta[i, M_EXT + r] = p
                        elif sd == BID:
                            if p > top:
                                meta[i, M_TOP + r] = p
                            elif p < meta[i, M_EXT + r]:
                                meta[i, M_EXT + r] = p
                        else:
                            if p < top:
                                meta[i, M_TOP + r] = p
                            elif p > meta[i, M_EXT + r]:
                                meta[i, M_EXT + r] = p
                if b == 1:
                    if want_book:
                        # one callback per message: wait for the last row with the same time and instrument
                        code = CB_BOOK
                        if il < n:
                            k2 = lorder[il]
                            if ts_l[k2] == now and inst[k2] == i and kind[k2] != EV_TRADE:
                                code = CB_NONE
                else:
                    for slot in range(hw):  # does the change concern a resting order of ours?
                        if oi[slot, OI_XST] != X_RESTING or oi[slot, OI_INST] != i:
                            continue
                        oside = oi[slot, OI_SIDE]
                        opx = oi[slot, OI_PX]
                        if (oside == BUY and sd == BID) or (oside == SELL and sd == ASK):
                            if opx == p:
                                touched = True
                                break
                        elif q > 0.0 and ((oside == BUY and p <= opx) or (oside == SELL and p >= opx)):
                            touched = True
                            break
                    if touched:
                        nrp = ctr[C_NRP]
                        ctr[C_NOW] = now
                        _exch_depth(st, i, sd, p, q, prev)
                        touched = ctr[C_NRP] != nrp  # a fill: its response may be due first
            if touched:  # new responses may be due before the next row: schedule again
                break
            if code != CB_NONE:
                cb[0] = code
                cb[1] = i
                cb[2] = k
                cb[3] = -1
                cb[7] = side[k]
                break
        ctr[C_IEX] = ix
        ctr[C_ILO] = il
        ctr[C_NEVENTS] += nev
        ctr[C_NOW] = now
        if code != CB_NONE:
            return code
        if touched:
            continue
        # -- one order request, equity sample, response or timer tick
        t = min(min(trq, te), min(trp, tt))
        if t > t_stop or t >= INF:
            return DONE
        ctr[C_NOW] = t
        code = CB_NONE
        ci = -1
        cslot = -1
        if trq == t:
            rslot = rq[krq, RQ_SLOT]
            _arrive_request(st, krq, t)
            last = ctr[C_NRQ] - 1
            for c in range(rq.shape[1]):  # element loops: no array views (see submit)
                rq[krq, c] = rq[last, c]
            rqf[krq, 0] = rqf[last, 0]
            ctr[C_NRQ] = last
            _release(oi, free, rslot)
            continue
        if te == t:
            _sample_equity(st, t)
            ctr[C_EQ_NEXT] = t + ctr[C_EQ_IV]
            continue
        if trp == t:
            code, cslot = _deliver(st, krp)
            ci = oi[cslot, OI_INST]
            cb[3] = oi[cslot, OI_ID]
            cb[4] = rp[krp, RP_KIND]
            cb[5] = rp[krp, RP_PX]
            cb[6] = rp[krp, RP_MAKER]
            cb[7] = oi[cslot, OI_SIDE]
            cbf[0] = rpf[krp, 0]
            cbf[1] = rpf[krp, 1]
            last = ctr[C_NRP] - 1
            for c in range(rp.shape[1]):
                rp[krp, c] = rp[last, c]
            rpf[krp, 0] = rpf[last, 0]
            rpf[krp, 1] = rpf[last, 1]
            ctr[C_NRP] = last
            _release(oi, free, cslot)
        else:
            code = CB_TIMER
            iv = ctr[C_TIMER_IV]
            ctr[C_TIMER_NEXT] = t + iv if iv > 0 else INF
            cb[3] = -1
        if want[code] == 0:
            continue
        cb[0] = code
        cb[1] = ci
        cb[2] = cslot
        return code


@njit(cache=True, nogil=True)
def run_loop_py(st, ts_x, ts_l, kind, inst, side, px, qty, lorder, t_stop, want):
    """Run until ``t_stop`` or until a callback the Python strategy wants (returned)."""
    while True:
        code = step(st, ts_x, ts_l, kind, inst, side, px, qty, lorder, t_stop, want)
        if code == DONE:
            return CB_NONE
        if code != CB_NONE:
            return code  # a callback for Python, or GROW


@njit(cache=True)
def run_loop(st, ts_x, ts_l, kind, inst, side, px, qty, lorder, t_stop, want, strat, params, mem):
    """Run to ``t_stop`` calling the numba strategy ``strat(st, code, inst, slot, params, mem)``.

    Numba keys its disk cache on argument types, and a function-typed
    argument is not cacheable: this generic form compiles in every process.
    For a cached fast path write a module-level twin naming the strategy as a
    global, as ``strategies.mm_fast_loop`` does::

        @njit(cache=True)
        def my_loop(st, ts_x, ts_l, kind, inst, side, px, qty, lorder, t_stop, want, params, mem):
            while True:
                code = core.step(st, ts_x, ts_l, kind, inst, side, px, qty, lorder, t_stop, want)
                if code == core.DONE:
                    return 0
                if code == core.GROW:
                    return core.GROW
                if code != core.CB_NONE:
                    my_strategy(st, code, st.cb[1], st.cb[2], params, mem)

    Numba's disk cache knows only the file a function is defined in: such a
    twin's cached machine code embeds this module's ``step`` and is not
    recompiled when only this file changes (unless the state's types change).
    After editing this module, delete the twin module's ``__pycache__/*.nbi``
    and ``*.nbc`` files.
    """
    while True:
        code = step(st, ts_x, ts_l, kind, inst, side, px, qty, lorder, t_stop, want)
        if code == DONE:
            return CB_NONE
        if code == GROW:
            return GROW
        if code != CB_NONE:
            strat(st, code, st.cb[1], st.cb[2], params, mem)
