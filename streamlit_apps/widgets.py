"""Page pieces shared by several pages: health strip, tables with downloads, metric rows, guards."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import io
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import polars as pl
import streamlit as st
from streamlit.runtime.scriptrunner import RerunException, StopException

from streamlit_apps import data

__all__ = ["chart", "health_strip", "window_caption", "table", "metric_rows", "no_data", "guard",
           "guarded", "page_error", "PAGE_ERROR", "PASS_THROUGH", "TIME_MS"]

log = logging.getLogger(__name__)

# Datetime columns to the millisecond (a trade tape at 1 s resolution hides the order of events).
TIME_MS = "YYYY-MM-DD HH:mm:ss.SSS"


def health_strip(stale_s: float = 5.0) -> None:
    """One column per venue: live (green) or STALE (red), with the age of its newest row."""
    h = data.venue_health(stale_s=float(stale_s))
    if h.is_empty():
        st.warning("No recorded quotes or trades yet: start a recorder (`lab record`) or `make demo`.")
        return
    rec = {r["venue"]: r for r in data.recorder_status() if r["updated_age_s"] < 30}
    cols = st.columns(len(h))
    for col, r in zip(cols, h.iter_rows(named=True)):
        age = max(r["age_s"], 0.0)  # receive clock vs this clock: never show "-0.0 s ago"
        text = f"{age:,.1f} s ago" if age < 3600 else f"{age / 3600:,.1f} h ago"
        down = r["venue"] in rec and not rec[r["venue"]]["connected"]
        if r["stale"] or down:
            col.markdown(f"**{r['venue']}** :red[{'DISCONNECTED' if down else 'STALE'} — last row {text}]")
        else:
            col.markdown(f"**{r['venue']}** :green[live — {text}]")
        extra = ""
        if r["venue"] in rec:
            s = rec[r["venue"]]
            extra = f" · {s['msgs_per_s'] or 0:,.0f} msg/s · gaps {s['gaps']} · reconnects {s['reconnects']}"
        col.caption(f"{r['rows_last_min']:,} rows in its last minute{extra}")


def _is_time(xs) -> bool:
    import numpy as np

    if xs is None or len(xs) == 0:
        return False
    return isinstance(xs[0], (dt.datetime, np.datetime64)) or np.asarray(xs).dtype.kind == "M"


def window_caption(start: dt.datetime, end: dt.datetime) -> None:
    st.caption(f"Window {start:%Y-%m-%d %H:%M:%S} → {end:%H:%M:%S} UTC")


def no_data(what: str, where: str, container: Any = None) -> None:
    """The one message every page shows instead of an empty chart or table: "No data for … in …"."""
    (container or st).info(f"No data for {what} in {where}.")


def window_text(start: dt.datetime, end: dt.datetime) -> str:
    return f"{start:%Y-%m-%d %H:%M:%S} → {end:%H:%M:%S} UTC"


def chart(container, fig, key: str, svg: bool = False, *, what: str | None = None,
          where: str | None = None) -> None:
    """``st.plotly_chart`` with the legend below the plot (a long legend never covers the title).

    A figure without data points is never drawn: "No data for ``what`` in
    ``where``" takes its place. ``svg=True`` redraws WebGL traces
    (``scattergl``) as SVG ``scatter``: a few hundred points per line draw
    faster and more reliably as SVG on a page that refreshes every second,
    and render in browsers without a GPU.
    """
    if not any(len(getattr(t, "x", None) if getattr(t, "x", None) is not None else ()) for t in fig.data):
        title = fig.layout.title.text if fig.layout.title and fig.layout.title.text else key
        no_data(what or title, where or "this window", container)
        return
    if svg:
        traces = [t.to_plotly_json() for t in fig.data]
        fig.data = []
        for t in traces:
            if t.get("type") == "scattergl":
                t["type"] = "scatter"
            fig.add_trace(t)
    fig.update_layout(legend=dict(orientation="h", y=-0.18, yanchor="top", x=0),
                      margin=dict(t=50, b=60))
    if fig.data and _is_time(fig.data[0].x):
        fig.update_xaxes(title_text=None)  # the dates under the ticks say it; the legend goes there
    container.plotly_chart(fig, width="stretch", key=key)


def _time_config(df: pl.DataFrame) -> dict[str, Any]:
    return {c: st.column_config.DatetimeColumn(c, format=TIME_MS)
            for c, t in df.schema.items() if isinstance(t, pl.Datetime)}


@st.cache_data(ttl=30, show_spinner=False, max_entries=64)
def _downloads(df: pl.DataFrame) -> tuple[bytes, bytes]:
    buf = io.BytesIO()
    df.write_parquet(buf)
    return df.write_csv().encode(), buf.getvalue()


def table(container: Any, df: pl.DataFrame, name: str, *, column_config: dict | None = None,
          **kwargs: Any) -> None:
    """A dataframe with its CSV and Parquet downloads; times shown to the millisecond.

    ``name`` names the files (``<name>.csv``, ``<name>.parquet``) and keys the buttons.
    """
    container = container or st
    cfg = _time_config(df) | (column_config or {})
    container.dataframe(df, hide_index=True, column_config=cfg, **kwargs)
    csv, parquet = _downloads(df)
    row = container.container(horizontal=True)  # side by side, labels visible even in a narrow column
    row.download_button("CSV", csv, file_name=f"{name}.csv", mime="text/csv", key=f"dl_csv_{name}",
                      icon=":material/download:", on_click="ignore")
    row.download_button("Parquet", parquet, file_name=f"{name}.parquet", mime="application/octet-stream",
                      key=f"dl_parquet_{name}", icon=":material/download:", on_click="ignore")


# Characters of metric value that fit across the main area of a wide page at 1280 px and more:
# a row holds at most this many characters, so a value is never cut to "101,38…".
ROW_CHARS = 44


def row_size(values: Sequence[str], per_row: int = 4) -> int:
    """How many metrics go in a row: ``per_row``, fewer when the longest value would not fit.

    >>> row_size(["101,385.12", "+0.50"]), row_size(["coinbase → binance", "-1.00"]), row_size(["1"] * 9, 7)
    (4, 2, 7)
    """
    longest = max((len(v) for v in values), default=1)
    return max(1, min(per_row, ROW_CHARS // max(longest, 1)))


def metric_rows(items: Sequence[dict[str, Any]], per_row: int = 4, container: Any = None) -> None:
    """``st.metric`` for each item (``label``, ``value``, optional ``delta``, ``delta_color``, ``help``),
    at most ``per_row`` per row and fewer for long values (:func:`row_size`), so a value such as
    ``101,385.12`` is never cut to ``101,38…``."""
    c = container or st
    per_row = row_size([str(m["value"]) for m in items], per_row)
    for i in range(0, len(items), per_row):
        chunk = items[i:i + per_row]
        cols = c.columns(per_row)
        for col, m in zip(cols, chunk):
            color = m.get("delta_color", "normal")
            # a grey delta is a note, not a move: no arrow pointing up or down
            col.metric(m["label"], m["value"], m.get("delta"), delta_color=color, help=m.get("help"),
                       delta_arrow="off" if color == "off" else "auto")


PAGE_ERROR = "Page error"  # prefix of an unexpected error's one-line message (tests look for it)
# Passed through: Streamlit's control flow and the interpreter's own exits. Everything else is caught,
# BaseException included: a Rust panic in deltalake (a damaged table) is a pyo3 PanicException.
PASS_THROUGH = (StopException, RerunException, KeyboardInterrupt, SystemExit, GeneratorExit)


def page_error(where: str, e: BaseException) -> None:
    """One line for an error nobody planned for (a damaged table, a bug): logged in full, shown short."""
    log.error("%s: %s", where, e, exc_info=e)
    first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
    st.error(f"{PAGE_ERROR} in {where}: {first} ({type(e).__name__}; the server log has the details)")


@contextlib.contextmanager
def guard(what: str) -> Iterator[None]:
    """Turn an error from bad input (a date, a path, a parameter) into one message, never a traceback.

    Streamlit's own control flow (``st.stop``, reruns) passes through.
    """
    try:
        yield
    except PASS_THROUGH:
        raise
    except BaseException as e:  # noqa: BLE001 - shown to the user as one line, logged in full
        log.info("page error in %s", what, exc_info=True)
        msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        st.error(f"{what}: {msg}")
        st.stop()


def guarded(where: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorator for a page's fragments: an unexpected error is :func:`page_error`, never a traceback."""
    def wrap(fn: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> None:
            try:
                fn(*args, **kwargs)
            except PASS_THROUGH:
                raise
            except BaseException as e:  # noqa: BLE001 - see page_error
                page_error(where, e)
        return run
    return wrap


def log_refresh(wall_ms: float, cpu_ms: float) -> None:
    """Append one refresh's server-side wall and CPU time to ``$LAB_STREAMLIT_TIMINGS``
    (``unix_time wall_ms cpu_ms`` per line), when set: how a page's refresh cost is measured
    (bench/bench_streamlit_refresh.py sets it; docs/CONTRACTS.md)."""
    path = os.environ.get("LAB_STREAMLIT_TIMINGS")
    if path:
        with open(path, "a") as f:
            f.write(f"{time.time():.3f} {wall_ms:.3f} {cpu_ms:.3f}\n")
