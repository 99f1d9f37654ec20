"""Fixtures for the notebook, report and live-widget tests.

``nb_lake``: a copy of the session's simulated lake (``sim_lake``: 10 minutes,
3 venues x 3 assets on 2026-11-22) laid out as ``<LAB_DATA>/lake``, plus a few
hand-written ``feed_events`` and ``arbitrage_signals`` rows whose summaries
are known by construction (see ``FEED_EVENTS`` and ``SIGNALS``).
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
DAY = "2026-11-22"
T0 = dt.datetime(2026, 11, 22, 12, 1, tzinfo=dt.timezone.utc)

# venue, kind -> count: binance gap x3, binance resync x1, kraken reconnect x2
FEED_EVENTS = [("binance", "BTC-USDT", "gap"), ("binance", "ETH-USDT", "gap"), ("binance", "BTC-USDT", "gap"),
               ("binance", "BTC-USDT", "resync"), ("kraken", None, "reconnect"), ("kraken", None, "reconnect")]
# (buy, sell, net edge bps, profit): binance->kraken BTC: 2 signals, mean 3.0, max 4.0, profit 5.5
SIGNALS = [("binance", "kraken", 2.0, 1.5), ("binance", "kraken", 4.0, 4.0), ("coinbase", "binance", 1.25, 0.75)]


@pytest.fixture(scope="session")
def nb_data(sim_lake, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LAB_DATA directory whose ``lake`` is a writable copy of ``sim_lake`` plus
    feed events and arbitrage signals."""
    from lab.lake import Lake

    data = tmp_path_factory.mktemp("nb_data")
    shutil.copytree(sim_lake.root, data / "lake")
    lake = Lake(data / "lake")
    ev = [{"ts_local": T0 + dt.timedelta(seconds=i), "venue": v, "symbol": s, "kind": k, "detail": f"test {i}"}
          for i, (v, s, k) in enumerate(FEED_EVENTS)]
    lake.append("feed_events", pl.DataFrame(ev, schema_overrides={"symbol": pl.String}))
    sig = [{"ts": T0 + dt.timedelta(seconds=i), "kind": "cross_venue", "asset": "BTC", "buy_venue": b,
            "sell_venue": s, "buy_symbol": "BTC-USDT", "sell_symbol": "BTC-USD", "size": 0.1,
            "buy_px": 90000.0, "sell_px": 90010.0, "gross_edge_bps": e + 5.0, "net_edge_bps": e,
            "profit_quote": p, "volume_usd": 9000.0} for i, (b, s, e, p) in enumerate(SIGNALS)]
    lake.append("arbitrage_signals", pl.DataFrame(sig))
    return data


@pytest.fixture(scope="session")
def nb_lake(nb_data: Path):
    from lab.lake import Lake

    return Lake(nb_data / "lake")
