"""Peer check against hftbacktest (https://github.com/nkaz001/hftbacktest).

:func:`to_hftbacktest` converts one instrument of our :class:`Events` into
hftbacktest's event array (``event_dtype``: ev flags, exch_ts, local_ts, px,
qty; times in ns); :func:`run_hftbacktest_mm` runs the same timer market
maker as :func:`lab.backtest.strategies.mm_fast_fn` (``half_spread=0``,
``skew_ticks=0``) in hftbacktest with the same latency, risk-averse queue
model, partial fills and fees, and returns its fills and PnL figures.

hftbacktest is a test-extra dependency (``pip install -e .[test]``); this
module imports it only inside the functions.

Known, documented differences (why the comparison needs a tolerance):

* **timer phase**: hftbacktest's ``elapse`` counts from the first local
  timestamp it has seen; ours from the first exchange timestamp. We start our
  timer at the same instant (``start_us``) to remove this.
* **crossing fills**: when the opposite side of the book moves through a
  resting order, hftbacktest and we both fill it at the order's price; we do so
  on any depth row at or through our price, hftbacktest only when the best
  price moves, so a few fills can land one event apart.
* **taker orders** never occur in this strategy (post-only quotes), so book
  walking does not enter the comparison.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from lab.backtest import core
from lab.backtest.data import Events

__all__ = ["to_hftbacktest", "run_hftbacktest_mm", "HBT_EVENT_DTYPE"]

# hftbacktest.types constants (copied so converting does not need the package)
_EXCH, _LOCAL = 1 << 31, 1 << 30
_BUY, _SELL = 1 << 29, 1 << 28
_DEPTH, _TRADE = 1, 2
HBT_EVENT_DTYPE = np.dtype([("ev", "<u8"), ("exch_ts", "<i8"), ("local_ts", "<i8"), ("px", "<f8"),
                            ("qty", "<f8"), ("order_id", "<u8"), ("ival", "<i8"), ("fval", "<f8")], align=True)


def to_hftbacktest(ev: Events, inst: int) -> np.ndarray:
    """Rows of instrument ``inst`` as an hftbacktest event array (ns timestamps).

    Book rows become ``DEPTH_EVENT`` (bid → BUY, ask → SELL; snapshot rows too:
    the book starts empty, as ours does), trades ``TRADE_EVENT`` with the
    aggressor's side. Every row is both an exchange and a local event.
    """
    m = ev.inst == inst
    kind, side = ev.kind[m], ev.side[m]
    out = np.zeros(int(m.sum()), HBT_EVENT_DTYPE)
    flags = np.where(kind == core.EV_TRADE, _TRADE, _DEPTH).astype(np.uint64)
    flags |= np.where(side > 0, _BUY, _SELL).astype(np.uint64)
    out["ev"] = flags | np.uint64(_EXCH | _LOCAL)
    out["exch_ts"] = ev.ts_x[m] * 1000
    out["local_ts"] = ev.ts_l[m] * 1000
    out["px"] = ev.px[m] * ev.instruments[inst].tick
    out["qty"] = ev.qty[m]
    return out


@njit  # not cacheable: hftbacktest's handle holds ctypes pointers
def _hbt_mm(hbt, interval_ns, qty, max_pos, tick, out):
    oid = 0
    n = 0
    while hbt.elapse(interval_ns) == 0:
        hbt.clear_inactive_orders(0)
        depth = hbt.depth(0)
        orders = hbt.orders(0)
        values = orders.values()
        while values.has_next():
            o = values.get()
            if o.cancellable:
                hbt.cancel(0, o.order_id, False)
        bb = depth.best_bid_tick
        ba = depth.best_ask_tick
        if depth.best_bid_qty <= 0.0 or depth.best_ask_qty <= 0.0:
            continue
        pos = hbt.position(0)
        if pos < max_pos:
            oid += 1
            hbt.submit_buy_order(0, oid, min(bb, ba - 1) * tick, qty, 1, 0, False)  # GTX (post-only), LIMIT
        if pos > -max_pos:
            oid += 1
            hbt.submit_sell_order(0, oid, max(ba, bb + 1) * tick, qty, 1, 0, False)
        if n < out.shape[0]:
            out[n, 0] = hbt.current_timestamp
            out[n, 1] = pos
            n += 1
    return n


def run_hftbacktest_mm(ev: Events, inst: int, *, qty: float, max_position: float, interval_s: float,
                       entry_us: float, response_us: float, maker_fee: float, taker_fee: float,
                       queue: str = "risk_averse", book: str = "roivector") -> dict[str, Any]:
    """Run the peer market maker in hftbacktest; returns its final state values and timing.

    ``book="roivector"`` (default) is hftbacktest's fastest depth, a price vector
    over a range of interest (set here to the day's price range plus a margin);
    ``"hashmap"`` its general one. Both give the same fills.
    """
    import time

    from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest, ROIVectorMarketDepthBacktest

    data = to_hftbacktest(ev, inst)
    ins = ev.instruments[inst]
    asset = (BacktestAsset().data(data).linear_asset(1.0)
             .constant_order_latency(int(entry_us * 1000), int(response_us * 1000))
             .partial_fill_exchange().trading_value_fee_model(maker_fee, taker_fee)
             .tick_size(ins.tick).lot_size(ins.lot).last_trades_capacity(0))
    asset = asset.risk_adverse_queue_model() if queue == "risk_averse" else asset.power_prob_queue_model(2.0)
    if book == "roivector":
        px = data["px"][data["px"] > 0]
        margin = 0.05 * float(px.max() - px.min()) + 100 * ins.tick
        asset = asset.roi_lb(float(px.min()) - margin).roi_ub(float(px.max()) + margin)
        hbt = ROIVectorMarketDepthBacktest([asset])
    elif book == "hashmap":
        hbt = HashMapMarketDepthBacktest([asset])
    else:
        raise ValueError(f"book must be 'roivector' or 'hashmap', got {book!r}")
    out = np.zeros((int((ev.end - ev.start) / (interval_s * 1e6)) + 10, 2))
    t0, c0 = time.perf_counter(), time.thread_time()
    n = _hbt_mm(hbt, int(interval_s * 1e9), qty, max_position, ins.tick, out)
    elapsed, cpu = time.perf_counter() - t0, time.thread_time() - c0
    sv = hbt.state_values(0)
    depth = hbt.depth(0)
    mid = 0.5 * (depth.best_bid + depth.best_ask)
    res = {
        "position": float(sv.position), "balance": float(sv.balance), "fee": float(sv.fee),
        "num_trades": int(sv.num_trades), "trading_volume": float(sv.trading_volume),
        "trading_value": float(sv.trading_value), "mid": float(mid),
        "equity": float(sv.balance + sv.position * mid - sv.fee),
        "ticks": out[:n].copy(), "elapsed_s": elapsed, "cpu_s": cpu, "events": int(data.shape[0]),
    }
    hbt.close()
    return res
