"""Plotly figure builders shared by the notebooks, the reports and the Streamlit apps.

Every builder takes a Polars frame (``DataFrame`` or ``LazyFrame``, collected
here: plotting is the edge), the names of the columns it needs (the lab's
canonical names by default) and returns a ``plotly.graph_objects.Figure``;
``widget=True`` returns a ``FigureWidget`` instead (live notebooks update it in
place). One trace per venue (or venue/symbol when several symbols are
present), trace names ``"<venue>"`` or ``"<venue> <symbol>"``; traces carry
``meta={"venue": ..., "symbol": ...}`` so callers can find them again.

Stable signatures (the Streamlit apps call them too): add keyword arguments
at the end with defaults, never rename or reorder.

=====================  ===========================================================
builder                input columns
=====================  ===========================================================
:func:`quotes_figure`  ``ts_exchange, venue, symbol, bid_px, ask_px``
:func:`trades_figure`  ``ts_exchange, venue, symbol, price, qty, side``
:func:`ohlcv_figure`   ``bucket, open, high, low, close, volume`` (:func:`lab.bars.ohlcv`)
:func:`lines_figure`   any ``x``, ``y`` and grouping columns
:func:`bar_figure`     any category ``x`` and value ``y`` (``color`` optional)
:func:`histogram_figure` one numeric column (``color`` optional)
:func:`depth_figure`   ``side, price, qty`` (one book, long layout)
:func:`heatmap_figure` a square frame of values plus a label column
=====================  ===========================================================
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import cast


def _skip_slow_jsonschema_extras() -> None:
    """nbformat (imported by plotly's renderers, ``FigureWidget``, papermill and
    nbconvert) imports jsonschema, whose optional ``rfc3987_syntax`` checker
    compiles ~40 lark grammars at import: 3-8 s per process or kernel on this
    machine, for the ``iri`` formats that no notebook schema uses. Mark it
    unavailable (jsonschema then skips that checker) unless already loaded.
    """
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


_skip_slow_jsonschema_extras()

import plotly.graph_objects as go  # noqa: E402
import polars as pl  # noqa: E402

__all__ = [
    "as_frame",
    "quotes_figure",
    "trades_figure",
    "ohlcv_figure",
    "lines_figure",
    "bar_figure",
    "histogram_figure",
    "depth_figure",
    "heatmap_figure",
    "to_html",
    "html_page",
    "SIDE_COLORS",
]

SIDE_COLORS = {"buy": "#2ca02c", "sell": "#d62728", "bid": "#2ca02c", "ask": "#d62728"}
_TEMPLATE = "plotly_white"


def as_frame(data: pl.DataFrame | pl.LazyFrame, need: Sequence[str], who: str) -> pl.DataFrame:
    """Collect ``data`` and check it has the ``need`` columns (error names ``who``).

    >>> as_frame(pl.LazyFrame({"a": [1]}), ["a"], "demo").shape
    (1, 1)
    >>> as_frame(pl.DataFrame({"a": [1]}), ["b"], "demo")
    Traceback (most recent call last):
    ...
    ValueError: demo: missing column(s) ['b']; got ['a']
    """
    df = data.collect() if isinstance(data, pl.LazyFrame) else data
    if not isinstance(df, pl.DataFrame):
        raise TypeError(f"{who}: expected a polars DataFrame or LazyFrame, got {type(data).__name__}")
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"{who}: missing column(s) {missing}; got {df.columns}")
    return df


def _finish(fig: go.Figure, title: str | None, widget: bool, height: int | None) -> go.Figure:
    # the title sits at the very top, the horizontal legend just above the plot area
    fig.update_layout(template=_TEMPLATE, height=height,
                      title=dict(text=title, y=0.98, yanchor="top", x=0.01) if title else None,
                      margin=dict(l=50, r=20, t=95 if title else 40, b=40),
                      legend=dict(orientation="h", y=1.01, yanchor="bottom", x=0))
    return go.FigureWidget(fig) if widget else fig


def _groups(df: pl.DataFrame, by: Sequence[str]) -> list[tuple[dict[str, object], pl.DataFrame]]:
    by = [c for c in by if c in df.columns]
    if not by:
        return [({}, df)]
    # drop a grouping column that takes one value (names stay short)
    shown = [c for c in by if df[c].n_unique() > 1] or by[:1]
    out = []
    for key, part in df.sort(by, maintain_order=True).group_by(by, maintain_order=True):
        out.append(({c: v for c, v in zip(by, key)} | {"__name": " ".join(
            str(v) for c, v in zip(by, key) if c in shown)}, part))
    return out


# duplicates: the *_figure functions share their keyword signature on purpose (the same
# time_column/by/title/widget/height options everywhere).
def quotes_figure(
    quotes: pl.DataFrame | pl.LazyFrame,
    *,
    time_column: str = "ts_exchange",
    by: Sequence[str] = ("venue", "symbol"),
    title: str | None = None,
    widget: bool = False,
    height: int | None = None,
) -> go.Figure:
    """Best bid and ask over time, two step lines per venue (``"<name> bid"`` solid,
    ``"<name> ask"`` dotted, in the venue's colour).

    >>> import datetime as dt
    >>> t = [dt.datetime(2026, 1, 1, 0, 0, s) for s in range(3)]
    >>> q = pl.DataFrame({"ts_exchange": t * 2, "venue": ["a"] * 3 + ["b"] * 3, "symbol": "BTC-USDT",
    ...     "bid_px": [99.0, 99.5, 99.0] * 2, "ask_px": [100.0, 100.5, 100.0] * 2})
    >>> [tr.name for tr in quotes_figure(q).data]
    ['a bid', 'a ask', 'b bid', 'b ask']
    """
    df = as_frame(quotes, [time_column, "bid_px", "ask_px"], "quotes_figure")
    import plotly.colors

    palette = plotly.colors.qualitative.Plotly
    fig = go.Figure()
    for i, (key, part) in enumerate(_groups(df, by)):
        name = key.pop("__name", "")
        x = part[time_column].to_numpy()
        for side, col in (("bid", "bid_px"), ("ask", "ask_px")):
            fig.add_trace(go.Scattergl(
                x=x, y=part[col].to_numpy(), mode="lines",
                line=dict(shape="hv", width=1, color=palette[i % len(palette)],
                          dash="solid" if side == "bid" else "dot"),
                name=f"{name} {side}".strip(), meta=key | {"side": side}, legendgroup=name))
    fig.update_yaxes(title_text="price")
    return _finish(fig, title, widget, height)


def trades_figure(
    trades: pl.DataFrame | pl.LazyFrame,
    *,
    time_column: str = "ts_exchange",
    by: Sequence[str] = ("venue", "symbol"),
    title: str | None = None,
    widget: bool = False,
    height: int | None = None,
    max_marker: float = 14.0,
) -> go.Figure:
    """Trade tape: one marker per trade, green buys / red sells, size ∝ √qty.

    One trace per venue and side (``"<name> buy"``, ``"<name> sell"``).

    >>> import datetime as dt
    >>> t = [dt.datetime(2026, 1, 1, 0, 0, s) for s in range(3)]
    >>> tr = pl.DataFrame({"ts_exchange": t, "venue": "a", "symbol": "BTC-USDT",
    ...     "price": [100.0, 101.0, 100.5], "qty": [1.0, 0.5, 2.0], "side": ["buy", "sell", "buy"]})
    >>> [(d.name, len(d.x)) for d in trades_figure(tr).data]
    [('a buy', 2), ('a sell', 1)]
    """
    df = as_frame(trades, [time_column, "price", "qty", "side"], "trades_figure")
    qmax = float(cast("float | None", df["qty"].max()) or 1.0) if df.height else 1.0  # numeric column
    fig = go.Figure()
    for key, part in _groups(df, by):
        name = key.pop("__name", "")
        for side in ("buy", "sell"):
            s = part.filter(pl.col("side") == side)
            size = (s["qty"].clip(0.0, None) / qmax).sqrt() * max_marker + 3.0
            fig.add_trace(go.Scattergl(
                x=s[time_column].to_numpy(), y=s["price"].to_numpy(), mode="markers",
                marker=dict(size=size.to_numpy(), color=SIDE_COLORS[side], opacity=0.6),
                name=f"{name} {side}".strip(), meta=key | {"side": side},
                customdata=s["qty"].to_numpy(), hovertemplate="%{y} × %{customdata}<extra>%{fullData.name}</extra>"))
    fig.update_yaxes(title_text="price")
    return _finish(fig, title, widget, height)


def ohlcv_figure(
    bars: pl.DataFrame | pl.LazyFrame,
    *,
    time_column: str = "bucket",
    title: str | None = None,
    widget: bool = False,
    height: int | None = 450,
) -> go.Figure:
    """Candlesticks with a volume panel below, for one venue/symbol's bars.

    >>> import datetime as dt
    >>> b = pl.DataFrame({"bucket": [dt.datetime(2026, 1, 1, 0, m) for m in range(2)],
    ...     "open": [1.0, 2.0], "high": [2.0, 3.0], "low": [0.5, 1.5], "close": [2.0, 2.5],
    ...     "volume": [10.0, 5.0]})
    >>> [d.type for d in ohlcv_figure(b).data]
    ['candlestick', 'bar']
    """
    from plotly.subplots import make_subplots

    df = as_frame(bars, [time_column, "open", "high", "low", "close", "volume"], "ohlcv_figure")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.75, 0.25],
                        vertical_spacing=0.03)
    x = df[time_column].to_numpy()
    fig.add_trace(go.Candlestick(x=x, open=df["open"].to_numpy(), high=df["high"].to_numpy(),
                                 low=df["low"].to_numpy(), close=df["close"].to_numpy(),
                                 name="price"), row=1, col=1)
    fig.add_trace(go.Bar(x=x, y=df["volume"].to_numpy(), name="volume",
                         marker_color="#7f7f7f"), row=2, col=1)
    fig.update_layout(xaxis_rangeslider_visible=False, showlegend=False)
    return _finish(fig, title, widget, height)


def lines_figure(
    data: pl.DataFrame | pl.LazyFrame,
    x: str,
    y: str | Sequence[str],
    *,
    by: Sequence[str] = ("venue", "symbol"),
    mode: str = "lines",
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    log_x: bool = False,
    widget: bool = False,
    height: int | None = None,
) -> go.Figure:
    """One line per group (and per ``y`` column when several are given).

    >>> d = pl.DataFrame({"lag": [1, 2, 1, 2], "venue": ["a", "a", "b", "b"], "rv": [1.0, 2.0, 3.0, 4.0]})
    >>> [(t.name, t.y.tolist()) for t in lines_figure(d, "lag", "rv", by=["venue"]).data]
    [('a', [1.0, 2.0]), ('b', [3.0, 4.0])]
    """
    ys = [y] if isinstance(y, str) else list(y)
    df = as_frame(data, [x, *ys], "lines_figure")
    fig = go.Figure()
    for key, part in _groups(df, by):
        name = key.pop("__name", "")
        part = part.sort(x)
        for col in ys:
            label = name if len(ys) == 1 and name else f"{name} {col}".strip()
            fig.add_trace(go.Scatter(x=part[x].to_numpy(), y=part[col].to_numpy(), mode=mode,
                                     name=label, meta=key | {"column": col}))
    fig.update_xaxes(title_text=xlabel or x, type="log" if log_x else None)
    fig.update_yaxes(title_text=ylabel or (ys[0] if len(ys) == 1 else None))
    return _finish(fig, title, widget, height)


def bar_figure(
    data: pl.DataFrame | pl.LazyFrame,
    x: str,
    y: str,
    *,
    color: str | None = None,
    title: str | None = None,
    ylabel: str | None = None,
    barmode: str = "group",
    widget: bool = False,
    height: int | None = None,
) -> go.Figure:
    """Bars of ``y`` per category ``x``, one trace per ``color`` value (grouped).

    >>> d = pl.DataFrame({"symbol": ["BTC", "BTC", "ETH"], "venue": ["a", "b", "a"], "v": [1.0, 2.0, 3.0]})
    >>> [(t.name, list(t.x)) for t in bar_figure(d, "symbol", "v", color="venue").data]
    [('a', ['BTC', 'ETH']), ('b', ['BTC'])]
    """
    df = as_frame(data, [x, y] + ([color] if color else []), "bar_figure")
    fig = go.Figure()
    for key, part in _groups(df, [color] if color else []):
        fig.add_trace(go.Bar(x=part[x].to_list(), y=part[y].to_numpy(),
                             name=key.get("__name", y), meta={k: v for k, v in key.items() if k != "__name"}))
    fig.update_layout(barmode=barmode)
    fig.update_yaxes(title_text=ylabel or y)
    return _finish(fig, title, widget, height)


def histogram_figure(
    data: pl.DataFrame | pl.LazyFrame,
    column: str,
    *,
    color: str | None = None,
    nbins: int = 50,
    title: str | None = None,
    log_y: bool = False,
    widget: bool = False,
    height: int | None = None,
) -> go.Figure:
    """Histogram of ``column``, overlaid per ``color`` value.

    >>> d = pl.DataFrame({"edge": [1.0, 2.0, 2.5, 3.0]})
    >>> len(histogram_figure(d, "edge").data[0].x)
    4
    """
    df = as_frame(data, [column] + ([color] if color else []), "histogram_figure")
    fig = go.Figure()
    for key, part in _groups(df, [color] if color else []):
        fig.add_trace(go.Histogram(x=part[column].to_numpy(), nbinsx=nbins, opacity=0.65,
                                   name=key.get("__name", column)))
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title_text=column)
    fig.update_yaxes(title_text="count", type="log" if log_y else None)
    return _finish(fig, title, widget, height)


def depth_figure(
    book: pl.DataFrame | pl.LazyFrame,
    *,
    title: str | None = None,
    widget: bool = False,
    height: int | None = None,
) -> go.Figure:
    """Cumulative depth chart of one book in long layout (``side, price, qty``).

    Bids accumulate from the best (highest) price down, asks from the best
    (lowest) up; traces ``"bid"`` and ``"ask"`` as filled step lines.

    >>> b = pl.DataFrame({"side": ["bid", "bid", "ask"], "price": [99.0, 98.0, 101.0], "qty": [1.0, 2.0, 3.0]})
    >>> [(t.name, t.y.tolist()) for t in depth_figure(b).data]
    [('bid', [1.0, 3.0]), ('ask', [3.0])]
    """
    df = as_frame(book, ["side", "price", "qty"], "depth_figure").filter(pl.col("qty") > 0)
    fig = go.Figure()
    for side, desc in (("bid", True), ("ask", False)):
        s = df.filter(pl.col("side") == side).sort("price", descending=desc)
        fig.add_trace(go.Scatter(x=s["price"].to_numpy(), y=s["qty"].cum_sum().to_numpy(),
                                 mode="lines", line=dict(shape="hv", color=SIDE_COLORS[side]),
                                 fill="tozeroy", name=side))
    fig.update_xaxes(title_text="price")
    fig.update_yaxes(title_text="cumulative size")
    return _finish(fig, title, widget, height)


def heatmap_figure(
    data: pl.DataFrame | pl.LazyFrame,
    *,
    label: str,
    title: str | None = None,
    zmid: float | None = None,
    widget: bool = False,
    height: int | None = None,
) -> go.Figure:
    """Heatmap of a matrix frame: one row per ``label`` value, one column per other column.

    >>> m = pl.DataFrame({"venue": ["a", "b"], "a": [1.0, 0.5], "b": [0.5, 1.0]})
    >>> heatmap_figure(m, label="venue").data[0].z.tolist()
    [[1.0, 0.5], [0.5, 1.0]]
    """
    df = as_frame(data, [label], "heatmap_figure")
    cols = [c for c in df.columns if c != label]
    fig = go.Figure(go.Heatmap(z=df.select(cols).to_numpy(), x=cols, y=df[label].cast(pl.String).to_list(),
                               zmid=zmid, colorscale="RdBu_r" if zmid is not None else "Viridis",
                               texttemplate="%{z:.3g}"))
    return _finish(fig, title, widget, height)


def to_html(fig: go.Figure, *, include_plotlyjs: bool | str = True) -> str:
    """The figure as an HTML fragment; plotly.js is embedded (~4 MB) unless ``include_plotlyjs=False``.

    Embedded by default so a page works offline: a ``"cdn"`` script tag draws a
    blank page on a machine without internet.

    >>> "plotly-graph-div" in to_html(go.Figure(), include_plotlyjs=False)
    True
    """
    return fig.to_html(full_html=False, include_plotlyjs=include_plotlyjs)


def html_page(title: str, parts: Sequence[go.Figure | str]) -> str:
    """A complete, self-contained HTML page: ``title``, then each figure or HTML snippet in order.

    plotly.js is embedded once (before the first figure), never fetched from a
    CDN, so the page draws offline and from a file:// URL.

    >>> page = html_page("t", ["<p>hi</p>", go.Figure()])
    >>> "src='http" in page.replace('"', "'"), page.count("plotly-graph-div") >= 1
    (False, True)
    """
    import html as _html

    body: list[str] = []
    sent = False
    for part in parts:
        if isinstance(part, go.Figure):
            body.append(part.to_html(full_html=False, include_plotlyjs=not sent))
            sent = True
        else:
            body.append(str(part))
    t = _html.escape(title)
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{t}</title></head>'
            f"<body><h2>{t}</h2>\n" + "\n".join(body) + "\n</body></html>\n")
