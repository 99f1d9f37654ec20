# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Daily market report
#
# **What happened in the market on one day?** Prices and returns, traded volume,
# realised volatility and quoted spreads per venue and symbol, the arbitrage
# opportunities the detector found and the health of our feeds (gaps,
# resyncs, reconnects), all read from the lake.
#
# Run it with `lab report daily_market_report --date YYYY-MM-DD` (papermill;
# HTML under `reports/daily_market_report/`).

# %% tags=["parameters"]
# the UTC day covered (YYYY-MM-DD)
date = "2026-11-22"
# venues and symbols to cover, e.g. ["binance", "kraken"] and ["BTC-USDT"]; None = all
venues = None
symbols = None
# lake directory; None = $LAB_DATA/lake
lake = None

# %%
import polars as pl

import lab
from lab import plots, reports
from lab.reports import html_table, show

start, end = reports.day_range(date)


def day(table: str) -> pl.LazyFrame:
    return lab.scan(table, venue=venues, symbol=symbols, start=start, end=end, lake=lake)


trades = day("trades").select("ts_exchange", "venue", "symbol", "trade_id", "price", "qty", "side").collect().lazy()
reports.require_rows(trades, "trades", date, lake)  # an empty day is an error, not an empty report
summary = reports.market_summary(trades).collect()
show(f"<p>Day <b>{date}</b> (UTC): {summary['trades'].sum():,} trades on "
     f"{summary['venue'].n_unique()} venue(s), {summary['symbol'].n_unique()} symbol(s).</p>")

# %% [markdown]
# ## Market summary
# First and last trade price of the day, range, return and VWAP per venue and symbol.

# %%
show(html_table(summary.select("venue", "symbol", "open", "high", "low", "close", "return_pct", "vwap"),
                id="market-summary"))
show(plots.lines_figure(reports.closes(trades, every="1m"), "bucket", "ret_bps",
                        title="Move since the first minute (bps), 1-minute closes", ylabel="bps"))

# %% [markdown]
# ## Volumes
# Trade count, volume (base units), notional (quote units) and the share of
# volume initiated by buyers.

# %%
show(html_table(summary.select("venue", "symbol", "trades", "volume", "notional", "buy_share"),
                id="volumes"))
show(plots.bar_figure(summary, "symbol", "notional", color="venue", title="Notional traded (quote units)"))

# %% [markdown]
# ## Volatility
# Realised volatility of the day from 1-minute closes (100·√Σr², not annualised)
# and the largest 1-minute move.

# %%
vol = reports.volatility_summary(trades, every="1m").collect()
show(html_table(vol, id="volatility"))
show(plots.bar_figure(vol, "symbol", "rv_pct", color="venue", title="Realised volatility (%)"))

# %% [markdown]
# ## Spreads
# Quoted spread in basis points of the mid over every top-of-book update.

# %%
spreads = reports.spread_summary(day("quotes")).collect()
show(html_table(spreads, id="spreads"))
show(plots.bar_figure(spreads, "symbol", "mean_spread_bps", color="venue", title="Mean quoted spread (bps)"))

# %% [markdown]
# ## Arbitrage episodes
# Opportunities recorded by the live detector (`arbitrage_signals`) per route.

# %%
signals = lab.scan("arbitrage_signals", start=start, end=end, lake=lake)
if venues is not None:
    signals = signals.filter(pl.col("buy_venue").is_in(venues) & pl.col("sell_venue").is_in(venues))
arb = reports.arbitrage_summary(signals).collect()
show(html_table(arb, id="arbitrage") if arb.height else
     '<p id="arbitrage">No arbitrage signals recorded on this day.</p>')

# %% [markdown]
# ## Feed health
# Gaps, resyncs, reconnects, checksum failures and rejected messages logged by
# the recorders (`feed_events`).

# %%
health = reports.feed_health(day("feed_events")).collect()
show(html_table(health, id="feed-health") if health.height else
     '<p id="feed-health">No feed events recorded on this day.</p>')
