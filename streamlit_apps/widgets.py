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
    cols = st.columns(len(h))
    for col, r in zip(cols, h.iter_rows(named=True)):
        age = r["age_s"]
        text = f"{age:,.1f} s ago" if age < 3600 else f"{age / 3600:,.1f} h ago"
        if r["stale"]:
            col.markdown(f"**{r['venue']}** :red[STALE — last row {text}]")
        else:
            col.markdown(f"**{r['venue']}** :green[live — {text}]")
        col.caption(f"{r['rows_last_min']:,} rows in its last minute")


def window_caption(start: dt.datetime, end: dt.datetime) -> None:
    st.caption(f"Window {start:%Y-%m-%d %H:%M:%S} → {end:%H:%M:%S} UTC")


def chart(container, fig, key: str) -> None:
    """``st.plotly_chart`` with the legend below the plot (a long legend never covers the title)."""
    fig.update_layout(legend=dict(orientation="h", y=-0.18, yanchor="top", x=0),
                      margin=dict(t=50, b=60))
    container.plotly_chart(fig, width="stretch", key=key)
