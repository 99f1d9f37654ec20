"""What a notebook cell's displayed value becomes on a promoted page.

``show(x)`` renders a plotly figure with ``st.plotly_chart`` and a frame
(Polars, lazily collected, or pandas) with ``st.dataframe``; anything else
is dropped, as ``lab promote`` documents. ``display`` is the same for
cells that call IPython's ``display(a, b, ...)``.
"""

from __future__ import annotations

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


def show(obj: Any, *, key: str | None = None) -> None:
    """Render a figure or a frame; drop anything else."""
    kind = kind_of(obj)
    if kind == "figure":
        st.plotly_chart(obj, key=key)
    elif kind == "frame":
        st.dataframe(obj.collect() if isinstance(obj, pl.LazyFrame) else obj, hide_index=True, key=key)


def display(*objs: Any) -> None:
    """IPython's ``display`` on a promoted page: :func:`show` each argument."""
    for o in objs:
        show(o)
