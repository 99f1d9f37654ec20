"""Microstructure of one market over a day.

Promoted from notebooks/02_microstructure.ipynb by `lab promote --cells 3,...,19` (2026-11-23),
then polished by hand (the print became a caption). The notebook's parameters are the
sidebar widgets; its cells follow.
"""

import ast  # noqa: F401  (literal parameters)
import datetime as dt  # noqa: F401  (date parameters)

import streamlit as st

from streamlit_apps import data  # noqa: F401  (the dashboards' lake)
from streamlit_apps import show as page  # page.show(x): figure -> chart, frame -> table

st.title("Microstructure of one market over a day")

# -- parameters (the notebook's `parameters` cell) -------------------------------
# Every value is checked before the notebook's cells run: a bad one is a message naming it.
import re
from pathlib import Path

import polars as pl

import lab
from lab import plots
from lab import leadlag, micro, volatility
from lab.bars import ohlcv
from lab.book import rebuild, with_book_features
from lab.widgets import latest_time, market_of
from lab.reports import day_range, spread_summary
from streamlit_apps import widgets

with st.sidebar:
    lake = st.text_input("lake", value=data.lake_root(), help="a lake directory (default: the dashboards' lake)")
    date = st.text_input("date", value="", placeholder="YYYY-MM-DD (default: the newest day)") or None
    symbol = st.text_input("symbol", value="BTC-USDT", help="BASE-QUOTE; USD, USDT and USDC count as one market")

lake_dir = Path(lake.strip()).expanduser() if lake and lake.strip() else None
if lake_dir is not None and not (lake_dir / "quotes" / "_delta_log").is_dir():
    st.error(f"lake: no lake with a `quotes` table at {lake_dir!s:.200}")
    st.stop()
lk = lab.Lake(lake_dir) if lake_dir is not None else lab.default_lake()
if date is not None:
    try:
        dt.date.fromisoformat(date.strip())
    except ValueError:
        st.error(f"date: {date[:40]!r} is not a date; use YYYY-MM-DD")
        st.stop()
    date = date.strip()
if not re.fullmatch(r"[A-Za-z0-9]{1,20}-[A-Za-z0-9]{1,20}", symbol.strip()):
    st.error(f"symbol: {symbol[:40]!r} is not BASE-QUOTE, e.g. BTC-USDT")
    st.stop()
symbol = symbol.strip().upper()
with widgets.guard("lake"):
    lake_symbols = lk.scan("quotes").select("venue", "symbol").unique().collect()
market = market_of(symbol)
members = sorted({s for s in lake_symbols["symbol"] if market_of(s) == market})
if not members:
    widgets.no_data(market, f"the lake at {lk.root} (it has {', '.join(sorted(set(lake_symbols['symbol'])))})")
    st.stop()
lake_venues = sorted(set(lake_symbols.filter(pl.col("symbol").is_in(members))["venue"]))
with st.sidebar:
    venues = st.multiselect("venues", lake_venues, default=lake_venues) or None
    every = st.selectbox("every", ["1s", "2s", "5s", "10s", "30s", "1m"], index=0)
    depth = st.number_input("depth", value=10, min_value=1, max_value=50, step=1)

# -- cell 3 ----------------------------------------------------------------------
with widgets.guard("data"):
    day = date or latest_time(lk, "trades").date().isoformat()
    start, end = day_range(day)
    newest = latest_time(lk, "quotes")
    end = min(end, newest + dt.timedelta(microseconds=1))  # a day still being recorded ends now
if end <= start:
    widgets.no_data(market, f"{day} (the lake at {lk.root} ends {newest:%Y-%m-%d %H:%M:%S} UTC)")
    st.stop()


def scan(table: str) -> pl.LazyFrame:
    return lk.scan(table, venue=venues, symbol=members, start=start, end=end)


with widgets.guard("data"):
    n_quotes = scan("quotes").select(pl.len()).collect().item()
if not n_quotes:
    widgets.no_data(f"{market} quotes on {', '.join(venues or lake_venues)}", f"{day} in the lake at {lk.root}")
    st.stop()
st.caption(f"{market} on {day}: symbols {', '.join(members)}")

# The notebook's cells: an error in one (a day too short for a statistic, say) is one message.
with widgets.guard("Microstructure"):
    # -- cell 4 ----------------------------------------------------------------------
    st.markdown('## Spreads\nQuoted spread (bps of mid) over every top-of-book update, per venue, and its\none-minute average through the day.')

    # -- cell 5 ----------------------------------------------------------------------
    page.show(spread_summary(scan("quotes")).collect())

    # -- cell 6 ----------------------------------------------------------------------
    spread_1m = (scan("quotes").with_columns(((pl.col("ask_px") - pl.col("bid_px")) /
                                              ((pl.col("ask_px") + pl.col("bid_px")) / 2) * 1e4).alias("spread_bps"))
                 .sort("ts_exchange").group_by_dynamic("ts_exchange", every="1m", group_by=["venue", "symbol"])
                 .agg(pl.col("spread_bps").mean()).collect())
    page.display(plots.lines_figure(spread_1m, "ts_exchange", "spread_bps", title="Mean quoted spread per minute (bps)"))

    # -- cell 7 ----------------------------------------------------------------------
    st.markdown('## Depth and imbalance\nBooks rebuilt on a one-second grid from `book_updates`: size within 10 bps of the\nmid on each side and the top-of-book imbalance (bid − ask)/(bid + ask).')

    # -- cell 8 ----------------------------------------------------------------------
    books = rebuild(scan("book_updates"), depth=depth, every=every, start=start, end=end)
    feat = with_book_features(books, depth=depth).select(
        "venue", "symbol", "ts_exchange", "mid", "spread_bps", "imbalance_1", "depth_bid_10bps", "depth_ask_10bps").collect()
    page.show(feat.group_by("venue").agg(pl.col("depth_bid_10bps", "depth_ask_10bps", "imbalance_1").mean()).sort("venue"))

    # -- cell 9 ----------------------------------------------------------------------
    depth_1m = (feat.sort("ts_exchange").group_by_dynamic("ts_exchange", every="1m", group_by=["venue", "symbol"])
                .agg(pl.col("depth_bid_10bps", "depth_ask_10bps").mean()))
    page.display(plots.lines_figure(depth_1m, "ts_exchange", ["depth_bid_10bps", "depth_ask_10bps"],
                            title="Size within 10 bps of mid (base units), 1-minute mean"))

    # -- cell 10 ---------------------------------------------------------------------
    st.markdown("## Does imbalance predict the next move?\nCorrelation of the top-of-book imbalance with the mid's return over the next\nsecond, per venue (positive: the heavier side wins).")

    # -- cell 11 ---------------------------------------------------------------------
    nxt = (feat.sort("venue", "symbol", "ts_exchange")
           .with_columns((pl.col("mid").shift(-1).over("venue", "symbol") / pl.col("mid") - 1).alias("ret_next")))
    page.show(nxt.group_by("venue").agg(pl.corr("imbalance_1", "ret_next").alias("corr_imbalance_next_ret"),
                              pl.len().alias("seconds")).sort("venue"))

    # -- cell 12 ---------------------------------------------------------------------
    st.markdown('## Order-flow imbalance and price moves\nOFI per second (Cont, Kukanov & Stoikov 2014) against the mid change over the same\nsecond: the slope is the price impact of one unit of net order flow.')

    # -- cell 13 ---------------------------------------------------------------------
    of = micro.ofi(scan("quotes"), "1s").drop_nulls("mid_change").collect()
    page.show(of.group_by("venue").agg(pl.corr("ofi", "mid_change").alias("corr_ofi_dmid"),
                             (pl.cov("ofi", "mid_change") / pl.col("ofi").var()).alias("impact_per_unit"),
                             pl.len().alias("seconds")).sort("venue"))

    # -- cell 14 ---------------------------------------------------------------------
    st.markdown('## Activity, volatility and toxicity\nNotional per minute; the signature plot (realised variance against the sampling\ninterval: microstructure noise inflates it at short intervals); VPIN over volume\nbuckets (bulk volume classification).')

    # -- cell 15 ---------------------------------------------------------------------
    bars = ohlcv(scan("trades"), "1m").collect()
    page.display(plots.lines_figure(bars, "bucket", "notional", title="Notional traded per minute (quote units)"))

    # -- cell 16 ---------------------------------------------------------------------
    sig = volatility.signature_plot(scan("quotes"), ("1s", "2s", "5s", "10s", "30s", "1m")).collect()
    page.display(plots.lines_figure(sig, "seconds", "rv", mode="lines+markers", log_x=True,
                            title="Signature plot: realised variance vs sampling interval (s)"))

    # -- cell 17 ---------------------------------------------------------------------
    vp = micro.vpin(scan("trades"), n_buckets=50, every="10s", window=10).collect()
    page.display(plots.lines_figure(vp.drop_nulls("vpin"), "ts_end", "vpin", title="VPIN (50 buckets, window 10)"))

    # -- cell 18 ---------------------------------------------------------------------
    st.markdown("## Who leads?\nHayashi–Yoshida lead-lag between the venues' mids: the leader moves first, the\nothers follow ``lag_ms`` later.")

    # -- cell 19 ---------------------------------------------------------------------
    page.show(leadlag.venue_leadership(lk.scan("quotes", venue=venues, symbol=members, start=start, end=end),
                             max_lag_ms=250, step_ms=10).collect())
