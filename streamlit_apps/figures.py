"""Plotly figure builders used by the pages.

Small pure functions (frame in, figure out) so they can move to
``lab/plots.py`` once the notebooks share the same builders. Each trace is
named after its venue so a test (or a reader) can find it.
"""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl

__all__ = ["VENUE_COLORS", "bid_ask_figure", "lines_figure", "bars_figure", "heatmap_figure"]

VENUE_COLORS = {
    "binance": "#F0B90B", "coinbase": "#1652F0", "kraken": "#5741D9",
    "okx": "#222222", "bybit": "#F7A600",
}
_LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), height=360,
               legend=dict(orientation="h", y=-0.15), template="plotly_white")


def _color(venue: str) -> str | None:
    return VENUE_COLORS.get(venue)


def bid_ask_figure(quotes: pl.DataFrame, title: str = "Bid / ask per venue") -> go.Figure:
    """Step lines of best bid (solid) and best ask (dotted) per venue.

    Needs ``venue``, ``ts_exchange``, ``bid_px``, ``ask_px``. Traces are named
    ``<venue> bid`` and ``<venue> ask``.
    """
    fig = go.Figure()
    for (venue,), g in quotes.sort("venue", "ts_exchange").group_by("venue", maintain_order=True):
        x = g["ts_exchange"].to_list()
        for side, dash in (("bid", "solid"), ("ask", "dot")):
            fig.add_trace(go.Scatter(
                x=x, y=g[f"{side}_px"].to_list(), name=f"{venue} {side}", mode="lines",
                line=dict(shape="hv", color=_color(venue), dash=dash, width=1.5),
            ))
    fig.update_layout(title=title, yaxis_title="price", **_LAYOUT)
    return fig


def lines_figure(df: pl.DataFrame, x: str, y: str, by: str = "venue", title: str = "",
                 y_title: str | None = None) -> go.Figure:
    """One line per ``by`` group (a venue, a venue pair)."""
    fig = go.Figure()
    for (key,), g in df.sort(by, x).group_by(by, maintain_order=True):
        fig.add_trace(go.Scatter(x=g[x].to_list(), y=g[y].to_list(), name=str(key), mode="lines",
                                 line=dict(color=_color(str(key)), width=1.5)))
    fig.update_layout(title=title, yaxis_title=y_title or y, **_LAYOUT)
    return fig


def bars_figure(df: pl.DataFrame, x: str, y: str, color: str | None = None,
                title: str = "", y_title: str | None = None) -> go.Figure:
    """Grouped bars, one trace per ``color`` value (or one trace)."""
    fig = go.Figure()
    groups = df.group_by(color, maintain_order=True) if color else [((y,), df)]
    for (key,), g in groups:
        fig.add_trace(go.Bar(x=g[x].to_list(), y=g[y].to_list(), name=str(key)))
    fig.update_layout(title=title, yaxis_title=y_title or y, barmode="group", **_LAYOUT)
    return fig


def heatmap_figure(df: pl.DataFrame, x: str, y: str, z: str, title: str = "") -> go.Figure:
    """A heatmap of ``z`` over the ``x`` by ``y`` grid (e.g. lead-lag correlations)."""
    xs = sorted(df[x].unique().to_list())
    ys = sorted(df[y].unique().to_list())
    grid = {(r[x], r[y]): r[z] for r in df.iter_rows(named=True)}
    zs = [[grid.get((xv, yv)) for xv in xs] for yv in ys]
    fig = go.Figure(go.Heatmap(x=xs, y=ys, z=zs, colorscale="RdBu", zmid=0))
    fig.update_layout(title=title, **_LAYOUT)
    return fig
