"""Paper vs backtest: a paper session next to the backtest replayed on the rows recorded during it."""

from __future__ import annotations

import polars as pl
import streamlit as st

from lab.backtest import compare
from streamlit_apps import data, widgets

st.title("Paper vs backtest")

# Above this median receive delay, the recording's exchange clock is not the exchange's: the
# comparison is flagged (see the warning below and tests/streamlit/test_page_defects.py).
LAGGING_FEED_MS = 1_000.0


@st.cache_data(ttl=10, show_spinner=False, max_entries=4)
def _sessions(root: str) -> pl.DataFrame:
    if not data.lake().exists("paper_orders"):
        return pl.DataFrame()
    return data.retry_read(compare.sessions, root)


@st.cache_data(ttl=60, show_spinner="Replaying the session's recording through the backtest ...", max_entries=4)
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

with widgets.guard("Comparing the session"):
    c = _compare(data.lake_root(), session)
st.caption(f"Session {session}, strategy {c['strategy']}")
summary = c["summary"]
paper, bt = summary.row(0, named=True), summary.row(1, named=True)
slip = c["fills"]["slippage"].abs().mean() if c["fills"].height else None
widgets.metric_rows([
    {"label": "Paper PnL", "value": f"{paper['pnl']:,.2f}", "delta": f"backtest {bt['pnl']:,.2f}", "delta_color": "off"},
    {"label": "Paper fills", "value": f"{paper['fills']:,}", "delta": f"backtest {bt['fills']:,}", "delta_color": "off"},
    {"label": "Paper fees", "value": f"{paper['fees']:,.2f}", "delta": f"backtest {bt['fees']:,.2f}",
     "delta_color": "off"},
    {"label": "Mean |slippage| per paired fill", "value": f"{slip:.4g}" if slip is not None else "—"},
])

lat = c["latency"]
lagging = lat.filter(pl.col("p50_ms") > LAGGING_FEED_MS) if lat.height else lat
if lagging.height:
    worst = lagging.sort("p50_ms", descending=True).row(0, named=True)
    secs = worst["p50_ms"] / 1000.0
    st.warning(
        f"**The recording lags its own exchange clock: feed latency p50 {worst['p50_ms']:,.0f} ms on "
        f"{worst['venue']}**, so this comparison does not measure the strategy. Rows reached the recorder "
        f"about {secs:,.0f} s after their exchange time. From the bundled simulator that is not a slow network: "
        "on a CPU-starved machine the simulator slows its exchange clock rather than skip market time, so "
        "exchange times fall further and further behind our receive times. Paper and backtest both take the "
        f"gap for a real {secs:,.0f} s delay: every order reaches the book {secs:,.0f} s after the quotes it "
        "reacted to, and which stale quotes still fill then depends on batch boundaries (live batches "
        f"vs the backtest's exchange-time order), hence {paper['fills']:,} paper vs {bt['fills']:,} backtest "
        "fills. Compare a session whose feed latency is milliseconds: run the demo on a less loaded machine "
        "(`lab demo --no-jupyter`, or stop other jobs) and pick a session started after the lag is gone.")

widgets.chart(st, c["figure"], key="comparison", what=f"session {session} equity", where="this session")
st.subheader("Why they differ")
st.markdown("\n".join(f"- {e}" for e in c["explanations"]))
left, right = st.columns(2)
left.subheader("Summary")
widgets.table(left, summary, "paper_vs_backtest_summary")
right.subheader("Feed latency (recorded)")
widgets.table(right, c["latency"], "feed_latency")
st.subheader("Fills paired by order sequence")
if c["fills"].is_empty():
    widgets.no_data("paired fills", f"session {session}")
else:
    widgets.table(st, c["fills"], "paired_fills", height=300)
