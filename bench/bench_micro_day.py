"""Bars, book rebuild and microstructure summary on one simulated day, next to baselines.

    .venv/bin/python bench/bench_micro_day.py            # one simulated day (built once, ~5 min)
    .venv/bin/python bench/bench_micro_day.py --quick    # two simulated hours
    .venv/bin/python bench/bench_micro_day.py --lake DIR # an existing lake

Prints, for each figure, our time, the baseline's time in the same run and
the ratio (baseline / ours; > 1 means we are faster):

1. 1-second OHLCV (+VWAP, counts, buy/sell volume) for every venue/symbol:
   ``lab.bars.ohlcv`` vs the ``ohlcv_1s`` DuckDB view (same numbers, tested)
   vs pandas ``groupby`` on floored timestamps. In memory and from the lake.
2. Book rebuild: level updates applied per second by the numba kernel
   (all venues/symbols of the day, top-10 on a 1 s grid and on every message)
   vs a plain-Python dict book on a sample.
3. Microstructure summary for one symbol-day (``lab.micro.summary``: spreads,
   impact, Kyle, Amihud, Roll, VPIN, sign ACF, RV/BV/TSRV, OFI R²) vs pandas
   computing the subset it can express easily (all but VPIN and OFI).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lab  # noqa: E402
from lab import bars, book, micro  # noqa: E402
from lab.lake import Lake  # noqa: E402

START = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)


def timed(fn, repeat: int = 1):
    best, out = math.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def line(name: str, ours: float, base: float | None = None, base_name: str = "", extra: str = "") -> None:
    s = f"  {name:<46} {ours:8.3f} s"
    if base is not None:
        s += f"   {base_name} {base:8.3f} s   ratio {base / ours:6.1f}x"
    print(s + (f"   {extra}" if extra else ""), flush=True)


def ensure_lake(path: Path, hours: float) -> Lake:
    lake = Lake(path)
    if lake.exists("trades") and lake.exists("book_updates"):
        return lake
    from recorders.sim.bulk import write_to_lake

    print(f"building {hours:g} simulated hour(s) into {path} (once) ...", flush=True)
    write_to_lake(lake, start=START, duration=dt.timedelta(hours=hours), seed=1, progress=True)
    return lake


def pandas_ohlcv(pdf):
    import pandas as pd

    pdf = pdf.sort_values(["venue", "symbol", "ts_exchange", "trade_id"], kind="stable")
    pdf["bucket"] = pdf["ts_exchange"].dt.floor("1s")
    pdf["notional"] = pdf["price"] * pdf["qty"]
    pdf["buy_volume"] = pdf["qty"].where(pdf["side"] == "buy", 0.0)
    pdf["sell_volume"] = pdf["qty"].where(pdf["side"] == "sell", 0.0)
    g = pdf.groupby(["venue", "symbol", "bucket"], sort=True)
    out = g.agg(open=("price", "first"), high=("price", "max"), low=("price", "min"), close=("price", "last"),
                volume=("qty", "sum"), notional=("notional", "sum"), trades=("price", "size"),
                buy_volume=("buy_volume", "sum"), sell_volume=("sell_volume", "sum"))
    out["vwap"] = out["notional"] / out["volume"]
    return pd.DataFrame(out).reset_index()


def python_book(side, price, qty, snap, n: int) -> int:
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    best = 0.0
    prev_snap = False
    for i in range(n):
        if snap[i] and not prev_snap:
            bids.clear()
            asks.clear()
        prev_snap = snap[i]
        b = bids if side[i] else asks
        if qty[i] > 0:
            b[price[i]] = qty[i]
        else:
            b.pop(price[i], None)
        if bids and asks:
            best = max(bids) + min(asks)  # top of book after each update
    return int(best)


def pandas_summary(tr, qt, bar: str = "1min"):
    """The subset of micro.summary that pandas expresses directly (no VPIN, no OFI)."""
    import pandas as pd

    tr = tr.sort_values("ts_exchange", kind="stable")
    qt = qt.sort_values("ts_exchange", kind="stable")
    qt["mid"] = (qt["bid_px"] + qt["ask_px"]) / 2
    out = {"trades": len(tr), "volume": tr["qty"].sum(), "notional": (tr["price"] * tr["qty"]).sum()}
    out["quoted_spread_bps"] = ((qt["ask_px"] - qt["bid_px"]) / qt["mid"] * 1e4).mean()
    j = pd.merge_asof(tr, qt[["ts_exchange", "mid"]], on="ts_exchange")
    later = tr[["ts_exchange"]].copy()
    later["t5"] = later["ts_exchange"] + pd.Timedelta("5s")
    ml = pd.merge_asof(later.sort_values("t5"), qt[["ts_exchange", "mid"]].rename(
        columns={"ts_exchange": "t5", "mid": "mid_later"}), on="t5")
    j["mid_later"] = ml["mid_later"].to_numpy()
    s = np.where(j["side"] == "buy", 1.0, -1.0)
    out["effective_spread_bps"] = np.nanmean(2 * s * (j["price"] - j["mid"]) / j["mid"] * 1e4)
    out["realized_spread_bps"] = np.nanmean(2 * s * (j["price"] - j["mid_later"]) / j["mid"] * 1e4)
    out["price_impact_bps"] = np.nanmean(2 * s * (j["mid_later"] - j["mid"]) / j["mid"] * 1e4)
    tr = tr.assign(sv=s * tr["qty"], notional=tr["price"] * tr["qty"])
    b = tr.set_index("ts_exchange").resample(bar).agg({"price": "last", "sv": "sum", "notional": "sum"}).dropna()
    dp = b["price"].diff()
    out["kyle_lambda"] = dp.cov(b["sv"]) / b["sv"][dp.notna()].var()
    r = np.log(b["price"]).diff()
    out["amihud"] = (r.abs() / b["notional"]).mean() * 1e6
    d = tr["price"].diff()
    c = d.cov(d.shift(1))
    out["roll_spread"] = 2 * math.sqrt(-c) if c < 0 else float("nan")
    out["sign_acf_1"] = pd.Series(s).autocorr(1)
    grid = qt.set_index("ts_exchange")["mid"].resample("1s").last().ffill()
    x = np.log(grid.to_numpy())
    rr = np.diff(x)
    out["rv"] = np.sum(rr ** 2)
    out["bv"] = math.pi / 2 * np.sum(np.abs(rr[1:]) * np.abs(rr[:-1]))
    K = 300
    n = rr.size
    out["tsrv"] = np.sum((x[K:] - x[:-K]) ** 2) / K - (n - K + 1) / K / n * out["rv"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="two simulated hours instead of a day")
    ap.add_argument("--lake", type=Path, default=None,
                    help="lake to read (default: /tmp/bench_micro_{day,quick}/lake, built if missing)")
    ap.add_argument("--symbol", default="BTC-USDT", help="symbol of the one-symbol summary")
    ap.add_argument("--venue", default="binance", help="venue of the one-symbol summary")
    ap.add_argument("--python-sample", type=int, default=1_000_000,
                    help="book updates replayed by the pure-Python baseline")
    args = ap.parse_args()
    hours = 2.0 if args.quick else 24.0
    path = args.lake or Path(f"/tmp/bench_micro_{'quick' if args.quick else 'day'}/lake")
    lake = ensure_lake(path, hours)

    import os

    print(f"lake {path}   (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)", flush=True)
    t_load, trades = timed(lambda: lake.scan("trades").collect())
    print(f"trades: {trades.height:,} rows ({trades['venue'].n_unique()} venues, "
          f"{trades.select('venue', 'symbol').n_unique()} books), read in {t_load:.2f} s", flush=True)

    # 1. bars ------------------------------------------------------------------------
    print("\n1-second OHLCV, all venues/symbols of the day (target <= 2 s)")
    t_pl, ours = timed(lambda: bars.ohlcv(trades.lazy(), "1s").collect(), repeat=3)
    con = lab.connect(lake)
    con.execute("SET enable_progress_bar = false")
    con.register("trades_mem", trades.to_arrow())
    from lab.sql import EXTRA_VIEWS

    sql_mem = EXTRA_VIEWS["ohlcv_1s"].replace("FROM trades", "FROM trades_mem")
    t_sql, _ = timed(lambda: con.sql(sql_mem).to_arrow_table(), repeat=3)
    pdf = trades.to_pandas()
    t_pd, _ = timed(lambda: pandas_ohlcv(pdf.copy()))  # noqa: F821
    line("lab.bars.ohlcv (in memory)", t_pl, t_sql, "duckdb view", f"{ours.height:,} bars")
    line("lab.bars.ohlcv (in memory)", t_pl, t_pd, "pandas     ")
    t_pl_lake, _ = timed(lambda: bars.ohlcv(lab.scan("trades", lake=lake), "1s").collect(), repeat=2)
    t_sql_lake, _ = timed(lambda: con.sql("select * from ohlcv_1s").to_arrow_table(), repeat=2)
    line("lab.bars.ohlcv (scan from the lake)", t_pl_lake, t_sql_lake, "duckdb view")
    del pdf

    # 2. book rebuild -------------------------------------------------------------------
    print("\nbook rebuild from book_updates (target >= 1,000,000 level updates/s)")
    t_load, upd = timed(lambda: lake.scan("book_updates").collect())
    n = upd.height
    print(f"book_updates: {n:,} rows, read in {t_load:.2f} s", flush=True)
    prep = (upd.lazy().select(
        pl.struct("venue", "symbol").rank("dense").cast(pl.Int64).alias("g"),
        pl.col("ts_exchange").dt.epoch("ns").alias("t"), pl.col("seq"), (pl.col("side") == "bid").alias("b"),
        "price", "qty", "is_snapshot").sort("g", "t", "seq", maintain_order=True).collect())
    cols = [prep[c].to_numpy() for c in ("g", "t", "seq", "b", "price", "qty", "is_snapshot")]
    book.rebuild_arrays(*(c[:1000] for c in cols), depth=10)  # compile
    t_grid, r = timed(lambda: book.rebuild_arrays(*cols, depth=10, every_ns=1_000_000_000), repeat=2)  # noqa: F821
    line("kernel, top-10 every 1 s", t_grid, extra=f"{n / t_grid / 1e6:6.2f} M updates/s, {len(r[0]):,} books")
    m10 = min(5_000_000, n)  # every message x 40 floats: keep the output in memory bounds
    t_msg, r = timed(lambda: book.rebuild_arrays(*(c[:m10] for c in cols), depth=10))  # noqa: F821
    line(f"kernel, top-10 after every message ({m10:,} upd.)", t_msg,
         extra=f"{m10 / t_msg / 1e6:6.2f} M updates/s, {len(r[0]):,} books")
    t_msg1, r = timed(lambda: book.rebuild_arrays(*cols, depth=1, only_changes=True))  # noqa: F821
    line("kernel, top-1 on change (= quotes)", t_msg1, extra=f"{n / t_msg1 / 1e6:6.2f} M updates/s, {len(r[0]):,} rows")
    m = min(args.python_sample, n)
    side_l, px_l, q_l, sn_l = (cols[3][:m].tolist(), cols[4][:m].tolist(), cols[5][:m].tolist(),
                               cols[6][:m].tolist())
    t_py, _ = timed(lambda: python_book(side_l, px_l, q_l, sn_l, m))
    t_k_m, _ = timed(lambda: book.rebuild_arrays(*(c[:m] for c in cols), depth=1, only_changes=True))  # noqa: F821
    line(f"kernel vs Python dict book, {m:,} updates", t_k_m, t_py, "python", f"python {m / t_py / 1e6:.2f} M/s")
    t_api, _ = timed(lambda: book.rebuild(lake.scan("book_updates"), depth=10, every="1s").collect())
    line("lab.book.rebuild(scan, depth=10, every='1s')", t_api, extra=f"{n / t_api / 1e6:6.2f} M updates/s end to end")
    del upd, prep, cols

    # 3. summary ------------------------------------------------------------------------
    print(f"\nmicrostructure summary, one symbol-day ({args.venue} {args.symbol}; target <= 10 s)")
    tr = lake.scan("trades", venue=args.venue, symbol=args.symbol).collect()
    qt = lake.scan("quotes", venue=args.venue, symbol=args.symbol).collect()
    print(f"  {tr.height:,} trades, {qt.height:,} quotes", flush=True)
    t_sum, s = timed(lambda: micro.summary(tr.lazy(), qt.lazy()).collect())
    t_sum_lake, _ = timed(lambda: micro.summary(lab.scan("trades", venue=args.venue, symbol=args.symbol, lake=lake),
                                                lab.scan("quotes", venue=args.venue, symbol=args.symbol,
                                                         lake=lake)).collect())
    tpd, qpd = tr.to_pandas(), qt.to_pandas()
    t_pd, ref = timed(lambda: pandas_summary(tpd.copy(), qpd.copy()))
    line("lab.micro.summary (in memory, all metrics)", t_sum, t_pd, "pandas subset")
    line("lab.micro.summary (scan from the lake)", t_sum_lake)
    row = s.row(0, named=True)
    for k in ("quoted_spread_bps", "effective_spread_bps", "price_impact_bps", "kyle_lambda", "rv", "tsrv"):
        print(f"    {k:<22} lab {row[k]:.6g}   pandas {ref[k]:.6g}")
    from lab import leadlag

    t_ll, lead = timed(lambda: leadlag.venue_leadership(lake.scan("quotes"), max_lag_ms=300, step_ms=5).collect())
    line("lab.leadlag.venue_leadership (all assets, day)", t_ll)
    print(lead.select("asset", "venue", "lag_ms", "is_leader"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
