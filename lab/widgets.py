"""Live market widgets for notebooks (``notebooks/01_live_market``).

:class:`LiveMarket` shows, for one symbol, the best bid and ask per venue (a
plotly ``FigureWidget``) and the trade tape (another ``FigureWidget``) over a
trailing window, re-read from the lake every ``interval`` seconds while a
recorder writes it. ipywidgets pick the venues, the symbol and the window;
an HTML widget shows the recorder's health (the ``recorder`` handle given,
else every recorder's status file under ``$LAB_DATA/run``).

In a notebook::

    live = LiveMarket(lake, symbol="BTC-USDT", window=60)
    live            # displays the pickers, both figures and the recorder status
    live.start()    # refresh every second (live.stop() to pause)

The window ends at the newest row in the lake (``anchor="latest"``, so a
finished recording still shows its last minutes) or at the wall clock
(``anchor="now"``).

:func:`recorder_status` reads any recorder's status: a handle with
``status()`` (:func:`lab.start_recorder` starts one in the background), a
status file, or every ``$LAB_DATA/run/recorder-*.json``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import polars as pl

from lab import plots
from lab.errors import DataError
from lab.lake import Lake, data_dir, default_lake
from lab.recorder import read_status, status_dict
from lab.venues import USD_LIKE

__all__ = ["LiveMarket", "BookReplay", "recorder_status", "status_html", "latest_time", "market_of"]


def latest_time(lake: Lake, table: str, column: str = "ts_exchange", *,
                delta: Any = None) -> dt.datetime | None:
    """Newest ``column`` value of a lake table, from the Delta file statistics (no data read).

    ``delta``: an already open ``DeltaTable`` of that table (a long-running
    reader such as the dashboards keeps one and updates it incrementally),
    instead of opening it again.

    >>> import tempfile
    >>> latest_time(Lake(tempfile.mkdtemp()), "quotes") is None
    True
    """
    t = delta if delta is not None else lake.delta(table)
    if t is None:
        return None
    try:
        acts = pl.from_arrow(t.get_add_actions(flatten=True))
    except Exception:  # noqa: BLE001 - stats unavailable: read the column instead
        acts = None
    col = f"max.{column}"
    v = None
    if isinstance(acts, pl.DataFrame) and col in acts.columns and acts.height:
        v = acts[col].max()
    if v is None:
        v = lake.scan(table).select(pl.col(column).max()).collect().item()
    if not isinstance(v, dt.datetime):
        return None
    return v if v.tzinfo else v.replace(tzinfo=dt.timezone.utc)


_USD = USD_LIKE


def market_of(symbol: str) -> str:
    """The cross-venue market a symbol belongs to: USD, USDT and USDC quotes count as ``USD``.

    >>> market_of("BTC-USDT"), market_of("BTC-USD"), market_of("ETH-BTC")
    ('BTC-USD', 'BTC-USD', 'ETH-BTC')
    """
    base, _, quote = symbol.upper().partition("-")
    return f"{base}-{'USD' if quote in _USD else quote}"


def _names(lake: Lake, table: str, column: str) -> list[str]:
    if not lake.exists(table):
        return []
    return sorted(lake.scan(table).select(pl.col(column).unique()).collect().to_series().to_list())


class LiveMarket:
    """Bid/ask per venue and trade tape for one market, refreshed from the lake.

    A market is a symbol with USD/USDT/USDC quotes merged (:func:`market_of`):
    ``symbol="BTC-USDT"`` shows binance's BTC-USDT next to coinbase's BTC-USD.

    ``refresh()`` re-reads the window once and updates both figures in place
    (returns the counts shown); ``start()``/``stop()`` run it every
    ``interval`` seconds on the notebook's event loop (or a thread outside
    Jupyter). Display the object (or ``.widget``) to see it.
    """

    def __init__(
        self,
        lake: Lake | str | os.PathLike[str] | None = None,
        *,
        symbol: str | None = None,
        venues: Sequence[str] | None = None,
        window: float = 60.0,
        interval: float = 1.0,
        anchor: str = "latest",
        recorder: Any = None,
        max_trades: int = 2_000,
    ) -> None:
        import ipywidgets as w

        if anchor not in ("latest", "now"):
            raise ValueError(f"anchor must be 'latest' or 'now', got {anchor!r}")
        self.lake = lake if isinstance(lake, Lake) else Lake(lake) if lake is not None else default_lake()
        self.anchor = anchor
        self.interval = float(interval)
        self.max_trades = int(max_trades)
        self.recorder = recorder
        known = _names(self.lake, "quotes", "symbol") + ([symbol] if symbol else [])
        self._members: dict[str, list[str]] = {}
        for s in known:
            self._members.setdefault(market_of(s), [])
            if s.upper() not in self._members[market_of(s)]:
                self._members[market_of(s)].append(s.upper())
        symbols = sorted(self._members)
        all_venues = _names(self.lake, "quotes", "venue") or list(venues or [])
        symbol = market_of(symbol) if symbol else (symbols[0] if symbols else "BTC-USD")
        if symbol not in symbols:
            symbols = sorted([*symbols, symbol])
            self._members[symbol] = [symbol]
        chosen = [v for v in (venues or all_venues) if v in all_venues] or list(venues or all_venues)
        self.symbol_picker = w.Dropdown(options=symbols, value=symbol, description="market")
        self.venue_picker = w.SelectMultiple(options=sorted(set(all_venues) | set(chosen)),
                                             value=tuple(chosen), description="venues", rows=4)
        self.window_slider = w.IntSlider(value=int(window), min=5, max=3600, step=5,
                                         description="window (s)", continuous_update=False)
        self.status = w.HTML(value="")
        self.info = w.HTML(value="")
        self.quotes_fig = plots.quotes_figure(self._empty_quotes(), widget=True, height=380,
                                              title=f"{symbol}: best bid / ask")
        self.trades_fig = plots.trades_figure(self._empty_trades(), widget=True, height=300,
                                              title=f"{symbol}: trades")
        for wd in (self.symbol_picker, self.venue_picker, self.window_slider):
            wd.observe(lambda _change: self.refresh(), names="value")
        self.widget = w.VBox([w.HBox([self.symbol_picker, self.venue_picker, self.window_slider]),
                              self.info, self.quotes_fig, self.trades_fig, self.status])
        self._task: asyncio.Task | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.last: dict[str, Any] = {}
        self.refresh()

    # -- data -------------------------------------------------------------
    @property
    def symbol(self) -> str:
        """The market shown (e.g. ``BTC-USD``, covering BTC-USD and BTC-USDT)."""
        return self.symbol_picker.value

    @property
    def venues(self) -> list[str]:
        return list(self.venue_picker.value)

    @property
    def window(self) -> dt.timedelta:
        return dt.timedelta(seconds=int(self.window_slider.value))

    def _empty_quotes(self) -> pl.DataFrame:
        return pl.DataFrame(schema={"ts_exchange": pl.Datetime("us", "UTC"), "venue": pl.String,
                                    "bid_px": pl.Float64, "ask_px": pl.Float64})

    def _empty_trades(self) -> pl.DataFrame:
        return pl.DataFrame(schema={"ts_exchange": pl.Datetime("us", "UTC"), "venue": pl.String,
                                    "price": pl.Float64, "qty": pl.Float64, "side": pl.String})

    def _end(self) -> dt.datetime:
        if self.anchor == "now":
            return dt.datetime.now(dt.timezone.utc)
        ts = [t for t in (latest_time(self.lake, "quotes"), latest_time(self.lake, "trades")) if t is not None]
        return max(ts) if ts else dt.datetime.now(dt.timezone.utc)

    def frames(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The quotes and trades currently in the window (collected)."""
        end = self._end() + dt.timedelta(microseconds=1)
        start = end - self.window
        members = self._members.get(self.symbol, [self.symbol])
        venues = self.venues or None
        q = (self.lake.scan("quotes", venue=venues, symbol=members, start=start, end=end)
             .select("ts_exchange", "venue", "bid_px", "ask_px")
             .sort("venue", "ts_exchange").collect())
        t = (self.lake.scan("trades", venue=venues, symbol=members, start=start, end=end)
             .select("ts_exchange", "venue", "price", "qty", "side")
             .sort("ts_exchange").tail(self.max_trades).sort("venue", "ts_exchange").collect())
        return q, t

    # -- figures ----------------------------------------------------------
    @staticmethod
    def _replace(fig: Any, new: Any) -> None:
        with fig.batch_update():
            fig.data = []
            for tr in new.data:
                fig.add_trace(tr)
            fig.layout.title = new.layout.title

    def refresh(self) -> dict[str, Any]:
        """Re-read the window and redraw; returns counts and the window end."""
        try:
            q, t = self.frames()
        except Exception as e:  # noqa: BLE001 - a bad read must not kill the loop
            self.info.value = f"<span style='color:#d62728'>read failed: {html.escape(str(e))}</span>"
            return {"error": str(e)}
        sym = self.symbol
        self._replace(self.quotes_fig, plots.quotes_figure(q, by=["venue"], title=f"{sym}: best bid / ask"))
        self._replace(self.trades_fig, plots.trades_figure(t, by=["venue"], title=f"{sym}: trades"))
        # a Datetime column's max is a datetime (Polars types it as any Python scalar)
        end = cast(dt.datetime | None, q["ts_exchange"].max()) if q.height else None
        self.last = {"quotes": q.height, "trades": t.height, "end": end,
                     "refreshed": dt.datetime.now(dt.timezone.utc)}
        self.info.value = (f"{q.height:,} quotes, {t.height:,} trades in the last "
                           f"{int(self.window.total_seconds())} s up to {end or '—'} (UTC)")
        self.status.value = status_html(recorder_status(self.recorder))
        return self.last

    # -- the loop ---------------------------------------------------------
    def start(self, interval: float | None = None) -> LiveMarket:
        """Refresh every ``interval`` seconds until :meth:`stop`."""
        if interval is not None:
            self.interval = float(interval)
        self.stop()
        self._stop.clear()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            self._task = loop.create_task(self._run_async())
        else:
            self._thread = threading.Thread(target=self._run_thread, name="live-market", daemon=True)
            self._thread.start()
        return self

    async def _run_async(self) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(self.interval)
            self.refresh()

    def _run_thread(self) -> None:
        while not self._stop.wait(self.interval):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    @property
    def running(self) -> bool:
        return (self._task is not None and not self._task.done()) or (
            self._thread is not None and self._thread.is_alive())

    def _repr_mimebundle_(self, **kwargs: Any) -> dict | None:
        return self.widget._repr_mimebundle_(**kwargs)


# --------------------------------------------------------------------------- recorders
def recorder_status(source: Any = None) -> dict:
    """A recorder's status dict: from a handle with ``status()``, a status file,
    or (``None``) every ``$LAB_DATA/run/recorder-*.json`` as ``{"recorders": [...]}``.

    >>> recorder_status("/nonexistent/recorder-x.json")["state"]
    'no status file yet'
    """
    if source is not None and hasattr(source, "status") and callable(source.status):
        st = dict(source.status())
        if "running" in st:
            st.setdefault("state", "running" if st["running"] else "stopped")
        return st
    if source is None:
        files = sorted((data_dir() / "run").glob("recorder-*.json"))
        return {"recorders": [recorder_status(f) for f in files]}
    p = Path(source)
    try:
        status = read_status(p)
    except FileNotFoundError:
        return {"name": p.stem.removeprefix("recorder-"), "state": "no status file yet"}
    except (OSError, DataError) as e:
        return {"name": p.stem.removeprefix("recorder-"), "state": f"unreadable status: {e}"}
    st = status_dict(status)
    age = status.age_s()
    st["state"] = "unknown" if age is None else ("running" if age < 5 else f"silent for {age:.0f} s")
    return st


def status_html(st: dict) -> str:
    """Render a :func:`recorder_status` dict as a small HTML table (one row per venue).

    >>> "binance" in status_html({"name": "r", "state": "running", "venues": {"binance":
    ...     {"connected": True, "msgs_per_s": 10.0, "gaps": 0, "resyncs": 0, "reconnects": 0}}})
    True
    """
    if "recorders" in st:
        return "".join(status_html(s) for s in st["recorders"]) or "<i>no recorder status found</i>"
    e = html.escape
    written = st.get("rows_written", "—")
    if isinstance(written, dict):  # per table, as the status file has it
        written = ", ".join(f"{k} {n}" for k, n in written.items()) or "none"
    head = (f"<b>recorder {e(str(st.get('name', '?')))}</b>: {e(str(st.get('state', st.get('process', ''))))}"
            f" · rows written {e(str(written))} · lag {st.get('lag_s', '—')} s"
            f" · lost rows {st.get('lost_rows', 0)}")
    rows = []
    for venue, v in (st.get("venues") or {}).items():
        ok = "🟢" if v.get("connected") else "🔴"
        rows.append(f"<tr><td>{ok} {e(venue)}</td><td>{v.get('msgs_per_s', '')}</td>"
                    f"<td>{v.get('gaps', '')}</td><td>{v.get('resyncs', '')}</td>"
                    f"<td>{v.get('reconnects', '')}</td><td>{e(str(v.get('last_error') or ''))}</td></tr>")
    table = ("<table class='lab-status'><tr><th>venue</th><th>msg/s</th><th>gaps</th><th>resyncs</th>"
             "<th>reconnects</th><th>last error</th></tr>" + "".join(rows) + "</table>") if rows else ""
    return f"<div>{head}{table}</div>"


# --------------------------------------------------------------------------- book replay
class BookReplay:
    """Replay top-N books with a time slider: a depth chart of the book at the
    slider's time and the mid/best bid/ask over the range with a cursor.

    ``books`` is :func:`lab.book.rebuild` output (wide: ``ts_exchange``,
    ``bid_px_i``, ``bid_qty_i``, ``ask_px_i``, ``ask_qty_i``) for one
    venue/symbol. Move ``.slider`` (or call :meth:`show_at`) to step through.
    """

    def __init__(self, books: pl.DataFrame | pl.LazyFrame, *, title: str = "") -> None:
        import ipywidgets as w
        import plotly.graph_objects as go

        from lab.book import to_long

        df = books.collect() if isinstance(books, pl.LazyFrame) else books
        if "ts_exchange" not in df.columns or "bid_px_0" not in df.columns:
            raise ValueError(f"BookReplay: expected lab.book.rebuild output (ts_exchange, bid_px_0, ...); "
                             f"got {df.columns}")
        if df.height == 0:
            raise ValueError("BookReplay: no books in the range (is there a snapshot before it?)")
        self.books = df.sort("ts_exchange")
        self.long = to_long(self.books.lazy()).collect()
        self.times = self.books["ts_exchange"]
        self.title = title
        self.depth_fig = plots.depth_figure(self._book(0), widget=True, height=360,
                                            title=self._label(0))
        top = self.books.select("ts_exchange", "bid_px_0", "ask_px_0").rename(
            {"bid_px_0": "bid_px", "ask_px_0": "ask_px"})
        self.top_fig = plots.quotes_figure(top, by=[], widget=True, height=260, title=f"{title} best bid / ask")
        self.top_fig.add_trace(go.Scatter(x=[self.times[0]], y=[self.books["bid_px_0"][0]], mode="markers",
                                          marker=dict(size=12, color="black", symbol="x"), name="now"))
        self.slider = w.IntSlider(value=0, min=0, max=self.books.height - 1, step=1,
                                  description="book #", continuous_update=False,
                                  layout=w.Layout(width="95%"))
        self.play = w.Play(value=0, min=0, max=self.books.height - 1, step=1, interval=250)
        w.jslink((self.play, "value"), (self.slider, "value"))
        self.slider.observe(lambda ch: self.show_at(ch["new"]), names="value")
        self.widget = w.VBox([w.HBox([self.play, self.slider]), self.depth_fig, self.top_fig])

    def _book(self, i: int) -> pl.DataFrame:
        t = self.times[i]
        return self.long.filter(pl.col("ts_exchange") == t)

    def _label(self, i: int) -> str:
        return f"{self.title} book at {self.times[i]}"

    def show_at(self, i: int) -> pl.DataFrame:
        """Draw book ``i`` (0 = first in range); returns it in long layout."""
        i = max(0, min(int(i), self.books.height - 1))
        book = self._book(i)
        new = plots.depth_figure(book)
        with self.depth_fig.batch_update():
            for old, tr in zip(self.depth_fig.data, new.data):
                old.x, old.y = tr.x, tr.y
            self.depth_fig.layout.title = self._label(i)
        with self.top_fig.batch_update():
            cur = self.top_fig.data[-1]
            cur.x, cur.y = [self.times[i]], [self.books["bid_px_0"][i]]
        return book

    def _repr_mimebundle_(self, **kwargs: Any) -> dict | None:
        return self.widget._repr_mimebundle_(**kwargs)
