"""Risk monitor: equity, PnL, exposure, VaR/ES, drawdown and limits from the live risk monitor."""

from __future__ import annotations

import datetime as dt

import polars as pl
import streamlit as st

from lab import plots
from streamlit_apps import data, widgets

HEADLINE = [("equity", "Equity", "{:,.2f}"), ("total_pnl", "Total PnL", "{:+,.2f}"),
            ("daily_pnl", "Daily PnL", "{:+,.2f}"), ("gross_exposure", "Gross exposure", "{:,.0f}"),
            ("net_exposure", "Net exposure", "{:+,.0f}"), ("leverage", "Leverage", "{:.2f}x"),
            ("drawdown_pct", "Drawdown", "{:.2%}")]

st.title("Risk monitor")

with st.sidebar:
    minutes = st.number_input("History (minutes)", min_value=1, max_value=7 * 24 * 60, value=60, step=5)
    live = st.toggle("Auto refresh", value=True)


@st.cache_data(ttl=1, show_spinner=False, max_entries=8)
def _snapshots(root: str, start: dt.datetime) -> pl.DataFrame:
    return data.scan_window("risk_snapshots", start=start)


def wide(rows: pl.DataFrame, index: list[str]) -> pl.DataFrame:
    """One row per figure group, one column per metric.

    Two positions can share a key (the paper runner's ``binance:BTC`` and the
    positions file's ``binance:BTC`` are separate holdings): each keeps its
    own row, told apart by ``n`` (its order within the snapshot), instead of
    failing the pivot on duplicate values.
    """
    rows = rows.with_columns(n=pl.int_range(pl.len()).over([*index, "metric"]))
    out = rows.pivot(on="metric", index=[*index, "n"], values="value").sort([*index, "n"])
    return out if out["n"].max() else out.drop("n")


@st.fragment(run_every=1.0 if live else None)
@widgets.guarded("Risk monitor")
def view() -> None:
    end = data.window_end("risk_snapshots")
    start = end - dt.timedelta(minutes=int(minutes))
    rows = _snapshots(data.lake_root(), start.replace(microsecond=0))
    if rows.is_empty():
        st.info(f"No data for risk snapshots in the {int(minutes)} minutes up to {end:%Y-%m-%d %H:%M:%S} UTC: "
                "the live risk monitor (`lab risk`) writes one every second.")
        return
    last_ts = rows["ts"].max()
    now_rows = rows.filter(pl.col("ts") == last_ts)
    age = (data.now() - last_ts).total_seconds()
    (st.caption if age < 5 else st.warning)(
        f"Snapshot of {last_ts:%Y-%m-%d %H:%M:%S} UTC ({age:,.1f} s ago)")

    port = dict(now_rows.filter(pl.col("scope") == "portfolio").select("metric", "value").iter_rows())
    shown = [(m, label, fmt) for m, label, fmt in HEADLINE if port.get(m) is not None]
    widgets.metric_rows([{"label": label, "value": fmt.format(port[m])} for m, label, fmt in shown])
    var = {m: v for m, v in port.items() if "var" in m or "es_" in m}
    if var:
        widgets.metric_rows([{"label": m.replace("_", " "), "value": f"{v:,.2f}" if v is not None else "—"}
                             for m, v in sorted(var.items())])

    limits = now_rows.filter(pl.col("scope") == "limit")
    st.subheader("Limits")
    if limits.is_empty():
        st.caption("No limits configured.")
    else:
        lim = wide(limits, ["key", "detail"])
        breached = lim.filter(pl.col("breached") > 0) if "breached" in lim.columns else lim.clear()
        for r in breached.iter_rows(named=True):
            st.markdown(f":red[**BREACH {r['key']}**: {r['detail']}]")
        if breached.is_empty():
            st.markdown(":green[All limits within bounds.]")
        widgets.table(st, lim, "risk_limits")

    left, right = st.columns(2)
    hist = rows.filter((pl.col("scope") == "portfolio")
                       & pl.col("metric").is_in(["equity", "total_pnl", "net_exposure", "gross_exposure"]))
    pnl = hist.filter(pl.col("metric") == "total_pnl").rename({"metric": "series"})
    widgets.chart(left, plots.lines_figure(pnl, "ts", "value", by=("series",), title="Total PnL",
                                           ylabel="quote currency", height=320), key="pnl",
                  what="total PnL", where=widgets.window_text(start, end))
    expo = hist.filter(pl.col("metric").is_in(["net_exposure", "gross_exposure"])).rename({"metric": "series"})
    widgets.chart(right, plots.lines_figure(expo, "ts", "value", by=("series",), title="Exposure",
                                            ylabel="quote currency", height=320), key="exposure",
                  what="exposure", where=widgets.window_text(start, end))

    st.subheader("Positions")
    pos = now_rows.filter(pl.col("scope") == "position")
    if pos.is_empty():
        st.caption("No open positions.")
    else:
        widgets.table(st, wide(pos, ["key", "detail"]), "risk_positions")
    by = now_rows.filter(pl.col("scope").is_in(["asset", "venue"]))
    if not by.is_empty():
        st.subheader("Exposure by asset and venue")
        widgets.table(st, wide(by, ["scope", "key"]), "risk_exposure")


view()
