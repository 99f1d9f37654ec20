# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Microstructure of one market over a day
#
# **How does one market trade, venue by venue?** Quoted spreads, book depth and
# imbalance, order-flow imbalance (OFI) against price moves, the volatility
# signature plot, VPIN, and which venue leads the others, for one market (USD and
# USDT books merged) over a day, from the lake.

# %% tags=["parameters"]
# lake directory; None = $LAB_DATA/lake
lake = None
# the UTC day (YYYY-MM-DD); None = the last day with data
date = None
# the market (USD/USDT merged) and venues (None = all)
symbol = "BTC-USDT"
venues = None
# grid for book features
every = "1s"
depth = 10

# %% tags=["app"]
import datetime as dt

import polars as pl

import lab
from lab import plots
from lab import leadlag, micro, volatility
from lab.bars import ohlcv
from lab.book import rebuild, with_book_features
from lab.widgets import market_of
from lab.reports import day_range, newest, require_rows, show, spread_summary

lk = lab.Lake(lake) if lake else lab.default_lake()
day = date or newest(lk, "trades").date().isoformat()
start, end = day_range(day)
end = min(end, newest(lk, "quotes"))  # a day still being recorded ends now
market = market_of(symbol)
members = [s for s in lk.scan("quotes").select(pl.col("symbol").unique()).collect().to_series().to_list()
           if market_of(s) == market]


def scan(table: str) -> pl.LazyFrame:
    return lk.scan(table, venue=venues, symbol=members, start=start, end=end)


require_rows(scan("quotes"), "quotes", day, lk)  # an empty day stops here, with what the lake has


print(f"{market} on {day}: symbols {', '.join(members)}")

# %% [markdown] tags=["app"]
# ## Spreads
# Quoted spread (bps of mid) over every top-of-book update, per venue, and its
# one-minute average through the day.

# %% tags=["app"]
spread_summary(scan("quotes")).collect()

# %% tags=["app"]
spread_1m = (scan("quotes").with_columns(((pl.col("ask_px") - pl.col("bid_px")) /
                                          ((pl.col("ask_px") + pl.col("bid_px")) / 2) * 1e4).alias("spread_bps"))
             .sort("ts_exchange").group_by_dynamic("ts_exchange", every="1m", group_by=["venue", "symbol"])
             .agg(pl.col("spread_bps").mean()).collect())
show(plots.lines_figure(spread_1m, "ts_exchange", "spread_bps", title="Mean quoted spread per minute (bps)"))

# %% [markdown] tags=["app"]
# ## Depth and imbalance
# Books rebuilt on a one-second grid from `book_updates`: size within 10 bps of the
# mid on each side and the top-of-book imbalance (bid − ask)/(bid + ask).

# %% tags=["app"]
books = rebuild(scan("book_updates"), depth=depth, every=every, start=start, end=end)
feat = with_book_features(books, depth=depth).select(
    "venue", "symbol", "ts_exchange", "mid", "spread_bps", "imbalance_1", "depth_bid_10bps", "depth_ask_10bps").collect()
feat.group_by("venue").agg(pl.col("depth_bid_10bps", "depth_ask_10bps", "imbalance_1").mean()).sort("venue")

# %% tags=["app"]
depth_1m = (feat.sort("ts_exchange").group_by_dynamic("ts_exchange", every="1m", group_by=["venue", "symbol"])
            .agg(pl.col("depth_bid_10bps", "depth_ask_10bps").mean()))
show(plots.lines_figure(depth_1m, "ts_exchange", ["depth_bid_10bps", "depth_ask_10bps"],
                        title="Size within 10 bps of mid (base units), 1-minute mean"))

# %% [markdown] tags=["app"]
# ## Does imbalance predict the next move?
# Correlation of the top-of-book imbalance with the mid's return over the next
# second, per venue (positive: the heavier side wins).

# %% tags=["app"]
nxt = (feat.sort("venue", "symbol", "ts_exchange")
       .with_columns((pl.col("mid").shift(-1).over("venue", "symbol") / pl.col("mid") - 1).alias("ret_next")))
nxt.group_by("venue").agg(pl.corr("imbalance_1", "ret_next").alias("corr_imbalance_next_ret"),
                          pl.len().alias("seconds")).sort("venue")

# %% [markdown] tags=["app"]
# ## Order-flow imbalance and price moves
# OFI per second (Cont, Kukanov & Stoikov 2014) against the mid change over the same
# second: the slope is the price impact of one unit of net order flow.

# %% tags=["app"]
of = micro.ofi(scan("quotes"), "1s").drop_nulls("mid_change").collect()
of.group_by("venue").agg(pl.corr("ofi", "mid_change").alias("corr_ofi_dmid"),
                         (pl.cov("ofi", "mid_change") / pl.col("ofi").var()).alias("impact_per_unit"),
                         pl.len().alias("seconds")).sort("venue")

# %% [markdown] tags=["app"]
# ## Activity, volatility and toxicity
# Notional per minute; the signature plot (realised variance against the sampling
# interval: microstructure noise inflates it at short intervals); VPIN over volume
# buckets (bulk volume classification).

# %% tags=["app"]
bars = ohlcv(scan("trades"), "1m").collect()
show(plots.lines_figure(bars, "bucket", "notional", title="Notional traded per minute (quote units)"))

# %% tags=["app"]
sig = volatility.signature_plot(scan("quotes"), ("1s", "2s", "5s", "10s", "30s", "1m")).collect()
show(plots.lines_figure(sig, "seconds", "rv", mode="lines+markers", log_x=True,
                        title="Signature plot: realised variance vs sampling interval (s)"))

# %% tags=["app"]
vp = micro.vpin(scan("trades"), n_buckets=50, every="10s", window=10).collect()
show(plots.lines_figure(vp.drop_nulls("vpin"), "ts_end", "vpin", title="VPIN (50 buckets, window 10)"))

# %% [markdown] tags=["app"]
# ## Who leads?
# Hayashi–Yoshida lead-lag between the venues' mids: the leader moves first, the
# others follow ``lag_ms`` later.

# %% tags=["app"]
leadlag.venue_leadership(lk.scan("quotes", venue=venues, symbol=members, start=start, end=end),
                         max_lag_ms=250, step_ms=10).collect()
