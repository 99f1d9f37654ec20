"""Plotly figures for backtest results and paper-vs-backtest comparisons."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from lab.backtest.stats import drawdown

__all__ = ["equity_figure", "fills_figure", "venue_pnl_figure", "comparison_figure", "sweep_figure"]


def equity_figure(result: Any, capital: float = 10_000.0) -> go.Figure:
    """Equity (quote units) and drawdown of a :class:`~lab.backtest.Result`."""
    dd = drawdown(result.equity.lazy(), capital).collect()
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.05)
    fig.add_trace(go.Scatter(x=dd["ts"], y=dd["equity"], name="equity", mode="lines"), row=1, col=1)
    fig.add_trace(go.Scatter(x=dd["ts"], y=dd["drawdown"], name="drawdown", fill="tozeroy", mode="lines"),
                  row=2, col=1)
    fig.update_layout(title=f"{result.strategy}: equity (sampled every {result.equity_interval_s:g} s)",
                      height=500, margin=dict(t=50, l=50, r=20, b=30))
    return fig


def fills_figure(result: Any, mids: pl.DataFrame | None = None) -> go.Figure:
    """Fills as markers (buy ▲, sell ▼; maker filled, taker hollow) over the mid if given."""
    fig = go.Figure()
    if mids is not None and mids.height:
        fig.add_trace(go.Scatter(x=mids["ts"], y=mids["mid"], name="mid", mode="lines", line=dict(width=1)))
    f = result.fills if hasattr(result, "fills") else result
    tcol = "ts_exchange" if "ts_exchange" in f.columns else "ts"
    for side, sym in (("buy", "triangle-up"), ("sell", "triangle-down")):
        for liq in ("maker", "taker"):
            d = f.filter((pl.col("side") == side) & (pl.col("liquidity") == liq))
            if d.height:
                fig.add_trace(go.Scatter(x=d[tcol], y=d["price"], mode="markers", name=f"{side} {liq}",
                                         marker=dict(symbol=sym if liq == "maker" else sym + "-open", size=7)))
    fig.update_layout(title="fills", height=400)
    return fig


def venue_pnl_figure(result: Any) -> go.Figure:
    """PnL per venue over time (value of that venue's balances)."""
    fig = go.Figure()
    for (v,), g in result.venue_equity.group_by("venue", maintain_order=True):
        fig.add_trace(go.Scatter(x=g["ts"], y=g["equity"], name=v, mode="lines"))
    fig.update_layout(title="PnL per venue", height=350)
    return fig


def comparison_figure(cmp: Any) -> go.Figure:
    """Paper vs backtest: both equity curves and the per-fill price slippage."""
    fig = make_subplots(rows=2, cols=1, row_heights=[0.65, 0.35], vertical_spacing=0.08,
                        subplot_titles=("equity", "fill price: paper - backtest (paired by order)"))
    for col in ("paper", "backtest"):
        fig.add_trace(go.Scatter(x=cmp.equity["ts"], y=cmp.equity[col], name=col, mode="lines"), row=1, col=1)
    if cmp.fills.height:
        fig.add_trace(go.Bar(x=cmp.fills["n"], y=cmp.fills["slippage"], name="slippage"), row=2, col=1)
    fig.update_layout(title=f"paper session {cmp.session} ({cmp.strategy}) vs backtest on its data", height=550)
    return fig


def sweep_figure(res: pl.DataFrame) -> go.Figure:
    """Heatmap of PnL over the (window, threshold) grid of :func:`lab.backtest.vector.sweep`."""
    piv = res.pivot(on="threshold", index="window", values="pnl").sort("window")
    z = piv.drop("window").to_numpy()
    fig = go.Figure(go.Heatmap(z=z, x=[float(c) for c in piv.columns[1:]], y=piv["window"].to_list(),
                               colorbar=dict(title="PnL")))
    fig.update_layout(title="vectorised sweep: PnL by window (bars) and threshold", xaxis_title="threshold",
                      yaxis_title="window", height=450)
    return fig
