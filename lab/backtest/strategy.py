"""The strategy API shared by the backtest and the paper runner.

Two ways to write a strategy:

* **Python** (flexible): subclass :class:`Strategy` and override the callbacks
  you need (``on_start``, ``on_book``, ``on_trade``, ``on_fill``, ``on_order``,
  ``on_timer``). Each receives a :class:`Context` to read books, positions and
  balances and to ``place``/``amend``/``cancel`` orders. List the callbacks you
  use in ``callbacks``: the compiled loop only stops for those (a strategy
  that only needs a timer runs at compiled speed between timer ticks).
* **Numba** (fast path, >1M events/s): a :class:`FastStrategy` wrapping an
  ``@njit`` function ``fn(st, code, inst, slot, params, mem)`` called inline by
  the compiled loop with the codes of :mod:`lab.backtest.core` (``CB_*``);
  give it ``loop=``, a 3-line ``@njit(cache=True)`` wrapper calling
  ``core.run_loop(..., fn, params, mem)`` (see ``strategies.mm_fast_loop``), so
  the specialised loop is cached on disk instead of compiled in every process. It
  uses the helpers ``core.submit/cancel/amend/cancel_all/best/open_orders/
  set_timer`` directly on the state ``st``; ``params`` is a float64 array of
  parameters, ``mem`` a float64 scratch array kept between calls.

Both paths run through the same matching, latency, queue and fee code.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import numpy as np

from lab.backtest import core

__all__ = ["Strategy", "FastStrategy", "Context", "Fill", "OrderUpdate", "Trade"]

_TIF = {"gtc": core.GTC, "post_only": core.POST_ONLY, "ioc": core.IOC, "fok": core.FOK}
_SIDE = {"buy": core.BUY, "sell": core.SELL}


@dataclasses.dataclass(frozen=True)
class Trade:
    venue: str
    symbol: str
    ts_exchange: int
    ts_local: int
    price: float
    qty: float
    side: str  # aggressor


@dataclasses.dataclass(frozen=True)
class Fill:
    order_id: int
    venue: str
    symbol: str
    side: str
    price: float
    qty: float
    fee: float
    liquidity: str  # maker or taker
    ts_local: int


@dataclasses.dataclass(frozen=True)
class OrderUpdate:
    order_id: int
    venue: str
    symbol: str
    event: str  # ack, amended, canceled, rejected, expired, cancel_rejected
    ts_local: int


def _cast(key: str, value: Any, default: Any) -> Any:
    """``value`` (often CLI text) as the type of ``default``; a bad value names the parameter.

    >>> _cast("qty", "0.5", 0.01), _cast("half_spread", "2", 0), _cast("on", "yes", False)
    (0.5, 2, True)
    >>> _cast("qty", "lots", 0.01)
    Traceback (most recent call last):
    ...
    lab.errors.ConfigError: -p qty='lots': expected a number (default 0.01)
    """
    from lab.errors import ConfigError

    if isinstance(default, bool):
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"-p {key}={value!r}: expected true or false (default {default})")
    if isinstance(default, (int, float)):
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"-p {key}={value!r}: expected a number (default {default})") from None
        if x != x or x in (float("inf"), float("-inf")):
            raise ConfigError(f"-p {key}={value!r}: expected a finite number (default {default})")
        if isinstance(default, int):
            if x != int(x):
                raise ConfigError(f"-p {key}={value!r}: expected a whole number (default {default})")
            return int(x)
        return x
    text = str(value).strip()
    if isinstance(default, str) and not text:
        raise ConfigError(f"-p {key}=: empty value (default {default!r})")
    return type(default)(text)


class Strategy:
    """Base class for Python strategies; every callback is optional.

    ``params`` holds the keyword arguments given at construction (the CLI's
    ``-p key=value``), cast to the types of the class attribute ``defaults``.
    """

    name: str = "strategy"
    defaults: dict[str, Any] = {}
    callbacks: frozenset[str] = frozenset({"book", "trade", "fill", "order", "timer"})
    loop: Callable | None = None  # an @njit(cache=True) wrapper of core.run_loop naming fn (see core)

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown parameter(s) {unknown}; "
                             f"known: {sorted(self.defaults)}")
        self.params: dict[str, Any] = {k: _cast(k, params[k], v) if k in params else v
                                       for k, v in self.defaults.items()}

    def instruments(self) -> list[tuple[str, str]]:
        """``(venue, symbol)`` pairs the strategy needs data for (from its ``venue``/``symbol`` params)."""
        if "venue" in self.params and "symbol" in self.params:
            return [(self.params["venue"], self.params["symbol"])]
        raise NotImplementedError(f"{type(self).__name__} must say which instruments it needs")

    def on_start(self, ctx: Context) -> None: ...
    def on_book(self, ctx: Context, venue: str, symbol: str) -> None: ...
    def on_trade(self, ctx: Context, trade: Trade) -> None: ...
    def on_fill(self, ctx: Context, fill: Fill) -> None: ...
    def on_order(self, ctx: Context, update: OrderUpdate) -> None: ...
    def on_timer(self, ctx: Context) -> None: ...


@dataclasses.dataclass
class FastStrategy:
    """A numba strategy: ``fn(st, code, inst, slot, params, mem)`` compiled with ``@njit``."""

    name: str
    fn: Callable
    params: np.ndarray
    mem_size: int = 64
    callbacks: frozenset[str] = frozenset({"book", "trade", "fill", "order", "timer"})
    loop: Callable | None = None  # an @njit(cache=True) wrapper of core.run_loop naming fn (see core)


class Context:
    """What a Python strategy sees and does (same object in backtest and paper mode)."""

    def __init__(self, st: core.EngineState, arrays: core.State, instruments: list, assets: list[str],
                 venues: list[str]) -> None:
        self._st = st  # numba handle, for core.* calls
        self._a = arrays  # the same arrays, for reads from Python
        self.instruments = instruments
        self._index = {(i.venue, i.symbol): k for k, i in enumerate(instruments)}
        self._assets = {a: k for k, a in enumerate(assets)}
        self._venues = {v: k for k, v in enumerate(venues)}
        self.config: Any = None  # the BacktestConfig in force (fees etc.)

    # -- reading ----------------------------------------------------------
    def inst(self, venue: str, symbol: str) -> int:
        try:
            return self._index[(venue, symbol)]
        except KeyError:
            raise KeyError(f"unknown instrument {venue}:{symbol}; have {sorted(self._index)}") from None

    @property
    def now(self) -> int:
        """Local time, µs since the epoch."""
        return int(self._a.ctr[core.C_NOW])

    @property
    def now_dt(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now / 1e6, dt.timezone.utc)

    def best_bid(self, venue: str, symbol: str) -> float | None:
        return self._best(venue, symbol, core.BID)

    def best_ask(self, venue: str, symbol: str) -> float | None:
        return self._best(venue, symbol, core.ASK)

    def _best(self, venue: str, symbol: str, side: int) -> float | None:
        i = self.inst(venue, symbol)
        p = self._a.bmeta[i, core.M_TOP + 2 + side]  # the local book's best price
        return None if p < 0 else float(p * self.instruments[i].tick)

    def best_qty(self, venue: str, symbol: str, side: str) -> float:
        i = self.inst(venue, symbol)
        s = core.BID if side == "bid" else core.ASK
        m = self._a.bmeta[i]  # the local book's row of instrument i (see core's books)
        p = m[core.M_TOP + 2 + s]
        return float(self._a.bq[m[core.M_OFF] + (2 + s) * m[core.M_W] + p - m[core.M_LO]]) if p >= 0 else 0.0

    def mid(self, venue: str, symbol: str) -> float | None:
        b, a = self.best_bid(venue, symbol), self.best_ask(venue, symbol)
        return None if b is None or a is None else 0.5 * (b + a)

    def depth(self, venue: str, symbol: str, levels: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Local book as two (n, 2) arrays of [price, qty]: bids high→low, asks low→high."""
        i = self.inst(venue, symbol)
        out = []
        for s in (core.BID, core.ASK):
            px, qty = core.book_depth(self._st, 1, i, s, levels)
            out.append(np.column_stack([px * self.instruments[i].tick, qty]))
        return out[0], out[1]

    def position(self, venue: str, symbol: str) -> float:
        """Base-asset position from the fills received so far (the strategy's view)."""
        return float(self._a.lpos[self.inst(venue, symbol)])

    def balance(self, venue: str, asset: str) -> float:
        """Exchange-side balance of ``asset`` at ``venue`` (starts at 0; may be negative)."""
        return float(self._a.bal[self._venues[venue], self._assets[asset]])

    def open_orders(self, venue: str, symbol: str, side: str | None = None) -> int:
        return int(core.open_orders(self._st, self.inst(venue, symbol), _SIDE.get(side or "", 0)))

    # -- acting -------------------------------------------------------------
    def place(self, venue: str, symbol: str, side: str, qty: float, price: float | None = None,
              tif: str = "gtc") -> int:
        """Send an order; ``price=None`` makes it a market order. Returns the order id.

        ``tif``: ``gtc``, ``post_only`` (rejected if it would cross), ``ioc``
        (fill what is available now, cancel the rest), ``fok`` (all or nothing).
        """
        if side not in _SIDE:
            raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
        if tif not in _TIF:
            raise ValueError(f"tif must be one of {sorted(_TIF)}, got {tif!r}")
        if not qty > 0:
            raise ValueError(f"qty must be positive, got {qty!r}")
        i = self.inst(venue, symbol)
        if price is None:
            return int(core.submit(self._st, i, _SIDE[side], 0, float(qty), core.MARKET, core.IOC))
        px = int(round(price / self.instruments[i].tick))
        return int(core.submit(self._st, i, _SIDE[side], px, float(qty), core.LIMIT, _TIF[tif]))

    def buy(self, venue: str, symbol: str, qty: float, price: float | None = None, tif: str = "gtc") -> int:
        return self.place(venue, symbol, "buy", qty, price, tif)

    def sell(self, venue: str, symbol: str, qty: float, price: float | None = None, tif: str = "gtc") -> int:
        return self.place(venue, symbol, "sell", qty, price, tif)

    def cancel(self, order_id: int) -> bool:
        return bool(core.cancel(self._st, int(order_id)))

    def amend(self, order_id: int, price: float, qty: float) -> bool:
        slot = int(core.find_slot(self._st, int(order_id)))
        if slot < 0:
            return False
        i = int(self._a.oi[slot, core.OI_INST])
        px = int(round(price / self.instruments[i].tick))
        return bool(core.amend(self._st, int(order_id), px, float(qty)))

    def cancel_all(self, venue: str | None = None, symbol: str | None = None) -> int:
        if venue is None:
            return int(core.cancel_all(self._st, -1))
        if symbol is None:
            return sum(int(core.cancel_all(self._st, k)) for k, ins in enumerate(self.instruments)
                       if ins.venue == venue)
        return int(core.cancel_all(self._st, self.inst(venue, symbol)))

    def set_timer(self, seconds: float) -> None:
        """Call ``on_timer`` every ``seconds`` of local time (0 stops it)."""
        core.set_timer(self._st, int(round(seconds * 1e6)))
