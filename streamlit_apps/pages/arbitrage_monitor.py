"""Arbitrage monitor: cross-venue edges net of taker fees, episodes, alerts and the last hour."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import streamlit as st

from lab.schema import TS
from lab import arbitrage, plots
from lab.venues import DEFAULT_TAKER_BPS
from streamlit_apps import compute, data, widgets


st.title("Arbitrage monitor")

with st.sidebar:
    markets = [m for m in data.markets("quotes")] or ["BTC-USD"]
    market = st.selectbox("Market", markets, help="USD, USDT and USDC quotes are treated as one")
    size = st.number_input("Size (base units)", min_value=0.0001, value=0.1, step=0.05, format="%.4f")
    threshold = st.number_input("Alert threshold (net bps)", value=0.0, step=0.5)
    stale_s = st.number_input("Ignore quotes older than (seconds)", min_value=0.5, value=5.0, step=0.5,
                              help="a stale venue creates fake arbitrage")
    hist_min = st.number_input("History (minutes)", min_value=1, max_value=24 * 60, value=60, step=5)
    with st.expander("Taker fees (bps)"):
        fees = {v: st.number_input(v, min_value=0.0, value=f, step=1.0, key=f"fee_{v}")
                for v, f in DEFAULT_TAKER_BPS.items()}
    live = st.toggle("Auto refresh", value=True)


@st.cache_data(ttl=1, show_spinner=False)
def _latest(root: str, market: str, end_key: str, stale_s: float) -> tuple[pl.DataFrame, list[str]]:
    """Each venue's latest quote of ``market``, and the venues whose feed for it went quiet.

    A quote only changes when the top of book does, so its own age says
    little; a venue is stale when nothing (no quote, no trade) of this
    market was received for ``stale_s`` seconds before the window's end.
    """
    end = dt.datetime.fromisoformat(end_key)
    start = end - dt.timedelta(seconds=60)
    syms = data.market_symbols(market)
    q = data.scan_window("quotes", start=start, symbols=syms,
                         columns=["ts_exchange", "ts_local", "venue", "bid_px", "bid_qty", "ask_px", "ask_qty"])
    t = data.scan_window("trades", start=start, symbols=syms, columns=["venue", "ts_local"])
    heard = pl.concat([q.select("venue", "ts_local"), t]).group_by("venue").agg(pl.col("ts_local").max())
    last = q.sort("ts_exchange").group_by("venue").agg(pl.all().last()).sort("venue")
    live = heard.filter(pl.col("ts_local") >= end - dt.timedelta(seconds=stale_s))["venue"]
    fresh = last.filter(pl.col("venue").is_in(live.implode()))
    stale = sorted(set(last["venue"]) - set(fresh["venue"]))
    return fresh, stale


@st.fragment(run_every=2.0 if live else None)
def current() -> None:
    widgets.health_strip(stale_s)
    end = data.window_end("quotes")
    end_key = (end.replace(microsecond=0) + dt.timedelta(seconds=1 if end.microsecond else 0)).isoformat()
    fresh, stale = _latest(data.lake_root(), market, end_key, float(stale_s))
    if stale:
        st.warning(f"Not used (nothing received for {market} in the last {stale_s:g} s): {', '.join(stale)}")
    if len(fresh) < 2:
        st.info(f"Need fresh quotes from two venues for {market}; have {len(fresh)}.")
        return
    edges = compute.cross_edges(fresh.lazy(), fees_bps=fees, size=float(size)).collect()
    best = edges.row(0, named=True)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Best net edge (bps)", f"{best['net_edge_bps']:.2f}")
    c2.metric("Best pair", f"{best['buy_venue']} → {best['sell_venue']}")
    c3.metric("Gross edge (bps)", f"{best['gross_edge_bps']:.2f}")
    c4.metric(f"Profit for {size:g} (quote)", f"{best['profit_quote']:,.2f}")
    st.subheader(f"Current edges, {market}, size {size:g}")
    st.dataframe(edges, hide_index=True, column_config={
        "net_edge_bps": st.column_config.NumberColumn("net edge (bps)", format="%.2f"),
        "gross_edge_bps": st.column_config.NumberColumn("gross edge (bps)", format="%.2f"),
    })


current()


@st.cache_data(ttl=5, show_spinner=False)
def _history(root: str, market: str, start: dt.datetime, end: dt.datetime,
             fees: tuple[tuple[str, float], ...]) -> pl.DataFrame:
    q = data.scan_window("quotes", start=start, end=end, symbols=data.market_symbols(market),
                         columns=["ts_exchange", "venue", "bid_px", "ask_px"])
    if q.is_empty():
        return pl.DataFrame(schema={"ts": TS, "pair": pl.String, "net_edge_bps": pl.Float64})
    return compute.edge_history(q, fees_bps=dict(fees)).collect()


end = data.window_end("quotes") + dt.timedelta(seconds=1)
start = end - dt.timedelta(minutes=int(hist_min))
hist = _history(data.lake_root(), market, start, end.replace(microsecond=0), tuple(sorted(fees.items())))


@st.cache_data(ttl=5, show_spinner=False)
def _episodes(root: str, market: str, start: dt.datetime, end: dt.datetime, fees: tuple[tuple[str, float], ...],
              size: float, threshold: float, stale_s: float) -> pl.DataFrame:
    """Episodes by ``lab.arbitrage`` (the notebook's function): fees on both legs, size, staleness guard."""
    q = data.scan_window("quotes", start=start, end=end, symbols=data.market_symbols(market),
                         columns=["ts_exchange", "ts_local", "venue", "symbol", "bid_px", "bid_qty",
                                  "ask_px", "ask_qty"])
    if q.is_empty():
        return pl.DataFrame()
    timeline = arbitrage.cross_venue(q.lazy(), fees=dict(fees), size=size, min_edge_bps=threshold,
                                     max_age=stale_s * 1000.0, keep="episodes")
    return arbitrage.episodes(timeline).sort("start", descending=True).collect()


st.subheader("Episodes")
eps = _episodes(data.lake_root(), market, start, end.replace(microsecond=0), tuple(sorted(fees.items())),
                float(size), float(threshold), float(stale_s))
if eps.is_empty():
    st.success(f"No episode above {threshold:g} bps net for size {size:g} in the last {int(hist_min)} minutes.")
else:
    last_ts = hist["ts"].max() if not hist.is_empty() else end
    eps = eps.with_columns(open=pl.col("end") >= last_ts - dt.timedelta(seconds=1))
    st.metric("Episodes", f"{len(eps):,}", f"{int(eps['open'].sum())} open", delta_color="off")
    st.dataframe(eps.select("open", "asset", "buy_venue", "sell_venue", "start", "end", "duration_ms",
                            "peak_net_edge_bps", "avg_net_edge_bps", "size", "profit_quote", "closed_by"),
                 hide_index=True, height=240)

if not hist.is_empty():
    widgets.chart(st, plots.lines_figure(hist, x="ts", y="net_edge_bps", by=("pair",),
                                       title=f"Net edge per venue pair, last {int(hist_min)} minutes",
                                       xlabel="time (UTC)", ylabel="net edge (bps)", height=360), key="edge_history")

st.subheader("Alert log")
asset = market.split("-")[0]
signals = data.sql(
    "SELECT ts, kind, buy_venue, sell_venue, size, gross_edge_bps, net_edge_bps, profit_quote "
    "FROM arbitrage_signals WHERE asset = ? AND ts >= ? ORDER BY ts DESC LIMIT 200",
    [asset, start],
)
# Alerts the detector's `file:` sinks wrote (relative paths live under $LAB_DATA, e.g. alerts/arbitrage.jsonl)
alert_rows = []
for f in sorted((data.data_dir() / "alerts").glob("*.jsonl")):
    for ln in f.read_text(errors="replace").splitlines()[-200:]:
        try:
            a = json.loads(ln)
        except ValueError:
            continue  # a line being written
        if isinstance(a, dict) and a.get("source", "arbitrage") == "arbitrage":
            alert_rows.append({k: a.get(k) for k in ("ts", "kind", "key", "message")})
if alert_rows:
    st.caption(f"{len(alert_rows)} alerts from {data.data_dir() / 'alerts'}")
    st.dataframe(pl.DataFrame(alert_rows[::-1][:200], strict=False), hide_index=True, height=200)
if signals.is_empty():
    st.info("No signals from the live detector (`lab arbitrage`) for this asset in the window.")
else:
    st.caption(f"{len(signals)} signals from the live detector")
    st.dataframe(signals, hide_index=True, height=240)
