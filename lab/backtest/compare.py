"""Paper session vs backtest on exactly the data recorded during it.

:func:`compare_session` reads a paper session's orders/fills from the lake
(``paper_orders``/``paper_fills``; its ``session_start`` row holds the
strategy parameters, instruments and config), replays the ``book_updates`` and
``trades`` recorded between its start and end through the backtest with the
same strategy and models, and lines both up: a summary per side, both
equity curves (marked to the same mid with :func:`equity_curve`), fills matched
by order sequence with their price slippage, and plain-language reasons for
the differences.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any, cast

import polars as pl

from lab.backtest.data import build_events
from lab.backtest.engine import BacktestConfig, Engine, Fees, Latency

__all__ = ["Comparison", "compare_session", "equity_curve", "fill_summary", "sessions"]


def sessions(lake=None) -> pl.DataFrame:
    """Paper sessions in the lake: ``session, strategy, start, end, fills``."""
    from lab import scan

    o = scan("paper_orders", lake=lake).filter(pl.col("status").is_in(["session_start", "session_end"]))
    f = scan("paper_fills", lake=lake).group_by("session").agg(pl.len().alias("fills"))
    s = (o.group_by("session", "strategy").agg(
        pl.col("ts").filter(pl.col("status") == "session_start").min().alias("start"),
        pl.col("ts").filter(pl.col("status") == "session_end").max().alias("end")))
    return s.join(f, on="session", how="left").with_columns(pl.col("fills").fill_null(0)).sort("start").collect()


def equity_curve(fills: pl.DataFrame, mids: pl.LazyFrame, every: str = "1s") -> pl.DataFrame:
    """Mark-to-market equity of ``fills`` against ``mids`` sampled every ``every``.

    ``fills``: ``ts, venue, symbol, side, price, qty, fee``; ``mids``: ``ts,
    venue, symbol, mid``. Cash and position are cumulated per venue/symbol and
    joined (``join_asof`` backward, ``by=`` venue/symbol) onto the mid grid;
    equity = cash + position × mid, summed over instruments.
    """
    sgn = pl.when(pl.col("side") == "buy").then(1.0).otherwise(-1.0)
    f = (fills.lazy().sort("ts").with_columns(
        (sgn * pl.col("qty")).cum_sum().over("venue", "symbol").alias("pos"),
        (-(sgn * pl.col("qty") * pl.col("price")) - pl.col("fee")).cum_sum().over("venue", "symbol").alias("cash"))
        .select("ts", "venue", "symbol", "pos", "cash"))
    grid = (mids.sort("ts").group_by_dynamic("ts", every=every, group_by=["venue", "symbol"], label="right")
            .agg(pl.col("mid").last()))
    eq = (grid.sort("ts").join_asof(f.sort("ts"), on="ts", by=["venue", "symbol"], strategy="backward",
                                    check_sortedness=False)
          .with_columns(pl.col("pos").fill_null(0.0), pl.col("cash").fill_null(0.0))
          .with_columns((pl.col("cash") + pl.col("pos") * pl.col("mid")).alias("equity")))
    return eq.group_by("ts").agg(pl.col("equity").sum()).sort("ts").collect()


def fill_summary(fills: pl.DataFrame, last_mid: dict[tuple[str, str], float]) -> dict[str, float]:
    """fills, volume, notional, buy/sell VWAP, fees, maker share, PnL marked at ``last_mid``."""
    if fills.height == 0:
        return {"fills": 0, "volume": 0.0, "notional": 0.0, "vwap_buy": float("nan"), "vwap_sell": float("nan"),
                "fees": 0.0, "maker_share": float("nan"), "pnl": 0.0}
    sgn = pl.when(pl.col("side") == "buy").then(1.0).otherwise(-1.0)
    g = fills.group_by("venue", "symbol").agg(
        (sgn * pl.col("qty")).sum().alias("pos"), (-(sgn * pl.col("qty") * pl.col("price"))).sum().alias("cash"))
    pnl = sum(c + p * last_mid.get((v, s), 0.0) for v, s, p, c in g.iter_rows()) - float(fills["fee"].sum())
    b, s = fills.filter(pl.col("side") == "buy"), fills.filter(pl.col("side") == "sell")
    vw = (lambda d: float((d["price"] * d["qty"]).sum() / d["qty"].sum()) if d.height else float("nan"))
    notional = float((fills["price"] * fills["qty"]).sum())
    maker = float(fills.filter(pl.col("liquidity") == "maker").select((pl.col("price") * pl.col("qty")).sum()).item())
    return {"fills": fills.height, "volume": float(fills["qty"].sum()), "notional": notional,
            "vwap_buy": vw(b), "vwap_sell": vw(s), "fees": float(fills["fee"].sum()),
            "maker_share": maker / notional if notional else float("nan"), "pnl": pnl}


@dataclasses.dataclass
class Comparison:
    session: str
    strategy: str
    summary: pl.DataFrame  # one row per side: paper, backtest
    equity: pl.DataFrame  # ts, paper, backtest
    fills: pl.DataFrame  # paired by order sequence: ts/price/qty of both, slippage (paper - backtest)
    explanations: list[str]
    feed_latency: pl.DataFrame  # venue, p50/p99 of ts_local - ts_exchange (ms)

    def figure(self):
        from lab.backtest.plots import comparison_figure

        return comparison_figure(self)


def _strategy(name: str, params: dict[str, Any]):
    from lab.backtest.strategies import STRATEGIES

    if name not in STRATEGIES:
        raise KeyError(f"strategy {name!r} of the session is not a shipped strategy ({sorted(STRATEGIES)})")
    return STRATEGIES[name](**params)


def _config(d: dict[str, Any]) -> BacktestConfig:
    """The :class:`BacktestConfig` a session stored as JSON (lists back to tuples where a tuple is kept)."""
    lat_kw: dict[str, Any] = {k: (tuple(v) if k == "samples_us" else v) for k, v in d.get("latency", {}).items()}
    lat = Latency(**lat_kw)
    fees = {k: Fees(**v) for k, v in d.get("fees", {}).items()}
    rest = {k: v for k, v in d.items() if k not in ("latency", "fees")}
    return BacktestConfig(fees=fees, latency=lat, **rest)


def compare_session(session: str, lake=None, *, every: str = "1s") -> Comparison:
    """Re-run the backtest on the rows recorded during paper ``session`` and compare."""
    from lab import scan

    po = scan("paper_orders", lake=lake).filter(pl.col("session") == session).collect()
    start_row = po.filter(pl.col("status") == "session_start")
    if start_row.height == 0:
        raise KeyError(f"no paper session {session!r} in the lake (see lab.backtest.compare.sessions())")
    info = json.loads(start_row["detail"][0])
    end_row = po.filter(pl.col("status") == "session_end")
    t0 = info["t_us"]
    t1 = json.loads(end_row["detail"][0])["t_us"] if end_row.height else int(
        cast(dt.datetime, po["ts"].max()).timestamp() * 1e6)  # a Datetime column's max
    name = start_row["strategy"][0]
    keys = [tuple(k) for k in info["instruments"]]
    cfg = _config(info["config"])
    venues = sorted({v for v, _ in keys})
    symbols = sorted({s for _, s in keys})
    start = dt.datetime.fromtimestamp(t0 / 1e6, dt.timezone.utc)
    end = dt.datetime.fromtimestamp((t1 + 1) / 1e6, dt.timezone.utc)
    # exactly the rows the session received: ts_local from its first row to its last batch
    lo = info.get("first_local_us") or t0
    keep = ((pl.col("ts_local").dt.epoch("us") >= lo) & (pl.col("ts_local").dt.epoch("us") <= t1)
            & pl.concat_str("venue", "symbol", separator=":").is_in([f"{v}:{s}" for v, s in keys]))
    kw = dict(venue=venues, symbol=symbols, start=start - dt.timedelta(seconds=60), end=end, lake=lake)
    book = scan("book_updates", **kw).filter(keep).collect()
    trades = scan("trades", **kw).filter(keep).collect()
    seeds = []
    for key, ts in (info.get("seed") or {}).items():
        v, s = key.split(":", 1)
        t = dt.datetime.fromtimestamp(ts / 1e6, dt.timezone.utc)
        seeds.append(scan("book_snapshots", venue=v, symbol=s, start=t, end=t + dt.timedelta(microseconds=1),
                          lake=lake).collect())
    if seeds:
        seed = (pl.concat(seeds).sort("venue", "symbol", "side", "level")
                .select("ts_exchange", "ts_local", "venue", "symbol", "side", "price", "qty",
                        pl.lit(True).alias("is_snapshot"), pl.lit(None, pl.Int64).alias("seq")))
        book = pl.concat([seed, book])
    ticks = {tuple(k.split(":", 1)): v for k, v in (info.get("ticks") or {}).items()}
    ev = build_events(book, trades, ticks=ticks)
    eng = Engine(ev.instruments, cfg, start_us=t0, end_us=t1)
    eng.start(_strategy(name, info["params"]))
    eng.feed(ev, t1)
    eng.finish(t1)
    bt = eng.fills_frame().rename({"ts_exchange": "ts"}).drop("ts_local")
    paper = scan("paper_fills", lake=lake).filter(pl.col("session") == session).sort("ts").collect()

    mids = (scan("quotes", lake=lake, venue=venues, symbol=symbols, start=start, end=end)
            .select(pl.col("ts_local").alias("ts"), "venue", "symbol",
                    ((pl.col("bid_px") + pl.col("ask_px")) / 2).alias("mid")))
    last = mids.sort("ts").group_by("venue", "symbol").agg(pl.col("mid").last()).collect()
    last_mid = {(v, s): m_ for v, s, m_ in last.iter_rows()}
    rows = []
    for side, f in (("paper", paper), ("backtest", bt)):
        rows.append({"side": side, **fill_summary(f, last_mid)})
    summary = pl.DataFrame(rows)
    ep, eb = equity_curve(paper, mids, every), equity_curve(bt, mids, every)
    equity = ep.rename({"equity": "paper"}).join(eb.rename({"equity": "backtest"}), on="ts", how="full",
                                                 coalesce=True).sort("ts")
    k = min(paper.height, bt.height)
    pairs = pl.DataFrame({
        "n": list(range(k)),
        "paper_ts": paper["ts"][:k], "backtest_ts": bt["ts"][:k],
        "side": paper["side"][:k], "paper_price": paper["price"][:k], "backtest_price": bt["price"][:k],
        "paper_qty": paper["qty"][:k], "backtest_qty": bt["qty"][:k]}).with_columns(
        (pl.col("paper_price") - pl.col("backtest_price")).alias("slippage"))
    lat = (scan("book_updates", lake=lake, venue=venues, symbol=symbols, start=start, end=end)
           .select("venue", ((pl.col("ts_local") - pl.col("ts_exchange")).dt.total_microseconds() / 1000)
                   .alias("ms"))
           .group_by("venue").agg(pl.col("ms").quantile(0.5).alias("p50_ms"), pl.col("ms").quantile(0.99)
                                  .alias("p99_ms")).sort("venue").collect())
    return Comparison(session, name, summary, equity, pairs, _explain(summary, pairs, lat, cfg), lat)


def _explain(summary: pl.DataFrame, pairs: pl.DataFrame, lat: pl.DataFrame, cfg: BacktestConfig) -> list[str]:
    p, b = summary.row(0, named=True), summary.row(1, named=True)
    out = [f"fills: paper {p['fills']} vs backtest {b['fills']}; volume {p['volume']:.6g} vs {b['volume']:.6g}; "
           f"PnL {p['pnl']:.2f} vs {b['pnl']:.2f} (fees {p['fees']:.2f} vs {b['fees']:.2f})."]
    for v, p50, p99 in lat.iter_rows():
        out.append(f"feed latency {v}: p50 {p50:.1f} ms, p99 {p99:.1f} ms (recorded ts_local - ts_exchange; "
                   "both runs see the same clock, so this shifts neither).")
    out.append(f"order latency: {cfg.latency.dist} entry {cfg.latency.entry_us:.0f} µs / response "
               f"{cfg.latency.response_us:.0f} µs in both runs.")
    if pairs.height:
        moved = pairs.filter(pl.col("slippage").abs() > 0).height
        out.append(f"{moved} of {pairs.height} paired fills differ in price: the live runner applies rows in "
                   "batches as they arrive, so an order can meet the exchange book a few rows earlier or later "
                   "than in the backtest, which sorts every row by exchange time; queue positions "
                   f"({cfg.queue}) then advance differently.")
    if p["fills"] != b["fills"]:
        out.append("a different fill count comes from the same cause: one side's order met a trade the other "
                   "side's order had not reached yet (queue), or a post-only order crossed in one run only.")
    if abs(p["fees"] - b["fees"]) > 1e-9:
        out.append("fees differ only through the fills (same per-venue maker/taker rates).")
    return out
