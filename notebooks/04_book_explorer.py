# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Order book explorer
#
# **What did the book look like, moment by moment?** Replays one venue's order book
# over a time range: drag the slider (or press play) to step through the rebuilt
# top-N books, with the cumulative depth on each side and the best bid/ask over the
# range. Books are rebuilt from `book_updates` with `lab.book.rebuild`.

# %% tags=["parameters"]
# lake directory; None = $LAB_DATA/lake
lake = None
venue = "binance"
symbol = "BTC-USDT"
# range start (ISO, UTC); None = the last `minutes` of data
start = None
minutes = 5
# book levels per side and the replay grid
depth = 20
every = "1s"

# %%
import datetime as dt

import lab
from lab.book import rebuild
from lab.reports import newest, require_rows
from lab.widgets import BookReplay

lk = lab.Lake(lake) if lake else lab.default_lake()
t1 = dt.datetime.fromisoformat(start) + dt.timedelta(minutes=minutes) if start else newest(lk, "book_updates")
t0 = t1 - dt.timedelta(minutes=minutes)
books = rebuild(lk.scan("book_updates", venue=venue, symbol=symbol, end=t1 + dt.timedelta(seconds=1)),
                depth=depth, every=every, start=t0, end=t1).collect()
require_rows(books, "book_updates", f"{venue} {symbol} {t0:%Y-%m-%d %H:%M}-{t1:%H:%M}", lk)
books.shape

# %%
replay = BookReplay(books, title=f"{venue} {symbol}")
replay

# %% [markdown]
# Book features over the range (mid, spread, imbalance, depth within 10 bps):

# %%
from lab.book import with_book_features

features = with_book_features(books.lazy(), depth=depth).select(
    "ts_exchange", "mid", "spread_bps", "imbalance_1", "imbalance_5", "depth_bid_10bps", "depth_ask_10bps")
features.collect().describe()

# %% [markdown]
# The book half-way through the range, level by level:

# %%
replay.slider.value = books.height // 2
replay.show_at(replay.slider.value)
