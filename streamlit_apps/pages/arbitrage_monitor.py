"""Arbitrage monitor: cross-venue opportunities as the live detector sees them, episodes, alerts."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import streamlit as st

from lab import arbitrage, plots
from lab.errors import ConfigError
from lab.schema import TS
from streamlit_apps import compute, data, widgets

st.title("Arbitrage monitor")

# The detector's own configuration (`lab demo` passes its path in LAB_ARBITRAGE_CONFIG): the page
# and `lab arbitrage` apply the same fees, size, staleness and threshold, through the same
# function (lab.arbitrage.cross_venue), so they agree on what an opportunity is.
cfg_path = data.arbitrage_config_path()
try:
    cfg = arbitrage.load_config(cfg_path)
except (ConfigError, OSError, ValueError) as e:
    st.error(f"Cannot read the arbitrage config {cfg_path}: {e}; using the built-in defaults.")
    cfg = arbitrage.ArbConfig()

with st.sidebar:
    markets = data.markets("quotes") or ["BTC-USD"]
    market = st.selectbox("Market", markets, help="USD, USDT and USDC quotes are treated as one")
    asset = market.split("-")[0]
    lake_venues = data.venues_of(market)
    venues = st.multiselect("Venues", lake_venues, default=lake_venues,
                            help="venues with quotes for this market in the lake's last 10 minutes")
    size = st.number_input("Size (base units)", min_value=0.0001, max_value=1e6, value=cfg.size_of(asset),
                           step=0.01, format="%.4f", help="walked on each book, as the detector does")
    threshold = st.number_input("Opportunity above (net bps)", min_value=-1e4, max_value=1e4,
                                value=float(cfg.min_edge_bps), step=0.5)
    stale_s = st.number_input("Ignore books older than (seconds)", min_value=0.1, max_value=3600.0,
                              value=cfg.max_age_ms / 1000.0, step=0.5, help="a stale venue creates fake arbitrage")
    hist_min = st.number_input("History (minutes)", min_value=1, max_value=24 * 60, value=60, step=5)
    with st.expander("Taker fees (bps)"):
        fees = {v: st.number_input(v, min_value=0.0, max_value=1000.0, value=cfg.fee_bps(v), step=1.0,
                                   key=f"fee_{v}")
                for v in sorted(set(lake_venues) | set(cfg.fees_bps))}
    live = st.toggle("Auto refresh", value=True)

changed = [k for k, same in (("fees", all(fees[v] == cfg.fee_bps(v) for v in fees)),
                             ("size", size == cfg.size_of(asset)),
                             ("threshold", threshold == cfg.min_edge_bps),
                             ("staleness", stale_s * 1000.0 == cfg.max_age_ms)) if not same]
depth = cfg.depth
source = f"books walked {depth} levels deep (book_snapshots)" if depth else "top of book (quotes)"
st.caption(f"Detector config {cfg_path or '(built-in defaults)'}: fees "
           + ", ".join(f"{v} {cfg.fee_bps(v):g}" for v in sorted(fees)) + f" bps · {source}. "
           + ("Edited here: " + ", ".join(changed) + " (the alert log below used the file's values)."
              if changed else "The page uses the same values as the detector."))
if not venues:
    st.info("Pick at least two venues.")
    st.stop()


@st.cache_data(ttl=2, show_spinner=False, max_entries=8)
def _timeline(root: str, market: str, venues: tuple[str, ...], start: dt.datetime, end: dt.datetime,
              fees: tuple[tuple[str, float], ...], size: float, threshold: float, stale_s: float,
              depth: int, default_fee: float, rates: tuple[tuple[str, float], ...]) -> pl.DataFrame:
    """Every comparison of two venues' books (``lab.arbitrage.cross_venue(keep="all")``)."""
    syms = data.market_symbols(market)
    books = None
    if depth > 0:
        snaps = data.scan_window("book_snapshots", start=start, end=end, symbols=syms, venues=list(venues))
        if not snaps.is_empty():
            books = compute.books_from_snapshots(snaps.lazy(), depth=depth).collect()
    if books is None:
        books = data.scan_window("quotes", start=start, end=end, symbols=syms, venues=list(venues),
                                 columns=["ts_exchange", "ts_local", "venue", "symbol", "bid_px", "bid_qty",
                                          "ask_px", "ask_qty"])
    if books.is_empty():
        return pl.DataFrame()
    return arbitrage.cross_venue(books.lazy(), fees=dict(fees), size={market.split("-")[0]: size},
                                 max_age=stale_s * 1000.0, min_edge_bps=threshold, quote_rates=dict(rates),
                                 default_fee_bps=default_fee, keep="all").collect()


def timeline(start: dt.datetime, end: dt.datetime) -> pl.DataFrame:
    return _timeline(data.lake_root(), market, tuple(venues), start, end, tuple(sorted(fees.items())),
                     float(size), float(threshold), float(stale_s), int(depth), float(cfg.default_fee_bps),
                     tuple(sorted(cfg.quote_rates.items())))


@st.fragment(run_every=2.0 if live else None)
@widgets.guarded("Arbitrage monitor")
def current() -> None:
    widgets.health_strip(stale_s)
    end = data.window_end("quotes")
    end = end.replace(microsecond=0) + dt.timedelta(seconds=1)
    start = end - dt.timedelta(seconds=60)
    tl = timeline(start, end)
    if tl.is_empty():
        widgets.no_data(f"{market} books on {', '.join(venues)}", f"the minute up to {end:%Y-%m-%d %H:%M:%S} UTC")
        return
    last = tl.sort("ts").group_by("buy_venue", "sell_venue").agg(pl.all().last())
    fresh = last.filter(pl.col("fresh") & (pl.col("ts") >= tl["ts"].max() - dt.timedelta(seconds=stale_s)))
    if fresh.is_empty():
        st.info(f"No fresh pair of {market} books (both newer than {stale_s:g} s) in the last minute.")
        return
    edges = fresh.select("buy_venue", "sell_venue", "buy_px", "sell_px", "gross_edge_bps", "net_edge_bps",
                         "size", "profit_quote", "ts").sort("net_edge_bps", descending=True)
    best = edges.row(0, named=True)
    opp = best["net_edge_bps"] > threshold
    widgets.metric_rows([
        {"label": "Best net edge (bps)", "value": f"{best['net_edge_bps']:+.2f}",
         "delta": "opportunity" if opp else f"below {threshold:g} bps", "delta_color": "normal" if opp else "off"},
        {"label": "Best pair", "value": f"{best['buy_venue']} → {best['sell_venue']}"},
        {"label": "Gross edge (bps)", "value": f"{best['gross_edge_bps']:+.2f}"},
        {"label": f"Profit for {best['size']:g} {asset} (USD)", "value": f"{best['profit_quote']:+,.2f}",
         "help": "net of taker fees on both legs, for exactly this size walked on the books"},
    ])
    st.subheader(f"Current edges, {market}, size {size:g} {asset}")
    widgets.table(st, edges, "arbitrage_edges", column_config={
        "net_edge_bps": st.column_config.NumberColumn("net edge (bps)", format="%.2f"),
        "gross_edge_bps": st.column_config.NumberColumn("gross edge (bps)", format="%.2f"),
    })
    missing = {(b, s) for b in venues for s in venues if b != s} - set(zip(edges["buy_venue"], edges["sell_venue"]))
    if missing:
        st.caption("No current edge (a book too thin for the size, or stale): "
                   + ", ".join(f"{b} → {s}" for b, s in sorted(missing)))


current()

end = data.window_end("quotes").replace(microsecond=0) + dt.timedelta(seconds=1)
start = end - dt.timedelta(minutes=int(hist_min))
where = widgets.window_text(start, end)
with widgets.guard("Arbitrage history"):
    tl = timeline(start, end)

st.subheader("Episodes")
if tl.is_empty():
    eps = pl.DataFrame()
else:
    eps = arbitrage.episodes(tl.lazy()).sort("start", descending=True).collect()
if eps.is_empty():
    st.success(f"No episode above {threshold:g} bps net for {size:g} {asset} in {where}.")
else:
    eps = eps.with_columns(open=pl.col("end") >= tl["ts"].max())
    st.metric("Episodes", f"{len(eps):,}", f"{int(eps['open'].sum())} open", delta_color="off")
    widgets.table(st, eps.select("open", "asset", "buy_venue", "sell_venue", "start", "end", "duration_ms",
                                 "peak_net_edge_bps", "avg_net_edge_bps", "size", "profit_quote", "closed_by"),
                  "arbitrage_episodes", height=240)

grid = compute.edge_grid(tl.lazy()).collect() if not tl.is_empty() else \
    pl.DataFrame(schema={"ts": TS, "pair": pl.String, "net_edge_bps": pl.Float64})
widgets.chart(st, plots.lines_figure(grid, x="ts", y="net_edge_bps", by=("pair",),
                                     title=f"Net edge per venue pair (last of each second), last {int(hist_min)} minutes",
                                     xlabel="time (UTC)", ylabel="net edge (bps)", height=360),
              key="edge_history", what=f"{market} edges", where=where)

st.subheader("Alert log")
signals = data.sql(
    "SELECT ts, kind, buy_venue, sell_venue, size, gross_edge_bps, net_edge_bps, profit_quote "
    "FROM arbitrage_signals WHERE asset = ? AND ts >= ? ORDER BY ts DESC LIMIT 200",
    [asset, start],
)
# Alerts the detector's `file:` sinks wrote (relative paths live under $LAB_DATA, e.g. alerts/arbitrage.jsonl)
alert_rows = []
alerts_dir = data.data_dir() / "alerts"
for f in sorted(alerts_dir.glob("*.jsonl")) if alerts_dir.is_dir() else []:
    for ln in f.read_text(errors="replace").splitlines()[-200:]:
        try:
            a = json.loads(ln)
        except ValueError:
            continue  # a line being written
        if isinstance(a, dict) and a.get("source", "arbitrage") == "arbitrage":
            alert_rows.append({k: str(a.get(k)) for k in ("ts", "kind", "key", "message")})
if alert_rows:
    st.caption(f"{len(alert_rows)} alerts from {alerts_dir}")
    widgets.table(st, pl.DataFrame(alert_rows[::-1][:200]), "arbitrage_alerts", height=200)
if signals.is_empty():
    widgets.no_data(f"live detector signals (`lab arbitrage`) on {asset}", where)
else:
    st.caption(f"{len(signals)} signals from the live detector")
    widgets.table(st, signals, "arbitrage_signals", height=240)
