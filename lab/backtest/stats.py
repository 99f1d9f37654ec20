"""Performance statistics of a backtest or paper session.

Returns are equity changes per sampling interval divided by ``capital`` (the
equity starts at zero: balances start empty, so a capital base is needed to
speak of returns). Sharpe and Sortino are annualised with **365 days** and
the sampling interval of the equity curve, both stated in the output:
``sharpe = mean(r) / std(r) * sqrt(365 * 86400 / interval_s)``;
Sortino uses the downside deviation ``sqrt(mean(min(r, 0)^2))``.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import polars as pl

__all__ = ["summary", "drawdown", "annualisation_factor"]


def annualisation_factor(interval_s: float) -> float:
    """sqrt of the number of sampling intervals in 365 days.

    >>> round(annualisation_factor(86400.0) ** 2)
    365
    """
    return math.sqrt(365 * 86400 / interval_s)


def drawdown(equity: pl.LazyFrame, capital: float = 10_000.0) -> pl.LazyFrame:
    """Add ``peak``, ``drawdown`` (quote units, <= 0) and ``drawdown_pct`` (of capital + peak).

    >>> lf = pl.LazyFrame({"equity": [0.0, 5.0, 2.0, 6.0]})
    >>> drawdown(lf, capital=100.0).collect()["drawdown"].to_list()
    [0.0, 0.0, -3.0, 0.0]
    """
    return equity.with_columns(pl.col("equity").cum_max().alias("peak")).with_columns(
        (pl.col("equity") - pl.col("peak")).alias("drawdown"),
        ((pl.col("equity") - pl.col("peak")) / (capital + pl.col("peak"))).alias("drawdown_pct"))


def summary(result: Any, capital: float = 10_000.0) -> dict[str, Any]:
    """Stats of a :class:`lab.backtest.Result` (or anything with the same frames).

    Keys: ``pnl``, ``total_return``, ``sharpe``, ``sortino`` (annualised, 365
    days, ``sampling_interval_s`` stated), ``max_drawdown`` (quote units),
    ``max_drawdown_pct``, ``max_drawdown_duration_s``, ``turnover`` (traded
    notional / capital), ``notional``, ``fill_ratio`` (filled / submitted
    quantity), ``maker_share`` (of filled notional), ``fees_paid`` (negative =
    net rebate), ``n_orders``, ``n_fills``, ``pnl_by_venue``.
    """
    eq = result.equity
    iv = float(result.equity_interval_s)
    e = eq["equity"].to_numpy()
    r = np.diff(e) / capital if e.size > 1 else np.zeros(0)
    ann = annualisation_factor(iv)
    sd = float(r.std(ddof=1)) if r.size > 1 else 0.0
    down = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2))) if r.size else 0.0
    mean = float(r.mean()) if r.size else 0.0
    dd = drawdown(eq.lazy(), capital).collect()
    # longest stretch below a previous peak (from the peak's time to recovery or the end)
    below = (dd["drawdown"] < 0).to_numpy()
    ts = eq["ts"].dt.epoch("us").to_numpy() if eq.height else np.zeros(0, np.int64)
    longest, start = 0.0, None
    for k in np.flatnonzero(np.diff(np.concatenate([[False], below, [False]]).astype(np.int8))):
        if start is None:
            start = k
        else:
            t0 = ts[start - 1] if start > 0 else ts[start]
            t1 = ts[k] if k < ts.size else ts[-1]
            longest = max(longest, (t1 - t0) / 1e6)
            start = None
    f = result.fills
    notional = float((f["price"] * f["qty"]).sum()) if f.height else 0.0
    maker = float(f.filter(pl.col("liquidity") == "maker").select((pl.col("price") * pl.col("qty")).sum()).item()) \
        if f.height else 0.0
    # a long run's order log may be on disk (Result.orders_file): only the sent quantities are read
    orders = result.scan_orders() if hasattr(result, "scan_orders") else result.orders.lazy()
    sent = orders.filter(pl.col("event") == "new").select("qty").collect().rechunk()
    sent_qty = float(sent["qty"].sum()) if sent.height else 0.0
    ve = result.venue_equity
    by_venue = {v: float(g["equity"][-1]) for (v,), g in ve.group_by("venue", maintain_order=True)} \
        if ve.height else {}
    pnl = float(e[-1]) if e.size else 0.0
    return {
        "pnl": pnl,
        "total_return": pnl / capital,
        "capital": capital,
        "sampling_interval_s": iv,
        "annualisation": "365 days",
        "sharpe": mean / sd * ann if sd > 0 else float("nan"),
        "sortino": mean / down * ann if down > 0 else float("nan"),
        # Float64 columns: their min is a float (Polars types it as any Python scalar)
        "max_drawdown": float(cast(float, dd["drawdown"].min())) if dd.height else 0.0,
        "max_drawdown_pct": float(cast(float, dd["drawdown_pct"].min())) if dd.height else 0.0,
        "max_drawdown_duration_s": longest,
        "notional": notional,
        "turnover": notional / capital,
        "fill_ratio": float(f["qty"].sum()) / sent_qty if sent_qty > 0 else float("nan"),
        "maker_share": maker / notional if notional > 0 else float("nan"),
        "fees_paid": float(f["fee"].sum()) if f.height else 0.0,
        "n_orders": sent.height,
        "n_fills": f.height,
        "pnl_by_venue": by_venue,
    }
