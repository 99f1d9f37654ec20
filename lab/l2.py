"""The one L2 order book and the one book walk, in plain Python.

:class:`Book` is the book the recorders keep per instrument (``recorders.book``
re-exports it; the venue rules around it stay in ``recorders/venues``) and the
live arbitrage detector keeps per venue/symbol (:mod:`lab.arbitrage.live`).
:func:`walk` is the price of a market order walking a book's levels, and
:func:`spend` the base bought with a quote amount; every other walk in the
library is a twin of these two that its host forces on it, each with a comment
naming its sibling here and a test that the two agree on random books:

* :func:`lab.book.walk_nb` / :func:`lab.book.spend_nb`: numba twins for the
  compiled kernels (numba cannot call Python);
* :func:`lab.book.walk_expr` / :func:`lab.arbitrage.walk_spend`: Polars
  expression twins on wide books (columnar, no Python per row);
* :func:`lab.book._apply`: the numba twin of :meth:`Book.set` inside
  :func:`lab.book.rebuild`;
* ``lab.backtest.core._take``: the engine's matching walk, which fills an
  order level by level on its tick-indexed book (it consumes the order, not a
  size, and logs each fill).

No numba or Polars here: the recorders import this module.

>>> b = Book()
>>> b.set("bid", 100.0, 2.0); b.set("bid", 101.0, 1.0); b.set("ask", 102.0, 3.0)
>>> b.top()
(101.0, 1.0, 102.0, 3.0)
>>> b.set("bid", 101.0, 0.0)   # size 0 deletes the level
>>> b.levels("bid", 5)
[(100.0, 2.0)]
>>> bp, bq, ap, aq = b.top_levels(2)
>>> walk(ap, aq, 2.0), walk(bp, bq, 1.0)
(102.0, 100.0)
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

__all__ = ["Book", "walk", "spend", "THIN"]

_NAN = float("nan")

#: A side holds enough for an order when its levels sum to at least ``size * THIN``
#: (float sums of level sizes may fall a hair short of a size they cover).
THIN = 1 - 1e-12


class Book:
    """One instrument's L2 book: absolute sizes; a size that is not > 0 deletes the level.

    Prices are kept in ascending Python lists (``bisect`` insertion is a C
    memmove, faster than a tree for the few hundred levels a venue sends) with
    a dict of price -> size beside them: the best bid is ``bid_px[-1]``, the
    best ask ``ask_px[0]``. Venues whose checksums need the numbers' text
    exactly as sent (Kraken, OKX) store it alongside (``txt``).

    The same rules as :func:`lab.book.rebuild`'s compiled kernel (its twin):
    a size of 0 (or below, or NaN) deletes, deleting a level the book does
    not hold does nothing.
    """

    __slots__ = ("bid_px", "ask_px", "bid_qty", "ask_qty", "bid_txt", "ask_txt")

    def __init__(self) -> None:
        self.bid_px: list[float] = []  # ascending; best bid is the last
        self.ask_px: list[float] = []  # ascending; best ask is the first
        self.bid_qty: dict[float, float] = {}
        self.ask_qty: dict[float, float] = {}
        self.bid_txt: dict[float, tuple[str, str]] = {}
        self.ask_txt: dict[float, tuple[str, str]] = {}

    def clear(self) -> None:
        self.bid_px.clear(); self.ask_px.clear()
        self.bid_qty.clear(); self.ask_qty.clear()
        self.bid_txt.clear(); self.ask_txt.clear()

    def set(self, side: str, price: float, qty: float, txt: tuple[str, str] | None = None) -> None:
        """Set the absolute size at ``price`` on ``side`` (``"bid"``, else ask); not > 0 deletes."""
        if side == "bid":
            pxs, qtys, txts = self.bid_px, self.bid_qty, self.bid_txt
        else:
            pxs, qtys, txts = self.ask_px, self.ask_qty, self.ask_txt
        if not qty > 0.0:
            if price in qtys:
                del qtys[price]
                txts.pop(price, None)
                pxs.pop(bisect_left(pxs, price))
            return
        if price not in qtys:
            pxs.insert(bisect_left(pxs, price), price)
        qtys[price] = qty
        if txt is not None:
            txts[price] = txt

    def truncate(self, depth: int) -> list[tuple[str, float]]:
        """Keep the best ``depth`` levels per side (Kraken sends no removals past its
        depth); return the ``(side, price)`` levels dropped.

        >>> b = Book(); b.set("ask", 1.0, 1.0); b.set("ask", 2.0, 1.0); b.set("bid", 0.5, 1.0)
        >>> b.truncate(1), b.levels("ask", 5)
        ([('ask', 2.0)], [(1.0, 1.0)])
        """
        out: list[tuple[str, float]] = []
        n = len(self.bid_px) - depth
        if n > 0:
            for p in self.bid_px[:n]:
                del self.bid_qty[p]
                self.bid_txt.pop(p, None)
                out.append(("bid", p))
            del self.bid_px[:n]
        if len(self.ask_px) > depth:
            for p in self.ask_px[depth:]:
                del self.ask_qty[p]
                self.ask_txt.pop(p, None)
                out.append(("ask", p))
            del self.ask_px[depth:]
        return out

    def top(self) -> tuple[float, float, float, float]:
        """(bid_px, bid_qty, ask_px, ask_qty); NaN on an empty side."""
        if self.bid_px:
            bp = self.bid_px[-1]; bq = self.bid_qty[bp]
        else:
            bp = bq = _NAN
        if self.ask_px:
            ap = self.ask_px[0]; aq = self.ask_qty[ap]
        else:
            ap = aq = _NAN
        return bp, bq, ap, aq

    def levels(self, side: str, n: int) -> list[tuple[float, float]]:
        """Best ``n`` levels of ``side`` as ``(price, size)``, best first."""
        if side == "bid":
            q = self.bid_qty
            return [(p, q[p]) for p in self.bid_px[: -n - 1 : -1]] if n else []
        q = self.ask_qty
        return [(p, q[p]) for p in self.ask_px[:n]]

    def top_levels(self, depth: int) -> tuple[tuple[float, ...], tuple[float, ...],
                                              tuple[float, ...], tuple[float, ...]]:
        """The best ``depth`` levels as ``(bid prices, bid sizes, ask prices, ask sizes)``,
        each best first: the arguments :func:`walk` and :func:`spend` take.

        >>> b = Book(); b.set("bid", 99.0, 1.0); b.set("bid", 100.0, 2.0); b.set("ask", 101.0, 3.0)
        >>> b.top_levels(1)
        ((100.0,), (2.0,), (101.0,), (3.0,))
        """
        bp = self.bid_px[: -depth - 1 : -1] if depth else []
        ap = self.ask_px[:depth]
        bq, aq = self.bid_qty, self.ask_qty
        return tuple(bp), tuple([bq[p] for p in bp]), tuple(ap), tuple([aq[p] for p in ap])

    def texts(self, side: str, n: int) -> list[tuple[str, str]]:
        """Best ``n`` levels of ``side`` as the (price, size) text the venue sent."""
        if side == "bid":
            t = self.bid_txt
            return [t[p] for p in self.bid_px[: -n - 1 : -1]] if n else []
        t = self.ask_txt
        return [t[p] for p in self.ask_px[:n]]

    def depth(self) -> tuple[int, int]:
        return len(self.bid_px), len(self.ask_px)

    def crossed(self) -> bool:
        return bool(self.bid_px and self.ask_px and self.bid_px[-1] >= self.ask_px[0])

    def __repr__(self) -> str:
        return f"Book(bids={len(self.bid_px)}, asks={len(self.ask_px)}, top={self.top()})"


def walk(prices: Sequence[float], sizes: Sequence[float], size: float) -> float:
    """Average price of a market order of ``size`` base units over levels best first.

    VWAP = Σ pᵢ·fᵢ / size with fᵢ = min(size − Σ_{j<i} qⱼ, qᵢ) while the
    order is not filled; NaN when the levels hold less than ``size`` (times
    :data:`THIN`) or ``size`` is not > 0. A NaN size is an empty level. Buy:
    the asks; sell: the bids (their proceeds are ``walk(...) * size``).

    >>> walk([100.0, 102.0], [1.0, 3.0], 2.0), walk([100.0], [1.0], 2.0)
    (101.0, nan)
    """
    cum = 0.0
    notional = 0.0
    for p, q in zip(prices, sizes):
        if q == q:  # NaN: a missing level
            if cum < size and q > 0.0:
                left = size - cum
                notional += (left if left < q else q) * p
            cum += q
    return notional / size if size > 0 and cum >= size * THIN else _NAN


def spend(prices: Sequence[float], sizes: Sequence[float], notional: float) -> float:
    """Base units bought spending ``notional`` quote units on asks best first.

    Each level takes min(notional left, pᵢ·qᵢ) and gives that / pᵢ; NaN when
    the levels are worth less than ``notional`` (times :data:`THIN`). A NaN
    size is an empty level.

    >>> spend([100.0, 200.0], [1.0, 1.0], 200.0), spend([100.0], [1.0], 200.0)
    (1.5, nan)
    """
    spent = 0.0
    got = 0.0
    for p, q in zip(prices, sizes):
        if q == q:
            cap = p * q
            left = notional - spent
            take = left if left < cap else cap
            if take > 0:
                got += take / p
            spent += cap
    return got if spent >= notional * THIN else _NAN
