"""What a notebook cell's displayed value becomes on a promoted page.

``show(x)`` renders a plotly figure with ``st.plotly_chart`` and a frame
(Polars, lazily collected, or pandas) with ``st.dataframe``; anything else
is dropped, as ``lab promote`` documents. ``display`` is the same for
cells that call IPython's ``display(a, b, ...)``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import polars as pl
import streamlit as st

__all__ = ["show", "display", "kind_of"]


def kind_of(obj: Any) -> str | None:
    """``"figure"``, ``"frame"`` or ``None`` (dropped).

    >>> import plotly.graph_objects as go
    >>> kind_of(go.Figure()), kind_of(pl.DataFrame({"a": [1]})), kind_of(pl.LazyFrame()), kind_of(3)
    ('figure', 'frame', 'frame', None)
    """
    try:
        from plotly.basedatatypes import BaseFigure
    except ImportError:  # pragma: no cover - plotly is a dependency
        BaseFigure = ()  # type: ignore[assignment]
    if isinstance(obj, BaseFigure):
        return "figure"
    if isinstance(obj, (pl.DataFrame, pl.LazyFrame, pl.Series)):
        return "frame"
    mod = type(obj).__module__ or ""
    if mod.startswith("pandas") and type(obj).__name__ in ("DataFrame", "Series"):
        return "frame"
    return None


def _title(fig: Any) -> str:
    t = fig.layout.title.text if fig.layout.title is not None else None
    return t or "this figure"


def show(obj: Any, *, key: str | None = None) -> None:
    """Render a figure or a frame; drop anything else. An empty one says so instead of drawing nothing."""
    kind = kind_of(obj)
    if kind == "figure":
        if not any(getattr(t, "x", None) is not None and len(t.x) for t in obj.data):
            st.info(f"No data for {_title(obj)} in this selection.")
            return
        st.plotly_chart(obj, key=key)
    elif kind == "frame":
        df = obj.collect() if isinstance(obj, pl.LazyFrame) else obj
        if len(df) == 0:
            st.info("No data for this table in this selection.")
            return
        if isinstance(df, pl.Series):
            df = df.to_frame()
        elif not isinstance(df, pl.DataFrame):  # pandas
            df = pl.from_pandas(df.to_frame() if type(df).__name__ == "Series" else df)
        from streamlit_apps import widgets  # the page pieces (imports data: not at module import)

        name = key or "table_" + hashlib.sha1(",".join(df.columns).encode()).hexdigest()[:8]
        widgets.table(st, df, name)


def display(*objs: Any) -> None:
    """IPython's ``display`` on a promoted page: :func:`show` each argument."""
    for o in objs:
        show(o)
