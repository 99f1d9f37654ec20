# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Live market
#
# **What is the market doing right now, venue by venue?** Best bid and ask of one
# market on every venue (USD and USDT quotes side by side) and the trade tape,
# re-read from the lake every second while the recorders write it, with the
# recorders' health below. Pick the market, the venues and the window above the chart.
#
# `lab demo` already runs the simulator and a recorder; set `record = True` to start
# one from this notebook instead (it records from the local simulator, `lab simulate`).

# %% tags=["parameters"]
# lake directory; None = $LAB_DATA/lake
lake = None
# the market to show (USD/USDT merged) and the venues (None = all in the lake)
symbol = "BTC-USDT"
venues = None
# trailing window in seconds
window = 60
# start a recorder from this notebook (against the local simulator)
record = False
record_venue = "binance"
# keep refreshing every second after the notebook has run
live_updates = True

# %%
import lab
from lab.widgets import LiveMarket

rec = lab.start_recorder(record_venue, [symbol], sim=True, lake=lake) if record else None
live = LiveMarket(lake, symbol=symbol, venues=venues, window=window, recorder=rec)
live

# %% [markdown]
# Start the one-second refresh (`live.stop()` pauses it; the pickers redraw at once).

# %%
if live_updates:
    live.start(interval=1.0)
live.last

# %% [markdown]
# The numbers behind the chart, for the last refresh:

# %%
quotes, trades = live.frames()
quotes.group_by("venue").agg(n=quotes["ts_exchange"].len(), last=quotes["ts_exchange"].max()).sort("venue")

# %% [markdown]
# When done: `live.stop()` and, if this notebook started a recorder, `rec.stop()`.
