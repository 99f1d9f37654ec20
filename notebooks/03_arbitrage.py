# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Cross-venue and triangular arbitrage
#
# **Is there an edge after fees, and how much of it survives my latency?** Every
# moment where buying on one venue and selling on another pays after taker fees on
# both legs and after walking the book for the trade size, grouped into episodes;
# which venue lags; how the edge decays with 5/50/200 ms of latency; triangular
# cycles within each venue. All from `lab.arbitrage` (the live detector `lab
# arbitrage` applies the same rules to the live bus).

# %% tags=["parameters"]
# lake directory; None = $LAB_DATA/lake
lake = None
# hours of history to scan, ending at the last quote (None = everything)
hours = 1.0
# taker fees in bps per venue (None = config/arbitrage.toml or the built-in schedule)
fees = None
# trade size per asset, base units (None = the config's)
sizes = None
# a venue quote older than this (ms) is stale and never used
max_age_ms = 2000.0
# latencies (ms) for the decay question
latencies_ms = [5.0, 50.0, 200.0]
# fees for the "what if I paid almost nothing" view (bps a leg)
low_fee_bps = 0.5

# %% tags=["app"]
import datetime as dt
from pathlib import Path

import plotly.express as px
import polars as pl

import lab
from lab.arbitrage import cross_venue, episodes, load_config, summary, triangular
from lab.reports import newest

cfg = load_config("config/arbitrage.toml" if Path("config/arbitrage.toml").exists() else None)
fees = fees if fees is not None else cfg.fees_bps
sizes = sizes if sizes is not None else cfg.sizes
lk = lab.Lake(lake) if lake else lab.default_lake()
last = newest(lk, "quotes", "ts_local")  # an empty lake stops here with one line
start = None if hours is None else last - dt.timedelta(hours=hours)
quotes = lk.scan("quotes", start=start)
print(f"quotes from {start or 'the start'} to {last}; fees {fees} bps; sizes {sizes}")

# %% [markdown] tags=["app"]
# ## Signals at real taker fees
# Rows of the `arbitrage_signals` layout: net edge after both fees and the walk.

# %% tags=["app"]
signals = cross_venue(quotes, fees=fees, size=sizes, max_age=max_age_ms).collect()
print(f"{signals.height} moments with a positive net edge at the configured fees")
signals.sort("net_edge_bps", descending=True).head(20)

# %% [markdown] tags=["app"]
# ## Episodes at low fees
# At real fees the simulated venues rarely cross; at `low_fee_bps` a leg the
# lead-lag windows show up. One row per episode: start, end, duration, peak and
# time-weighted average net edge, size, profit at the start, who opened and who
# closed it.

# %% tags=["app"]
timeline = cross_venue(quotes, fees=low_fee_bps, size=sizes, max_age=max_age_ms,
                       keep="episodes").collect()
eps = episodes(timeline.lazy()).collect()
print(f"{eps.height} episodes")
eps.sort("peak_net_edge_bps", descending=True).head(10)

# %% tags=["app"]
s = {k: v.collect() for k, v in summary(timeline.lazy(), latencies_ms=latencies_ms).items()}
s["per_hour"]

# %% tags=["app"]
s["duration"]

# %% [markdown] tags=["app"]
# ## Which venue lags?
# The venue whose update closes a window is catching up with the leader.

# %% tags=["app"]
s["lagging"]

# %% tags=["app"]
px.histogram(eps.to_pandas() if eps.height else None, x="duration_ms", color="closed_by",
             nbins=60, title="Episode duration by the venue that closed it") if eps.height else None

# %% [markdown] tags=["app"]
# ## How much edge survives latency?
# Share of episodes still profitable, and the mean net edge, when an order
# reaches the venue this many ms after the window opened.

# %% tags=["app"]
s["latency"]

# %% [markdown] tags=["app"]
# ## Triangular cycles within each venue

# %% tags=["app"]
tri = triangular(quotes, cycles=cfg.triangles, fees=low_fee_bps,
                 notional=cfg.triangle_notional, max_age=max_age_ms).collect()
tri.group_by("buy_venue", "asset").agg(pl.len().alias("moments"),
                                       pl.col("net_edge_bps").max().alias("best_bps"))
