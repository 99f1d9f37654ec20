# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Backtesting, and paper trading side by side
#
# **Would this strategy have made money, and does it behave live as it did in the
# backtest?** An event-driven backtest of the shipped market maker (inventory skew)
# on the recorded order book and trades, its stats and figures; a vectorised sweep of
# an imbalance signal over many parameter sets; and, if a paper session ran
# (`lab paper mm ...`, started by `lab demo`), that session next to the backtest on
# exactly the data recorded while it ran.
#
# Latency: feed latency is what was recorded (`ts_local - ts_exchange`); order entry
# and response latency are set below. Sharpe and Sortino are annualised with 365
# days from returns over the equity sampling interval (stated in the stats).

# %% tags=["parameters"]
# lake directory; None = $LAB_DATA/lake (a small simulated lake is made if it has no data)
lake = None
# the market the strategies trade
venue = "binance"
symbol = "BTC-USDT"
# trailing window of data to backtest, in minutes (None = everything in the lake)
minutes = 10
# market maker parameters (see `lab backtest list`)
mm_params = {"qty": 0.01, "half_spread": 0, "skew_ticks": 1.0, "max_position": 0.05, "interval_s": 0.1}
# order entry / response latency (µs), queue model and fees (fractions; negative = rebate)
latency_us = (1000.0, 1000.0)
queue = "risk_averse"
maker_fee, taker_fee = -0.0001, 0.0005
# vectorised sweep: windows (1 s bars) x thresholds
sweep_windows = [1, 5, 20, 60]
sweep_thresholds = 25
# paper session to compare (None = the latest in the lake, if any)
session = None

# %%
import datetime as dt
import tempfile

import numpy as np
import polars as pl

import lab
from lab.backtest import BacktestConfig, Fees, Latency, load_events, run_backtest
from lab.backtest import plots, vector
from lab.backtest.strategies import MarketMaker

lk = lab.Lake(lake) if lake else lab.default_lake()
span = lk.scan("book_updates", venue=venue, symbol=symbol).select(
    pl.col("ts_exchange").min().alias("start"), pl.col("ts_exchange").max().alias("end")).collect()
if span["start"][0] is None:  # no recording yet: simulate ten minutes so the notebook still runs
    from recorders.sim.bulk import write_to_lake

    lk = lab.Lake(tempfile.mkdtemp() + "/lake")
    write_to_lake(lk, start=dt.datetime(2026, 11, 22, 12, tzinfo=dt.timezone.utc),
                  duration=dt.timedelta(minutes=10), venues=(venue,), assets=(symbol.split("-")[0],), seed=1)
    span = lk.scan("book_updates").select(pl.col("ts_exchange").min().alias("start"),
                                          pl.col("ts_exchange").max().alias("end")).collect()
end = span["end"][0]
start = span["start"][0] if minutes is None else max(span["start"][0], end - dt.timedelta(minutes=minutes))
print(f"data: {venue}:{symbol} {start:%Y-%m-%d %H:%M:%S} → {end:%H:%M:%S} UTC in {lk.root}")

# %% [markdown]
# ## Event-driven backtest of the market maker
# Replays `book_updates` and `trades` in exchange-time order; resting quotes join
# the back of the queue and advance only when trades print at their price
# (risk-averse model); post-only quotes that would cross are rejected.

# %%
ev = load_events(venues=venue, symbols=symbol, start=start, end=end, lake=lk)
cfg = BacktestConfig(fees={venue: Fees(maker_fee, taker_fee)},
                     latency=Latency(entry_us=latency_us[0], response_us=latency_us[1]), queue=queue)
res = run_backtest(MarketMaker(venue=venue, symbol=symbol, **mm_params), ev, cfg)
stats = res.stats()
print(f"{len(ev):,} events in {res.elapsed_s:.2f} s ({res.events_per_s:,.0f} events/s)")
pl.DataFrame({"stat": list(stats), "value": [str(v) for v in stats.values()]})

# %%
plots.equity_figure(res)

# %%
mids = lk.scan("quotes", venue=venue, symbol=symbol, start=start, end=end).select(
    pl.col("ts_exchange").alias("ts"), ((pl.col("bid_px") + pl.col("ask_px")) / 2).alias("mid")).collect()
plots.fills_figure(res, mids.gather_every(max(1, mids.height // 5000)))

# %%
res.fills.group_by("side", "liquidity").agg(pl.len().alias("fills"), pl.col("qty").sum(), pl.col("fee").sum())

# %% [markdown]
# ## Vectorised research mode: an imbalance signal, swept
# 1 s bars of the top of book; a taker trades `qty` at the book-walk price of the
# snapshot, one latency later (`join_asof` forward), paying the taker fee.

# %%
q = lk.scan("quotes", venue=venue, symbol=symbol, start=start, end=end)
snaps = lk.scan("book_snapshots", venue=venue, symbol=symbol, start=start, end=end)
prep = vector.with_latency(vector.with_walk_prices(vector.bars(q, "1s"), snaps, 0.05), "200ms").collect()
sweep = vector.sweep(prep.lazy(), windows=sweep_windows, thresholds=list(np.linspace(0.0, 0.95, sweep_thresholds)),
                     qty=0.05, fee=taker_fee)
sweep.sort("pnl", descending=True).head(5)

# %%
plots.sweep_figure(sweep)

# %% [markdown]
# ## Paper session vs backtest on the same data
# The paper runner (`lab paper`) runs the same strategy and models on the live bus and
# writes `paper_orders`/`paper_fills`/`paper_positions`; here the backtest re-runs on
# exactly the rows recorded during that session.

# %%
from lab.backtest.compare import compare_session, sessions

known = sessions(lk) if lk.exists("paper_orders") else pl.DataFrame()
if known.height:
    sid = session or known.sort("start")["session"][-1]
    cmp = compare_session(sid, lk)
    print("\n".join(cmp.explanations))
    print(cmp.summary)
    fig = cmp.figure()
else:
    print("no paper session in this lake yet: run `lab paper mm -p venue=binance -p symbol=BTC-USDT` "
          "while recording (lab demo starts one)")
    fig = None
fig
