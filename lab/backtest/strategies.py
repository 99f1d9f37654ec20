"""Example strategies that ship with the lab (Python and numba versions).

* :class:`MarketMaker` — quotes both sides around the touch, shifted against
  its inventory (inventory skew), requoting on a timer. :func:`market_maker_fast`
  is the same logic as a numba strategy (the fast path used by the bench).
* :class:`CrossVenueArb` — a taker: buys the cheaper venue's ask and sells the
  dearer venue's bid when the spread between venues beats both taker fees.
* :class:`ImbalanceSignal` — takes liquidity when the microprice (size-weighted
  mid) leans far enough from the mid, exits after a holding time.

Each is runnable from the CLI: ``lab backtest mm --venue binance --symbol BTC-USDT ...``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from lab.backtest import core
from lab.backtest.strategy import Context, FastStrategy, Fill, Strategy

__all__ = ["MarketMaker", "CrossVenueArb", "ImbalanceSignal", "market_maker_fast", "mm_fast_fn", "mm_fast_loop",
           "STRATEGIES"]


class MarketMaker(Strategy):
    """Two-sided quotes ``half_spread`` ticks outside the touch, skewed by inventory.

    Every ``interval_s`` it cancels its quotes and posts new post-only ones at
    ``best_bid - half_spread - skew`` and ``best_ask + half_spread - skew``,
    where ``skew = skew_ticks * position / qty`` (long → both quotes lower, so
    it sells more readily). It stops quoting a side at ``max_position``.
    """

    name = "mm"
    defaults = {"venue": "binance", "symbol": "BTC-USDT", "qty": 0.01, "half_spread": 0,
                "skew_ticks": 1.0, "max_position": 0.05, "interval_s": 0.1}
    callbacks = frozenset({"timer"})

    def on_start(self, ctx: Context) -> None:
        ctx.set_timer(self.params["interval_s"])

    def on_timer(self, ctx: Context) -> None:
        p = self.params
        v, s = p["venue"], p["symbol"]
        bid, ask = ctx.best_bid(v, s), ctx.best_ask(v, s)
        if bid is None or ask is None:
            return
        ctx.cancel_all(v, s)
        tick = ctx.instruments[ctx.inst(v, s)].tick
        pos = ctx.position(v, s)
        skew = round(p["skew_ticks"] * pos / p["qty"])
        b = bid - (p["half_spread"] + skew) * tick
        a = ask + (p["half_spread"] - skew) * tick
        b = min(b, ask - tick)
        a = max(a, bid + tick)
        if pos < p["max_position"]:
            ctx.buy(v, s, p["qty"], b, tif="post_only")
        if pos > -p["max_position"]:
            ctx.sell(v, s, p["qty"], a, tif="post_only")


@njit(cache=True)
def mm_fast_fn(st, code, i, slot, p, mem):
    """numba twin of :class:`MarketMaker`; ``p = [inst, qty, half_spread, skew_ticks, max_position, interval_us]``."""
    inst = np.int64(p[0])
    if code == core.CB_START:
        core.set_timer(st, np.int64(p[5]))
        return
    if code != core.CB_TIMER:
        return
    b = core.best(st, 1, inst, core.BID)
    a = core.best(st, 1, inst, core.ASK)
    if b < 0 or a < 0:
        return
    core.cancel_all(st, inst)
    pos = st.lpos[inst]
    skew = np.int64(np.round(p[3] * pos / p[1]))
    half = np.int64(p[2])
    bid = min(b - half - skew, a - 1)
    ask = max(a + half - skew, b + 1)
    if pos < p[4]:
        core.submit(st, inst, core.BUY, bid, p[1], core.LIMIT, core.POST_ONLY)
    if pos > -p[4]:
        core.submit(st, inst, core.SELL, ask, p[1], core.LIMIT, core.POST_ONLY)


# duplicates: core.run_loop's docstring shows this loop on purpose (a cached loop must name its
# strategy as a global, so each fast strategy has its own copy).
@njit(cache=True, nogil=True)
def mm_fast_loop(st, ts_x, ts_l, kind, inst, side, px, qty, lorder, t_stop, want, params, mem):
    """The compiled loop calling :func:`mm_fast_fn` (cached on disk; see ``core.run_loop``)."""
    while True:
        code = core.step(st, ts_x, ts_l, kind, inst, side, px, qty, lorder, t_stop, want)
        if code == core.DONE:
            return 0
        if code == core.GROW:
            return core.GROW
        if code != core.CB_NONE:
            mm_fast_fn(st, code, st.cb[1], st.cb[2], params, mem)


def market_maker_fast(inst: int, *, qty: float = 0.01, half_spread: int = 0, skew_ticks: float = 1.0,
                      max_position: float = 0.05, interval_s: float = 0.1) -> FastStrategy:
    """The fast-path market maker on instrument index ``inst`` (see :meth:`Events.index`)."""
    return FastStrategy("mm_fast", mm_fast_fn,
                        np.array([inst, qty, half_spread, skew_ticks, max_position, round(interval_s * 1e6)],
                                 np.float64), callbacks=frozenset({"timer"}), loop=mm_fast_loop)


class CrossVenueArb(Strategy):
    """Cross-venue taker: buy where the ask is low, sell where the bid is high.

    On each book change of ``symbols`` (one per venue, same asset; USD and
    USDT treated alike), if ``bid_B / ask_A - 1`` exceeds both venues' taker
    fees plus ``min_edge_bps``, send IOC orders for ``qty`` on both legs
    (capped by the top-of-book sizes), unless the position limit is reached.
    It rebalances nothing: positions per venue are reported as they are.
    """

    name = "arb"
    defaults = {"legs": "binance:BTC-USDT,coinbase:BTC-USD,kraken:BTC-USD", "qty": 0.01,
                "min_edge_bps": 2.0, "max_position": 0.1, "cooldown_s": 0.05}
    callbacks = frozenset({"book"})

    def instruments(self) -> list[tuple[str, str]]:
        out = []
        for x in self.params["legs"].split(","):
            if x.count(":") != 1:
                raise ValueError(f"arb: legs must be venue:SYMBOL,venue:SYMBOL..., got {x!r}")
            out.append(tuple(x.split(":")))
        return out

    def on_start(self, ctx: Context) -> None:
        self.legs = [leg for leg in self.instruments() if leg in ctx._index]
        self.fees: dict[str, float] = {}
        from lab.backtest.engine import BacktestConfig

        self.cfg = getattr(ctx, "config", None) or BacktestConfig()
        self.last = -(2**62)

    def on_book(self, ctx: Context, venue: str, symbol: str) -> None:
        p = self.params
        if ctx.now - self.last < p["cooldown_s"] * 1e6:
            return
        quotes = []
        for v, s in self.legs:
            b, a = ctx.best_bid(v, s), ctx.best_ask(v, s)
            if b is not None and a is not None:
                quotes.append((v, s, b, a, ctx.best_qty(v, s, "bid"), ctx.best_qty(v, s, "ask")))
        best = None
        for bv in quotes:
            for sv in quotes:
                if bv[0] == sv[0]:
                    continue
                edge = (sv[2] / bv[3] - 1) * 1e4
                cost = (self.cfg.fee(bv[0]).taker + self.cfg.fee(sv[0]).taker) * 1e4 + p["min_edge_bps"]
                if edge > cost and (best is None or edge > best[0]):
                    best = (edge, bv, sv)
        if best is None:
            return
        _, bv, sv = best
        if ctx.position(bv[0], bv[1]) >= p["max_position"] or ctx.position(sv[0], sv[1]) <= -p["max_position"]:
            return
        q = min(p["qty"], bv[5], sv[4])
        if q <= 0:
            return
        ctx.buy(bv[0], bv[1], q, bv[3], tif="ioc")
        ctx.sell(sv[0], sv[1], q, sv[2], tif="ioc")
        self.last = ctx.now


class ImbalanceSignal(Strategy):
    """Microprice/imbalance taker.

    ``microprice = (bid * ask_qty + ask * bid_qty) / (bid_qty + ask_qty)``;
    when ``(microprice - mid) / spread`` exceeds ``threshold`` (or is below
    ``-threshold``) and it is flat, it crosses the spread for ``qty`` with an
    IOC at the touch; it closes the position after ``hold_s`` seconds.
    """

    name = "imbalance"
    defaults = {"venue": "binance", "symbol": "BTC-USDT", "qty": 0.01, "threshold": 0.3,
                "hold_s": 2.0}
    callbacks = frozenset({"book", "fill"})

    def on_start(self, ctx: Context) -> None:
        self.entered: int | None = None
        self.pending = False

    def on_fill(self, ctx: Context, fill: Fill) -> None:
        self.pending = False
        if ctx.position(fill.venue, fill.symbol) != 0 and self.entered is None:
            self.entered = ctx.now
        elif abs(ctx.position(fill.venue, fill.symbol)) < 1e-12:
            self.entered = None

    def on_book(self, ctx: Context, venue: str, symbol: str) -> None:
        p = self.params
        if venue != p["venue"] or symbol != p["symbol"]:
            return
        bid, ask = ctx.best_bid(venue, symbol), ctx.best_ask(venue, symbol)
        if bid is None or ask is None or ask <= bid:
            return
        pos = ctx.position(venue, symbol)
        if ctx.open_orders(venue, symbol):
            return
        if abs(pos) > 1e-12:
            if self.entered is not None and ctx.now - self.entered >= p["hold_s"] * 1e6:
                if pos > 0:
                    ctx.sell(venue, symbol, pos, bid, tif="ioc")
                else:
                    ctx.buy(venue, symbol, -pos, ask, tif="ioc")
            return
        bq, aq = ctx.best_qty(venue, symbol, "bid"), ctx.best_qty(venue, symbol, "ask")
        micro = (bid * aq + ask * bq) / (bq + aq)
        sig = (micro - 0.5 * (bid + ask)) / (ask - bid)
        if sig > p["threshold"]:
            ctx.buy(venue, symbol, p["qty"], ask, tif="ioc")
        elif sig < -p["threshold"]:
            ctx.sell(venue, symbol, p["qty"], bid, tif="ioc")


STRATEGIES: dict[str, type[Strategy]] = {"mm": MarketMaker, "arb": CrossVenueArb, "imbalance": ImbalanceSignal,
                                         # long names (``lab demo`` runs ``lab paper market_maker``)
                                         "market_maker": MarketMaker, "cross_venue_arb": CrossVenueArb}
