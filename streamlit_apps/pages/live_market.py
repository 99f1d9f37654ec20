"""Live market: per-venue bid/ask and the trade tape of one market, refreshed every second."""

from __future__ import annotations

import datetime as dt
import time

import polars as pl
import streamlit as st

from lab import micro, plots
from streamlit_apps import compute, data, widgets

st.title("Live market")

with st.sidebar:
    markets = data.markets("quotes") or ["BTC-USD"]
    market = st.selectbox("Market", markets, help="USD, USDT and USDC quotes are shown together")
    lake_venues = data.venues_of(market)
    venues = st.multiselect("Venues", lake_venues, default=lake_venues,
                            help="venues with quotes for this market in the lake's last 10 minutes")
    window_s = st.number_input("Window (seconds)", min_value=10, max_value=3600, value=60, step=10)
    refresh_s = st.number_input("Refresh every (seconds)", min_value=0.5, max_value=60.0,
                                value=1.0, step=0.5)
    stale_s = st.number_input("Stale after (seconds)", min_value=1.0, max_value=600.0,
                              value=5.0, step=1.0, help="a feed silent this long is shown in red")
    live = st.toggle("Auto refresh", value=True)


@st.cache_data(ttl=1, show_spinner=False, max_entries=8)
def _frames(root: str, market: str, venues: tuple[str, ...], window_s: int,
            end_key: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    end = dt.datetime.fromisoformat(end_key)
    start = end - dt.timedelta(seconds=window_s)
    syms = data.market_symbols(market)
    q = data.scan_window("quotes", start=start, symbols=syms, venues=list(venues),
                         columns=["ts_exchange", "venue", "symbol", "bid_px", "bid_qty", "ask_px", "ask_qty"])
    every = f"{max(window_s * 1000 // 300, 50)}ms"  # about 300 points per line
    shown = compute.downsample_quotes(q.lazy(), every=every).collect()
    # each venue's latest quote, and its mean quoted spread over the window (the spread's yardstick)
    spread = micro.with_quote_metrics(q.lazy()).group_by("venue").agg(
        pl.col("quoted_spread_bps").mean().alias("mean_spread_bps"))
    last = micro.with_quote_metrics(q.lazy().sort("ts_exchange").group_by("venue").agg(pl.all().last())) \
        .join(spread, on="venue", how="left").sort("venue").collect()
    t = data.scan_window("trades", start=start, symbols=syms, venues=list(venues),
                         columns=["ts_exchange", "venue", "symbol", "side", "price", "qty", "trade_id"])
    tape = t.sort("ts_exchange", "venue", descending=True).head(50)  # ties: deterministic order
    return shown, last, tape


@st.fragment(run_every=refresh_s if live else None)
@widgets.guarded("Live market")
def view() -> None:
    t0, c0 = time.perf_counter(), time.process_time()
    widgets.health_strip(stale_s)
    end = data.window_end("quotes")
    # whole seconds (shared cache key across sessions), rounded up so the window is <= window_s
    end_key = (end.replace(microsecond=0) + dt.timedelta(seconds=1 if end.microsecond else 0)).isoformat()
    if not venues:
        st.info("Pick at least one venue.")
        return
    shown, last, tape = _frames(data.lake_root(), market, tuple(venues), int(window_s), end_key)
    if shown.is_empty():
        widgets.no_data(f"{market} quotes on {', '.join(venues)}",
                        f"the {int(window_s)} s up to {end:%Y-%m-%d %H:%M:%S} UTC")
        return
    # The spread's delta is its distance from the venue's mean over the window: wider than usual
    # shows red (worse for a taker), tighter green.
    items = [{"label": f"{r['venue']} mid", "value": f"{r['mid']:,.2f}",
              "delta": f"{r['quoted_spread_bps'] - r['mean_spread_bps']:+.2f} bps spread vs mean",
              "delta_color": "inverse",
              "help": f"spread {r['quoted_spread_bps']:.2f} bps now, {r['mean_spread_bps']:.2f} bps on average "
                      f"over the window"}
             for r in last.iter_rows(named=True)]
    if not tape.is_empty():
        side = tape["side"][0]
        items.append({"label": "last trade", "value": f"{tape['price'][0]:,.2f}",
                      "delta": f"{'+' if side == 'buy' else '-'}{tape['qty'][0]:g} {tape['venue'][0]} {side}",
                      "delta_color": "normal", "help": "aggressor buy green, sell red"})
    widgets.metric_rows(items)
    left, right = st.columns([3, 2])
    fig = plots.quotes_figure(shown, by=("venue",), title=f"{market} bid / ask, last {int(window_s)} s",
                              height=380)
    widgets.chart(left, fig, key="bid_ask", svg=True, what=f"{market} quotes", where=f"the last {int(window_s)} s")
    right.subheader("Trade tape")
    if tape.is_empty():
        widgets.no_data(f"{market} trades", f"the last {int(window_s)} s", right)
    else:
        widgets.table(right, tape.select("ts_exchange", "venue", "side", "price", "qty", "trade_id"),
                      "trade_tape", width="stretch", height=330)
    ms = (time.perf_counter() - t0) * 1e3
    st.caption(f"data up to {shown['ts_exchange'].max():%H:%M:%S.%f} UTC · refreshed in {ms:.0f} ms")
    widgets.log_refresh(ms, (time.process_time() - c0) * 1e3)


view()
