# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Risk: exposure, PnL, VaR and limits
#
# **Where is my risk right now?** Positions (a positions file and/or the paper
# runner's tables) marked to the latest quotes, exposure by asset and venue, PnL
# (linear and inverse contracts, fees, funding), historical and EWMA parametric
# VaR / expected shortfall, and the limits, with the same `lab.risk` functions the
# live monitor (`lab risk`) writes to `risk_snapshots` every second.

# %% tags=["parameters"]
# lake directory; None = $LAB_DATA/lake
lake = None
# positions file (TOML [[position]] or CSV); None = config/risk.toml's
positions_file = "../config/positions.example.toml"  # relative to notebooks/, the kernel's cwd
# also include the paper runner's positions
use_paper = True
# hours of quotes for the VaR return history (the live monitor uses 30 days)
history_hours = 24.0
# mark method: "mid" or "conservative"
mark = "mid"

# %%
import datetime as dt
from pathlib import Path

import msgspec
import plotly.express as px
import polars as pl

import lab
from lab.reports import newest
from lab.risk import (load_positions, load_risk_config, marks, positions_from_paper,
                      returns_matrix, snapshot)

cfg = load_risk_config("config/risk.toml" if Path("config/risk.toml").exists() else None)
cfg = msgspec.structs.replace(cfg, mark=mark)
lk = lab.Lake(lake) if lake else lab.default_lake()
now = newest(lk, "quotes", "ts_local")  # an empty lake stops here with one line
parts = []
pf = positions_file or cfg.positions_file
if pf:
    parts.append(load_positions(pf))
if use_paper and lk.exists("paper_positions"):
    parts.append(positions_from_paper(lk.scan("paper_positions")).collect())
positions = pl.concat(parts) if parts else pl.DataFrame()
print(f"{positions.height} positions, marked at {now}")
positions

# %% [markdown]
# ## Marks and PnL per position
# A quote older than `stale_after_s` is flagged `stale` and marked conservatively
# (or excluded, per `stale_policy`).

# %%
m = marks(lk.scan("quotes", start=now - dt.timedelta(minutes=10)), now,
          stale_after_s=cfg.stale_after_s).collect()
returns = returns_matrix(lk.scan("quotes", start=now - dt.timedelta(hours=history_hours)),
                         every=cfg.bar, quote_rates=cfg.quote_rates).collect()
rows, checks, marked = snapshot(positions, m, returns, cfg, now=now)
marked.select("venue", "asset", "kind", "qty", "avg_entry", "mark", "stale", "exposure",
              "unrealized_pnl", "total_pnl")

# %% [markdown]
# ## Portfolio figures

# %%
rows.filter(scope="portfolio").select("metric", "value")

# %% [markdown]
# ## Exposure by asset and venue

# %%
exp = rows.filter(pl.col("scope").is_in(["asset", "venue"]) & pl.col("metric").is_in(["net", "gross"]))
px.bar(exp.to_pandas(), x="key", y="value", color="metric", barmode="group", facet_col="scope",
       title="Net and gross exposure (USD)")

# %% [markdown]
# ## Limits
# Each limit's value, its cap and whether it is breached now (the live monitor
# alerts once when one breaches and once when it clears).

# %%
pl.DataFrame([{"limit": k, "breached": b, "value": v, "cap": c, "message": msg}
              for k, b, msg, v, c in checks])
