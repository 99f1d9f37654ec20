"""Microstructure: spreads, depth, imbalance, order flow imbalance and lead-lag for a window."""

from __future__ import annotations

import datetime as dt

import polars as pl
import streamlit as st

from lab import leadlag, micro, plots
from streamlit_apps import compute, data, widgets

st.title("Microstructure")

with st.sidebar:
    market = st.selectbox("Market", data.markets("quotes") or ["BTC-USD"])
    lake_venues = data.venues_of(market)
    venues = st.multiselect("Venues", lake_venues, default=lake_venues,
                            help="venues with quotes for this market in the lake's last 10 minutes")
    minutes = st.number_input("Window (minutes)", min_value=1, max_value=24 * 60, value=10, step=1)
    bucket = st.selectbox("Bucket", ["1s", "5s", "10s", "1m"], index=0)
    levels = st.slider("Depth levels", min_value=1, max_value=25, value=10)
    max_lag_ms = st.number_input("Lead-lag: max lag (ms)", min_value=100, max_value=10_000, value=1000, step=100)

end = data.window_end("quotes")
start = end - dt.timedelta(minutes=int(minutes))
where = widgets.window_text(start, end)
st.caption(f"{market}, {where}")
if not venues:
    st.info("Pick at least one venue.")
    st.stop()


@st.cache_data(ttl=10, show_spinner="Reading quotes and books ...", max_entries=4)
def _load(root: str, market: str, venues: tuple[str, ...], start: dt.datetime, end: dt.datetime, bucket: str,
          levels: int) -> dict[str, pl.DataFrame]:
    syms = data.market_symbols(market)
    q = data.scan_window("quotes", start=start, end=end, symbols=syms, venues=list(venues),
                         columns=["ts_exchange", "venue", "symbol", "bid_px", "bid_qty", "ask_px", "ask_qty"])
    lq = micro.with_quote_metrics(q.lazy())
    per_bucket = (
        lq.sort("ts_exchange")
        .group_by_dynamic("ts_exchange", every=bucket, group_by="venue")
        .agg(pl.col("quoted_spread_bps").mean().alias("spread_bps"), pl.col("imbalance").mean())
        .collect()
    )
    summary = lq.group_by("venue").agg(
        pl.col("quoted_spread_bps").mean().alias("mean_spread_bps"),
        pl.col("quoted_spread_bps").median().alias("median_spread_bps"),
        pl.col("imbalance").mean().alias("mean_imbalance"),
        pl.len().alias("quotes"),
    ).sort("venue").collect()
    flow = micro.ofi(q.lazy(), every=bucket, by=("venue",)).collect()
    snaps = data.scan_window("book_snapshots", start=start, end=end, symbols=syms, venues=list(venues))
    dep = compute.depth(snaps.lazy(), levels=levels, by=("venue",)).collect()
    return {"quotes": q, "per_bucket": per_bucket, "summary": summary, "ofi": flow, "depth": dep}


@st.cache_data(ttl=30, show_spinner="Estimating lead-lag (Hayashi-Yoshida) ...", max_entries=4)
def _leadership(root: str, market: str, venues: tuple[str, ...], start: dt.datetime, end: dt.datetime,
                max_lag_ms: int) -> pl.DataFrame:
    q = data.scan_window("quotes", start=start, end=end, symbols=data.market_symbols(market), venues=list(venues),
                         columns=["ts_exchange", "venue", "symbol", "bid_px", "ask_px"])
    return leadlag.venue_leadership(q.lazy(), max_lag_ms=float(max_lag_ms),
                                    step_ms=max(1.0, max_lag_ms / 100)).collect()


d = _load(data.lake_root(), market, tuple(venues), start, end, bucket, int(levels))
if d["quotes"].is_empty():
    widgets.no_data(f"{market} quotes on {', '.join(venues)}", where)
    st.stop()

summary = d["summary"]
if not d["depth"].is_empty():
    summary = summary.join(
        d["depth"].group_by("venue").agg((pl.col("bid_depth") + pl.col("ask_depth")).mean().alias("mean_depth")),
        on="venue", how="left")
# Delta: the venue's mean spread against the tightest venue's (0 for the tightest; wider shows red).
tightest = summary["mean_spread_bps"].min()
widgets.metric_rows([{"label": f"{r['venue']} spread (bps)", "value": f"{r['mean_spread_bps']:.2f}",
                      "delta": f"{r['mean_spread_bps'] - tightest:+.2f} vs tightest", "delta_color": "inverse",
                      "help": f"mean level-1 imbalance {r['mean_imbalance']:+.2f}"}
                     for r in summary.iter_rows(named=True)])
widgets.table(st, summary, "microstructure_summary")

left, right = st.columns(2)
widgets.chart(left, plots.lines_figure(d["per_bucket"], "ts_exchange", "spread_bps", by=("venue",),
                                     title=f"Quoted spread (bps), mean per {bucket}", xlabel="time (UTC)",
                                     ylabel="bps", height=320), key="spread", what=f"{market} spreads", where=where)
widgets.chart(right, plots.lines_figure(d["per_bucket"], "ts_exchange", "imbalance", by=("venue",),
                                      title="Level-1 imbalance (bid - ask) / (bid + ask)", xlabel="time (UTC)",
                                      ylabel="imbalance", height=320), key="imbalance", what=f"{market} imbalance",
              where=where)

left, right = st.columns(2)
if d["depth"].is_empty():
    widgets.no_data(f"{market} book snapshots", where, left)
else:
    dep_long = d["depth"].unpivot(index=["venue", "ts_exchange"], on=["bid_depth", "ask_depth"],
                                  variable_name="side", value_name="size")
    widgets.chart(left, plots.lines_figure(dep_long, "ts_exchange", "size", by=("venue", "side"),
                                         title=f"Depth in the top {levels} levels (base units)",
                                         xlabel="time (UTC)", ylabel="size", height=320), key="depth",
                  what=f"{market} depth", where=where)
flow = d["ofi"].drop_nulls()  # lab.micro.ofi: venue, bucket, ofi, n_events, mid_change
corr = flow.group_by("venue").agg(pl.corr("ofi", "mid_change").alias("corr")).sort("venue")
widgets.chart(right, plots.lines_figure(flow, "ofi", "mid_change", by=("venue",), mode="markers",
                                      title=f"OFI vs mid change per {bucket} (Cont, Kukanov & Stoikov)",
                                      xlabel="OFI (base units)", ylabel="mid change", height=320), key="ofi",
              what=f"{market} order-flow imbalance", where=where)
right.caption("corr(OFI, Δmid): " + ", ".join(f"{v} {c:+.2f}" for v, c in corr.iter_rows() if c is not None))

st.subheader("Lead-lag")
st.caption("Hayashi-Yoshida correlation of mid changes by lag (lab.leadlag.venue_leadership): "
           "each venue's delay behind the leader, in ms.")
lead = _leadership(data.lake_root(), market, tuple(venues), start, end, int(max_lag_ms))
if lead.is_empty():
    widgets.no_data(f"lead-lag (two venues with enough {market} quotes)", where)
else:
    widgets.metric_rows([{"label": f"{r['venue']} lag", "value": f"{r['lag_ms']:+.0f} ms",
                          "delta": "leader" if r["is_leader"] else f"corr {r['mean_corr']:.2f}", "delta_color": "off"}
                         for r in lead.sort("venue").iter_rows(named=True)])
    widgets.chart(st, plots.bar_figure(lead.sort("venue"), "venue", "lag_ms",
                                       title="Delay behind the leading venue (ms)", ylabel="ms", height=300),
                  key="leadlag", what="lead-lag", where=where)
