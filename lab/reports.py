"""The tables and display helpers report notebooks use.

Summary tables the daily report shows (lazy in, lazy out, grouped by
venue/symbol), :func:`html_table`, and :func:`show`, which displays a plotly
figure so that it survives the HTML export. Running a report notebook is
``lab report`` (:mod:`lab.apps.report`).
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from typing import Any

import polars as pl

__all__ = [
    "day_range",
    "require_rows",
    "newest",
    "market_summary",
    "volatility_summary",
    "spread_summary",
    "feed_health",
    "arbitrage_summary",
    "closes",
    "html_table",
    "show",
]

# --------------------------------------------------------------------------- report tables
def day_range(date: str | dt.date) -> tuple[dt.datetime, dt.datetime]:
    """``[date 00:00, next day 00:00)`` in UTC.

    >>> [t.isoformat() for t in day_range("2026-11-22")]
    ['2026-11-22T00:00:00+00:00', '2026-11-23T00:00:00+00:00']
    """
    d = dt.date.fromisoformat(str(date)) if not isinstance(date, dt.date) else date
    t0 = dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc)
    return t0, t0 + dt.timedelta(days=1)


def newest(lake: Any, table: str, column: str = "ts_exchange") -> dt.datetime:
    """The newest ``column`` time of ``table``; :class:`~lab.errors.DataError` naming the lake when
    the table is missing or empty (a notebook then stops with one clear line, not an AttributeError)."""
    from lab.errors import DataError
    from lab.lake import Lake, default_lake
    from lab.widgets import latest_time

    lk = lake if isinstance(lake, Lake) else Lake(lake) if lake is not None else default_lake()
    t = latest_time(lk, table, column)
    if t is None:
        raise DataError(f"the lake at {lk.root.resolve()} has no {table}: record some (lab record), or seed "
                        "simulated history (lab simulate --to-lake --days 1, or lab demo)")
    return t


def require_rows(frame: pl.DataFrame | pl.LazyFrame, table: str, date: str | dt.date, lake: Any = None) -> None:
    """Stop a report that would render empty: raise :class:`~lab.errors.DataError` if ``frame``
    has no rows, naming the day, the lake and the days the lake does have.

    ``lab report`` turns the error into one line and a non-zero exit, and
    writes no page.
    """
    n = frame.height if isinstance(frame, pl.DataFrame) else frame.select(pl.len()).collect().item()
    if n:
        return
    from lab.errors import DataError
    from lab.lake import Lake, default_lake
    from lab.schema import table_spec

    lk = lake if isinstance(lake, Lake) else Lake(lake) if lake is not None else default_lake()
    where = f"the lake at {lk.root.resolve()}"
    if not lk.exists(table):
        raise DataError(f"no {table} on {date} (UTC): {where} has no {table} table")
    tc = table_spec(table).time_column
    span = lk.scan(table).select(pl.col(tc).min().alias("a"), pl.col(tc).max().alias("b")).collect()
    a, b = span["a"][0], span["b"][0]
    if a is None:
        raise DataError(f"no {table} on {date} (UTC): the {table} table of {where} is empty")
    raise DataError(f"no {table} on {date} (UTC) for the venues/symbols asked in {where}; "
                    f"it has {table} from {a:%Y-%m-%d %H:%M} to {b:%Y-%m-%d %H:%M} UTC")


def _need(lf: pl.LazyFrame, cols: Sequence[str], who: str) -> None:
    names = lf.collect_schema().names()
    missing = [c for c in cols if c not in names]
    if missing:
        raise ValueError(f"{who}: missing column(s) {missing}; got {names}")


def _at_extreme(value: str, time_column: str, tie: str | None, last: bool) -> pl.Expr:
    """``value`` at the first (or last) row by time, ties broken by ``tie``
    (a top-1 selection per group, not a sort of the whole frame)."""
    keys = [time_column] + ([tie] if tie else [])
    return pl.col(value).sort_by(keys, descending=last).first()


def market_summary(trades: pl.LazyFrame, *, by: Sequence[str] = ("venue", "symbol"),
                   time_column: str = "ts_exchange") -> pl.LazyFrame:
    """One row per venue/symbol: open, high, low, close, return (%), trades,
    volume (base), notional (quote), VWAP and the buy share of volume.

    Open/close are the first/last trade by time (then ``trade_id``).

    >>> t = pl.LazyFrame({"ts_exchange": [1, 2, 3], "venue": "x", "symbol": "s", "trade_id": ["1", "2", "3"],
    ...     "price": [100.0, 102.0, 101.0], "qty": [1.0, 1.0, 2.0], "side": ["buy", "sell", "buy"]})
    >>> market_summary(t).select("close", pl.col("return_pct").round(9), "volume", "vwap", "buy_share").collect().row(0)
    (101.0, 1.0, 4.0, 101.0, 0.75)
    """
    by = list(by)
    _need(trades, [time_column, "price", "qty", "side", *by], "market_summary")
    tie = "trade_id" if "trade_id" in trades.collect_schema().names() else None
    p, q = pl.col("price"), pl.col("qty")
    return (trades.group_by(by)
            .agg(_at_extreme("price", time_column, tie, last=False).alias("open"),
                 p.max().alias("high"), p.min().alias("low"),
                 _at_extreme("price", time_column, tie, last=True).alias("close"),
                 pl.len().cast(pl.Int64).alias("trades"),
                 q.sum().alias("volume"), (p * q).sum().alias("notional"),
                 q.filter(pl.col("side") == "buy").sum().alias("buy_volume"))
            .with_columns(((pl.col("close") / pl.col("open") - 1.0) * 100.0).alias("return_pct"),
                          (pl.col("notional") / pl.col("volume")).alias("vwap"),
                          (pl.col("buy_volume") / pl.col("volume")).alias("buy_share"))
            .select(*by, "open", "high", "low", "close", "return_pct", "trades", "volume",
                    "notional", "vwap", "buy_share")
            .sort(by))


def volatility_summary(trades: pl.LazyFrame, *, every: str = "1m", by: Sequence[str] = ("venue", "symbol"),
                       time_column: str = "ts_exchange") -> pl.LazyFrame:
    """Realised volatility from ``every`` bars of last trade prices (:func:`closes`), per venue/symbol.

    ``bars`` (bars with trades), ``rv_pct`` = 100·√Σ r² over the log returns
    r between consecutive bars' closes (the period's realised volatility, not
    annualised) and ``max_abs_ret_bps``, the largest bar-to-bar move.

    >>> import datetime as dt
    >>> t = [dt.datetime(2026, 1, 1, 0, m) for m in range(3)]
    >>> tr = pl.LazyFrame({"ts_exchange": t, "venue": "x", "symbol": "s",
    ...     "price": [100.0, 101.0, 100.0], "qty": 1.0, "side": "buy"})
    >>> round(volatility_summary(tr).collect()["rv_pct"].item(), 4)  # 100*sqrt(ln(1.01)^2 + ln(100/101)^2)
    1.4072
    """
    by = list(by)
    r = pl.col("close").log().diff().over(by)
    return (closes(trades, every=every, by=by, time_column=time_column)
            .with_columns(r.alias("r"))
            .group_by(by)
            .agg(pl.len().cast(pl.Int64).alias("bars"),
                 ((pl.col("r") ** 2).sum().sqrt() * 100.0).alias("rv_pct"),
                 (pl.col("r").abs().max() * 1e4).alias("max_abs_ret_bps"))
            .sort(by))


def spread_summary(quotes: pl.LazyFrame, *, by: Sequence[str] = ("venue", "symbol")) -> pl.LazyFrame:
    """Quoted spread in bps of the mid, per venue/symbol, over quote updates
    (each update weighs the same): ``quotes``, ``mean_spread_bps``,
    ``median_spread_bps``, ``p95_spread_bps``, ``mean_top_qty`` (mean of bid
    and ask size at the top). Rows with a missing or crossed side are left out.

    >>> q = pl.LazyFrame({"venue": "x", "symbol": "s", "bid_px": [99.0, 99.5, 99.0],
    ...     "ask_px": [101.0, 100.5, 100.0], "bid_qty": 1.0, "ask_qty": 3.0})
    >>> round(spread_summary(q).collect()["mean_spread_bps"].item(), 4)  # (200 + 100 + 100.5025) / 3
    133.5008
    """
    by = list(by)
    _need(quotes, ["bid_px", "ask_px", "bid_qty", "ask_qty", *by], "spread_summary")
    mid = (pl.col("bid_px") + pl.col("ask_px")) / 2.0
    s = ((pl.col("ask_px") - pl.col("bid_px")) / mid * 1e4).alias("spread_bps")
    return (quotes.filter(pl.col("bid_px").is_not_null() & pl.col("ask_px").is_not_null()
                          & (pl.col("ask_px") >= pl.col("bid_px")))
            .with_columns(s, ((pl.col("bid_qty") + pl.col("ask_qty")) / 2.0).alias("top_qty"))
            .group_by(by)
            .agg(pl.len().cast(pl.Int64).alias("quotes"),
                 pl.col("spread_bps").mean().alias("mean_spread_bps"),
                 pl.col("spread_bps").median().alias("median_spread_bps"),
                 pl.col("spread_bps").quantile(0.95, "linear").alias("p95_spread_bps"),
                 pl.col("top_qty").mean().alias("mean_top_qty"))
            .sort(by))


def feed_health(events: pl.LazyFrame, *, by: Sequence[str] = ("venue", "kind")) -> pl.LazyFrame:
    """Count of ``feed_events`` rows per venue and kind (gap, resync, reconnect, ...).

    >>> e = pl.LazyFrame({"venue": ["a", "a", "b"], "kind": ["gap", "gap", "reconnect"]})
    >>> feed_health(e).collect().rows()
    [('a', 'gap', 2), ('b', 'reconnect', 1)]
    """
    by = list(by)
    _need(events, by, "feed_health")
    return events.group_by(by).agg(pl.len().cast(pl.Int64).alias("events")).sort(by)


def arbitrage_summary(signals: pl.LazyFrame, *,
                      by: Sequence[str] = ("kind", "asset", "buy_venue", "sell_venue")) -> pl.LazyFrame:
    """Detected opportunities per route: ``signals``, mean and max net edge
    (bps) and total ``profit_quote``, from ``arbitrage_signals`` rows.

    >>> s = pl.LazyFrame({"kind": "cross_venue", "asset": "BTC", "buy_venue": "a", "sell_venue": "b",
    ...     "net_edge_bps": [2.0, 4.0], "profit_quote": [1.0, 3.0]})
    >>> arbitrage_summary(s).select("signals", "mean_net_edge_bps", "profit_quote").collect().row(0)
    (2, 3.0, 4.0)
    """
    by = list(by)
    _need(signals, ["net_edge_bps", "profit_quote", *by], "arbitrage_summary")
    return (signals.group_by(by)
            .agg(pl.len().cast(pl.Int64).alias("signals"),
                 pl.col("net_edge_bps").mean().alias("mean_net_edge_bps"),
                 pl.col("net_edge_bps").max().alias("max_net_edge_bps"),
                 pl.col("profit_quote").sum().alias("profit_quote"))
            .sort(by))


def closes(trades: pl.LazyFrame, *, every: str = "1m", by: Sequence[str] = ("venue", "symbol"),
           time_column: str = "ts_exchange") -> pl.LazyFrame:
    """Last trade price (by time, then ``trade_id``) per ``every`` bar (``bucket``,
    aligned on the epoch) and venue/symbol, with ``ret_bps``, the move since the
    first bar of its venue/symbol (to compare assets on one chart). Bars without
    trades are not emitted. Hash aggregation: no sort of the trades.

    >>> import datetime as dt
    >>> t = [dt.datetime(2026, 1, 1, 0, m) for m in range(2)]
    >>> tr = pl.LazyFrame({"ts_exchange": t, "venue": "x", "symbol": "s", "price": [100.0, 101.0]})
    >>> closes(tr).select("close", pl.col("ret_bps").round(9)).collect().rows()
    [(100.0, 0.0), (101.0, 100.0)]
    """
    by = list(by)
    _need(trades, [time_column, "price", *by], "closes")
    tie = "trade_id" if "trade_id" in trades.collect_schema().names() else None
    return (trades.with_columns(pl.col(time_column).dt.truncate(every).alias("bucket"))
            .group_by([*by, "bucket"])
            .agg(_at_extreme("price", time_column, tie, last=True).alias("close"))
            .sort([*by, "bucket"])
            .with_columns(((pl.col("close") / pl.col("close").first().over(by) - 1.0) * 1e4)
                          .alias("ret_bps")))


# --------------------------------------------------------------------------- display
def _fmt(v: object, digits: int) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}g}" if v == v else "NaN"
    return str(v)


def html_table(df: pl.DataFrame | pl.LazyFrame, *, id: str, digits: int = 8,
               caption: str | None = None) -> str:
    """A plain HTML table (``<table id=... class="lab-table">``), floats to ``digits``
    significant digits, every row shown; easy to read back from the report page.

    >>> html_table(pl.DataFrame({"venue": ["a"], "x": [1.23456789]}), id="t", digits=3)
    '<table id="t" class="lab-table"><thead><tr><th>venue</th><th>x</th></tr></thead><tbody><tr><td>a</td><td>1.23</td></tr></tbody></table>'
    """
    d = df.collect() if isinstance(df, pl.LazyFrame) else df
    head = "".join(f"<th>{html.escape(c)}</th>" for c in d.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v, digits))}</td>" for v in row) + "</tr>"
                   for row in d.iter_rows())
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return (f'<table id="{html.escape(id)}" class="lab-table">{cap}<thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


_PLOTLY_SENT = False


def show(obj: Any) -> None:
    """Display a plotly figure (or an HTML string / table) in a form that
    survives the HTML export: plotly.js is embedded with the first figure only.
    """
    from IPython.display import HTML, display

    global _PLOTLY_SENT
    if isinstance(obj, str):
        display(HTML(obj))
        return
    frag = obj.to_html(full_html=False, include_plotlyjs=not _PLOTLY_SENT,
                       config={"displaylogo": False})
    _PLOTLY_SENT = True
    display(HTML(frag))
