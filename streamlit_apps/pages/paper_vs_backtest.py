"""Paper vs backtest: a paper session next to the backtest replayed on the rows recorded during it."""

from __future__ import annotations

import polars as pl
import streamlit as st

from lab.backtest import compare
from streamlit_apps import data, widgets

st.title("Paper vs backtest")


@st.cache_data(ttl=10, show_spinner=False)
def _sessions(root: str) -> pl.DataFrame:
    if not data.lake().exists("paper_orders"):
        return pl.DataFrame()
    return data.retry_read(compare.sessions, root)


@st.cache_data(ttl=60, show_spinner="Replaying the session's recording through the backtest ...")
def _compare(root: str, session: str) -> dict:
    c = compare.compare_session(session, root)
    return {"summary": c.summary, "equity": c.equity, "fills": c.fills, "explanations": c.explanations,
            "latency": c.feed_latency, "figure": c.figure(), "strategy": c.strategy}


sessions = _sessions(data.lake_root())
if sessions.is_empty():
    st.info("No paper sessions in the lake yet: `lab paper <strategy> --bus ...` records one "
            "(`make demo` runs a market maker).")
    st.stop()

with st.sidebar:
    labels = [f"{r['session']} · {r['strategy']} · {r['start']:%m-%d %H:%M} · {r['fills']} fills"
              for r in sessions.sort("start", descending=True).iter_rows(named=True)]
    pick = st.selectbox("Session", labels)
session = pick.split(" · ", 1)[0]

c = _compare(data.lake_root(), session)
st.caption(f"Session {session}, strategy {c['strategy']}")
summary = c["summary"]
paper, bt = summary.row(0, named=True), summary.row(1, named=True)
cols = st.columns(4)
cols[0].metric("Paper PnL", f"{paper['pnl']:,.2f}", f"backtest {bt['pnl']:,.2f}", delta_color="off")
cols[1].metric("Paper fills", f"{paper['fills']:,}", f"backtest {bt['fills']:,}", delta_color="off")
cols[2].metric("Paper fees", f"{paper['fees']:,.2f}", f"backtest {bt['fees']:,.2f}", delta_color="off")
slip = c["fills"]["slippage"].abs().mean() if c["fills"].height else None
cols[3].metric("Mean |slippage| per paired fill", f"{slip:.4g}" if slip is not None else "—")

widgets.chart(st, c["figure"], key="comparison")
st.subheader("Why they differ")
st.markdown("\n".join(f"- {e}" for e in c["explanations"]))
left, right = st.columns(2)
left.subheader("Summary")
left.dataframe(summary, hide_index=True)
right.subheader("Feed latency (recorded)")
right.dataframe(c["latency"], hide_index=True)
st.subheader("Fills paired by order sequence")
st.dataframe(c["fills"], hide_index=True, height=300)
