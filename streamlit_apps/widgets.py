"""Page pieces shared by several pages (recorder health strip, window picker)."""

from __future__ import annotations

import datetime as dt

import streamlit as st

from streamlit_apps import data

__all__ = ["chart", "health_strip", "window_caption"]


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
            extra = (f" · {s['msgs_per_s'] or 0:,.0f} msg/s · gaps {s['gaps']} · reconnects {s['reconnects']}"
                     )
        col.caption(f"{r['rows_last_min']:,} rows in its last minute{extra}")


def _is_time(xs) -> bool:
    import numpy as np

    if xs is None or len(xs) == 0:
        return False
    return isinstance(xs[0], (dt.datetime, np.datetime64)) or np.asarray(xs).dtype.kind == "M"


def window_caption(start: dt.datetime, end: dt.datetime) -> None:
    st.caption(f"Window {start:%Y-%m-%d %H:%M:%S} → {end:%H:%M:%S} UTC")


def chart(container, fig, key: str, svg: bool = False) -> None:
    """``st.plotly_chart`` with the legend below the plot (a long legend never covers the title).

    ``svg=True`` redraws WebGL traces (``scattergl``) as SVG ``scatter``: a few
    hundred points per line draw faster and more reliably as SVG on a page
    that refreshes every second, and render in browsers without a GPU.
    """
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
