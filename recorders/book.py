"""A fast L2 order book: sorted price levels per side.

Prices are kept in ascending Python lists (``bisect`` insertion is a C
memmove, faster than a tree for the few hundred levels a venue sends) with a
dict of price -> size beside them. Venues whose checksums need the numbers'
text exactly as sent (Kraken, OKX) store it alongside.

>>> b = Book()
>>> b.set("bid", 100.0, 2.0); b.set("bid", 101.0, 1.0); b.set("ask", 102.0, 3.0)
>>> b.top()
(101.0, 1.0, 102.0, 3.0)
>>> b.set("bid", 101.0, 0.0)   # size 0 deletes the level
>>> b.levels("bid", 5)
[(100.0, 2.0)]
"""

from __future__ import annotations

from bisect import bisect_left

__all__ = ["Book"]

_NAN = float("nan")


class Book:
    """One instrument's L2 book (absolute sizes, 0 deletes a level)."""

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
        """Set the absolute size at ``price`` on ``side`` ("bid"/"ask"); 0 deletes."""
        if side == "bid":
            pxs, qtys, txts = self.bid_px, self.bid_qty, self.bid_txt
        else:
            pxs, qtys, txts = self.ask_px, self.ask_qty, self.ask_txt
        if qty == 0.0:
            if price in qtys:
                del qtys[price]
                txts.pop(price, None)
                pxs.pop(bisect_left(pxs, price))
            return
        if price not in qtys:
            i = bisect_left(pxs, price)
            pxs.insert(i, price)
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
        """Best ``n`` levels of ``side``, best first."""
        if side == "bid":
            q = self.bid_qty
            return [(p, q[p]) for p in self.bid_px[: -n - 1 : -1]] if n else []
        q = self.ask_qty
        return [(p, q[p]) for p in self.ask_px[:n]]

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
