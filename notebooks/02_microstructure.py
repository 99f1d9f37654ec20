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
# imbalance, whether imbalance predicts the next move, trading activity and
# realised volatility across sampling intervals, for one market (USD and USDT
# quotes merged) on each venue, from the lake.

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

# %%
import datetime as dt

import polars as pl

import lab
from lab import plots
from lab.bars import ohlcv
from lab.book import rebuild, with_book_features
from lab.live import latest_time, market_of
from lab.reports import day_range, show, spread_summary

lk = lab.Lake(lake) if lake else lab.default_lake()
day = date or latest_time(lk, "trades").date().isoformat()
start, end = day_range(day)
market = market_of(symbol)
members = [s for s in lk.scan("quotes").select(pl.col("symbol").unique()).collect().to_series().to_list()
           if market_of(s) == market]


def scan(table: str) -> pl.LazyFrame:
    return lk.scan(table, venue=venues, symbol=members, start=start, end=end)


print(f"{market} on {day}: symbols {members}")

# %% [markdown]
# ## Spreads
# Quoted spread (bps of mid) over every top-of-book update, per venue, and its
# one-minute average through the day.

# %%
spread_summary(scan("quotes")).collect()

# %%
spread_1m = (scan("quotes").with_columns(((pl.col("ask_px") - pl.col("bid_px")) /
                                          ((pl.col("ask_px") + pl.col("bid_px")) / 2) * 1e4).alias("spread_bps"))
             .sort("ts_exchange").group_by_dynamic("ts_exchange", every="1m", group_by=["venue", "symbol"])
             .agg(pl.col("spread_bps").mean()).collect())
show(plots.lines_figure(spread_1m, "ts_exchange", "spread_bps", title="Mean quoted spread per minute (bps)"))

# %% [markdown]
# ## Depth and imbalance
# Books rebuilt on a one-second grid from `book_updates`: size within 10 bps of the
# mid on each side and the top-of-book imbalance (bid − ask)/(bid + ask).

# %%
books = rebuild(scan("book_updates"), depth=depth, every=every, start=start, end=end)
feat = with_book_features(books, depth=depth).select(
    "venue", "symbol", "ts_exchange", "mid", "spread_bps", "imbalance_1", "depth_bid_10bps", "depth_ask_10bps").collect()
feat.group_by("venue").agg(pl.col("depth_bid_10bps", "depth_ask_10bps", "imbalance_1").mean()).sort("venue")

# %%
depth_1m = (feat.sort("ts_exchange").group_by_dynamic("ts_exchange", every="1m", group_by=["venue", "symbol"])
            .agg(pl.col("depth_bid_10bps", "depth_ask_10bps").mean()))
show(plots.lines_figure(depth_1m, "ts_exchange", ["depth_bid_10bps", "depth_ask_10bps"],
                        title="Size within 10 bps of mid (base units), 1-minute mean"))

# %% [markdown]
# ## Does imbalance predict the next move?
# Correlation of the top-of-book imbalance with the mid's return over the next
# second, per venue (positive: the heavier side wins).

# %%
nxt = (feat.sort("venue", "symbol", "ts_exchange")
       .with_columns((pl.col("mid").shift(-1).over("venue", "symbol") / pl.col("mid") - 1).alias("ret_next")))
nxt.group_by("venue").agg(pl.corr("imbalance_1", "ret_next").alias("corr_imbalance_next_ret"),
                          pl.len().alias("seconds")).sort("venue")

# %% [markdown]
# ## Activity and volatility
# One-minute bars per venue, and a signature plot: realised variance of mid
# returns sampled every k seconds, scaled per second (flat without microstructure noise).

# %%
bars = ohlcv(scan("trades"), "1m").collect()
show(plots.lines_figure(bars, "bucket", "notional", title="Notional traded per minute (quote units)"))

# %%
sig = pl.concat([
    feat.sort("ts_exchange").group_by("venue", maintain_order=True).agg(
        (pl.col("mid").gather_every(k).log().diff().pow(2).sum() / (pl.len() - 1)).alias("rv_per_s"))
    .with_columns(pl.lit(k).alias("k_seconds"))
    for k in (1, 2, 5, 10, 20, 30, 60)])
show(plots.lines_figure(sig, "k_seconds", "rv_per_s", by=["venue"], mode="lines+markers", log_x=True,
                        title="Signature plot: realised variance per second vs sampling interval"))
