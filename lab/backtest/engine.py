"""Event-driven backtest: configuration, the runner and its results.

>>> import polars as pl, datetime as dt
>>> from lab.backtest import build_events, run_backtest, Strategy, BacktestConfig, Fees, Latency
>>> t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
>>> us = lambda k: t + dt.timedelta(microseconds=k)
>>> book = pl.DataFrame({"ts_exchange": [us(0), us(0)], "ts_local": [us(0), us(0)],
...     "venue": ["x", "x"], "symbol": ["BTC-USD"] * 2, "side": ["bid", "ask"],
...     "price": [100.0, 101.0], "qty": [1.0, 1.0], "is_snapshot": [True, True], "seq": [1, 1]})
>>> trades = pl.DataFrame({"ts_exchange": [us(5000)], "ts_local": [us(5000)], "venue": ["x"],
...     "symbol": ["BTC-USD"], "trade_id": ["1"], "price": [101.0], "qty": [0.1], "side": ["buy"]})
>>> class Taker(Strategy):
...     def on_book(self, ctx, venue, symbol):
...         if ctx.position(venue, symbol) == 0 and not ctx.open_orders(venue, symbol):
...             ctx.buy(venue, symbol, 0.5)            # market order
>>> cfg = BacktestConfig(fees={"x": Fees(maker=-0.0001, taker=0.001)}, latency=Latency(entry_us=100, response_us=100))
>>> res = run_backtest(Taker(), build_events(book, trades), cfg)
>>> res.fills.select("price", "qty", "fee", "liquidity").rows()
[(101.0, 0.5, 0.0505, 'taker')]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np
import polars as pl

from lab.backtest import core
from lab.backtest.data import USD_LIKE, Events
from lab.backtest.strategy import Context, FastStrategy, Fill, OrderUpdate, Strategy, Trade
from lab.venues import VENUES

__all__ = ["Fees", "Latency", "BacktestConfig", "Result", "Engine", "run_backtest", "DEFAULT_FEES"]

# Base-tier spot fees as published by each venue (fractions of notional). Check
# your own tier; pass ``fees=`` to override. Negative values are rebates.
DEFAULT_FEES: dict[str, tuple[float, float]] = {n: (v.maker, v.taker) for n, v in VENUES.items()}


class Fees(msgspec.Struct, frozen=True):
    """Maker and taker fee rates as fractions of notional (0.001 = 10 bp; negative = rebate)."""

    maker: float = 0.0
    taker: float = 0.0


class Latency(msgspec.Struct, frozen=True):
    """Order-entry and response latency in microseconds.

    ``dist="constant"`` uses the values as given; ``"lognormal"`` draws each
    latency from a log-normal with that median and shape ``sigma`` (seeded, so
    runs stay deterministic); ``"samples"`` cycles through ``samples_us``.
    Feed latency is not configured: it is the recorded ``ts_local - ts_exchange``.
    """

    entry_us: float = 1_000.0
    response_us: float = 1_000.0
    dist: str = "constant"
    sigma: float = 0.5
    seed: int = 0
    samples_us: tuple[float, ...] = ()

    def arrays(self, n: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
        if self.dist == "constant":
            return (np.array([round(self.entry_us)], np.int64), np.array([round(self.response_us)], np.int64))
        if self.dist == "lognormal":
            rng = np.random.default_rng(self.seed)
            e = self.entry_us * np.exp(self.sigma * rng.standard_normal(n))
            r = self.response_us * np.exp(self.sigma * rng.standard_normal(n))
            return np.round(e).astype(np.int64), np.round(r).astype(np.int64)
        if self.dist == "samples":
            if not self.samples_us:
                raise ValueError("Latency(dist='samples') needs samples_us")
            s = np.round(np.asarray(self.samples_us)).astype(np.int64)
            return s, s.copy()
        raise ValueError(f"Latency.dist must be constant, lognormal or samples, got {self.dist!r}")


class BacktestConfig(msgspec.Struct, frozen=True):
    """Everything about the simulated exchange except the data and the strategy.

    ``queue``: ``risk_averse`` (our place advances only when trades print at
    our price; depth decreases never help), ``prob_power`` (hftbacktest's
    power probability model: a size decrease not explained by trades comes
    from ahead of us with probability ``back^n / (back^n + front^n)``,
    ``n = queue_param``) or ``prob_log`` (``log(1+back) / (log(1+back) + log(1+front))``).
    ``fees`` by venue; venues not listed use :data:`DEFAULT_FEES` (0 if unknown).
    ``equity_interval_s`` is the equity sampling interval: Sharpe and Sortino
    are computed from returns over this interval, annualised with 365 days.
    ``book_ticks`` bounds the price window (in ticks) one instrument's book
    keeps: the window covers every price of the data fed so far, unless that
    would exceed ``book_ticks`` (a bad price far away); then it is centred on
    the data and levels outside it are dropped (counted, with a warning).
    """

    fees: dict[str, Fees] = {}
    latency: Latency = Latency()
    queue: str = "risk_averse"
    queue_param: float = 2.0
    equity_interval_s: float = 1.0
    book_ticks: int = 1 << 23
    max_orders: int = 4096

    def fee(self, venue: str) -> Fees:
        if venue in self.fees:
            return self.fees[venue]
        m, t = DEFAULT_FEES.get(venue, (0.0, 0.0))
        return Fees(maker=m, taker=t)

    def queue_code(self) -> int:
        codes = {"risk_averse": core.Q_RISK_AVERSE, "prob_power": core.Q_PROB_POWER,
                 "prob_log": core.Q_PROB_LOG}
        if self.queue not in codes:
            raise ValueError(f"queue must be one of {sorted(codes)}, got {self.queue!r}")
        return codes[self.queue]


class Result(msgspec.Struct):
    """What a run produced (frames are eager Polars DataFrames)."""

    strategy: str
    fills: pl.DataFrame
    orders: pl.DataFrame
    equity: pl.DataFrame
    venue_equity: pl.DataFrame
    positions: pl.DataFrame
    events: int
    elapsed_s: float
    equity_interval_s: float
    overflow: int = 0
    #: Where the order-event log went when it was streamed to disk instead of ``orders``
    #: (a Parquet glob; :func:`lab.distributed.backtest_days`); ``orders`` is then empty.
    orders_file: str | None = None

    def scan_orders(self) -> pl.LazyFrame:
        """The order-event log, lazily: from :attr:`orders_file` when it was streamed to disk."""
        if self.orders_file is None:
            return self.orders.lazy()
        return pl.scan_parquet(self.orders_file, schema=self.orders.schema)

    def stats(self) -> dict[str, Any]:
        from lab.backtest.stats import summary

        return summary(self)

    @property
    def events_per_s(self) -> float:
        return self.events / self.elapsed_s if self.elapsed_s > 0 else float("inf")


def _assets(instruments) -> list[str]:
    out: list[str] = []
    for ins in instruments:
        for a in (ins.base, ins.quote):
            if a not in out:
                out.append(a)
    return out


class Engine:
    """One simulated exchange + account, driven by events (a backtest or a paper session)."""

    def __init__(self, instruments: list, config: BacktestConfig, *, start_us: int, end_us: int,
                 max_fills: int = 65_536, max_log: int = 262_144,
                 sink: Callable[[dict[str, pl.DataFrame]], None] | None = None) -> None:
        """``sink``: stream the outputs instead of keeping them. When the fill or order-event
        log fills up, and before a :meth:`feed` whose equity samples would not fit, the rows
        logged so far go to ``sink(self.drain())`` and the logs start again empty, so memory
        stays bounded however long the run; without a sink the logs double in place."""
        self.config = config
        self.instruments = list(instruments)
        self.venues = sorted({i.venue for i in self.instruments})
        self.assets = _assets(self.instruments)
        vi = {v: k for k, v in enumerate(self.venues)}
        ai = {a: k for k, a in enumerate(self.assets)}
        asset_fixed = np.array([1.0 if a in USD_LIKE else np.nan for a in self.assets])
        asset_inst = np.full(len(self.assets), -1, np.int64)
        # price each non-USD asset by its first instrument quoted in USD (or in an asset priced so)
        for _ in range(2):
            for k, ins in enumerate(self.instruments):
                a, q = ai[ins.base], ai[ins.quote]
                if np.isnan(asset_fixed[a]) and asset_inst[a] < 0 and (
                        not np.isnan(asset_fixed[q]) or asset_inst[q] >= 0):
                    asset_inst[a] = k
        lat_e, lat_r = config.latency.arrays()
        self.eq_iv = max(1, int(round(config.equity_interval_s * 1e6)))
        self.sink = sink
        # streamed: the equity buffer is sized per feed (see _equity_room), not for the whole span
        n_eq = 1024 if sink is not None else int((end_us - start_us) // self.eq_iv) + 3
        self.arr = core.new_state(
            inst_venue=np.array([vi[i.venue] for i in self.instruments]),
            inst_base=np.array([ai[i.base] for i in self.instruments]),
            inst_quote=np.array([ai[i.quote] for i in self.instruments]),
            tick=np.array([i.tick for i in self.instruments]),
            lot=np.array([i.lot for i in self.instruments]),
            maker_fee=np.array([config.fee(v).maker for v in self.venues]),
            taker_fee=np.array([config.fee(v).taker for v in self.venues]),
            asset_inst=asset_inst, asset_fixed=asset_fixed, lat_entry=lat_e, lat_resp=lat_r,
            queue_model=config.queue_code(), queue_param=config.queue_param,
            n_venues=len(self.venues), n_assets=len(self.assets), eq_interval=self.eq_iv, n_eq=n_eq,
            max_orders=config.max_orders,
            max_fills=max_fills, max_log=max_log)
        self.st = core.as_ref(self.arr)
        self.arr.ctr[core.C_NOW] = start_us
        self.arr.ctr[core.C_EQ_NEXT] = start_us
        self.ctx = Context(self.st, self.arr, self.instruments, self.assets, self.venues)
        self.ctx.config = config
        self.events = 0
        self.elapsed = 0.0
        self._fills_taken = 0
        self._log_taken = 0
        self._last_eq = -int(core.INF)  # time of the last equity sample (kept across drains)

    # -- driving ------------------------------------------------------------
    def start(self, strategy: Strategy | FastStrategy) -> None:
        self.strategy = strategy
        names = {"book": core.CB_BOOK, "trade": core.CB_TRADE, "fill": core.CB_FILL,
                 "order": core.CB_ORDER, "timer": core.CB_TIMER}
        self._mask = np.zeros(8, np.int64)
        for c in strategy.callbacks:
            if c not in names:
                raise ValueError(f"{strategy!r}.callbacks: unknown {c!r}; known {sorted(names)}")
            self._mask[names[c]] = 1
        if isinstance(strategy, FastStrategy):
            self._fn, self._params = strategy.fn, np.ascontiguousarray(strategy.params, np.float64)
            self._mem = np.zeros(strategy.mem_size, np.float64)
            self._fn(self.st, core.CB_START, -1, -1, self._params, self._mem)
        else:
            self._fn, self._params, self._mem = core.noop_strategy, np.zeros(1), np.zeros(1)
            strategy.on_start(self.ctx)

    def feed(self, ev: Events, t_stop: int, *, skip_exchange: int = 0) -> None:
        """Process the rows of ``ev`` and everything else due up to ``t_stop`` (µs).

        Rows after ``t_stop`` on either timeline stay unprocessed: after the call,
        ``ctr[C_IEX]`` rows (in exchange order) were replayed at the exchange and
        ``lorder[:ctr[C_ILO]]`` locally. ``skip_exchange``: the first rows of ``ev``
        were already replayed at the exchange by an earlier feed (only their local
        side is still due): a run split in pieces carries them over this way.
        """
        t0 = time.perf_counter()
        if self.sink is not None:
            self._equity_room(t_stop)
        self._fit_books(ev)
        st, a = self.st, self.arr
        a.ctr[core.C_IEX] = skip_exchange
        a.ctr[core.C_ILO] = 0
        n0 = int(a.ctr[core.C_NEVENTS])
        args = (ev.ts_x, ev.ts_l, ev.kind, ev.inst, ev.side, ev.px, ev.qty, ev.lorder)
        py = not isinstance(self.strategy, FastStrategy)
        while True:
            if py:
                code = core.run_loop_py(st, *args, np.int64(t_stop), self._mask)
            elif self.strategy.loop is not None:
                code = self.strategy.loop(st, *args, np.int64(t_stop), self._mask, self._params, self._mem)
            else:
                code = core.run_loop(st, *args, np.int64(t_stop), self._mask, self._fn, self._params, self._mem)
            if code == core.CB_NONE:
                break
            if code == core.GROW:
                self._grow()
                st = self.st
                continue
            if py:
                self._dispatch(code, ev)
        self.elapsed += time.perf_counter() - t0
        self.events += int(a.ctr[core.C_NEVENTS]) - n0

    def _fit_books(self, ev: Events) -> None:
        """Widen the book windows (see ``core``'s books) to cover every book price of ``ev``.

        A window grows with a margin of a quarter of its span, so a live feed
        drifting in price reallocates rarely; past ``config.book_ticks`` it is
        centred on the median price of ``ev`` instead.
        """
        a = self.arr
        mn, mx = core.price_bounds(ev.kind, ev.inst, ev.px, len(self.instruments))
        lo, w = a.bmeta[:, core.M_LO].copy(), a.bmeta[:, core.M_W].copy()
        change = False
        for i in range(len(self.instruments)):
            if mx[i] < 0 or (w[i] > 0 and mn[i] >= lo[i] and mx[i] < lo[i] + w[i]):
                continue
            a0, z0 = (min(mn[i], lo[i]), max(mx[i], lo[i] + w[i] - 1)) if w[i] > 0 else (mn[i], mx[i])
            margin = max(1024, (z0 - a0) // 4)
            a0, z0 = max(a0 - margin, 0), z0 + margin
            if z0 - a0 + 1 > self.config.book_ticks:
                mid = int(np.median(ev.px[(ev.inst == i) & (ev.kind != core.EV_TRADE)]))
                a0 = max(mid - self.config.book_ticks // 2, 0)
                z0 = a0 + self.config.book_ticks - 1
            lo[i], w[i] = a0, (z0 - a0 + 64) // 64 * 64
            change = True
        if change:
            self.arr = core.resize_books(a, lo, w)
            self.st = core.as_ref(self.arr)
            self.ctx._st, self.ctx._a = self.st, self.arr

    def _grow(self) -> None:
        """Make room in the fill and order-event logs (the compiled loop asked for it):
        hand their rows to the sink, or, without one (or if draining is not enough), double them."""
        if self.sink is not None:
            self.sink(self.drain())
            if not core.needs_room(self.st):
                return
        a = self.arr
        more = {k: np.concatenate([getattr(a, k), np.zeros_like(getattr(a, k))]) for k in ("fl", "flf", "lg", "lgf")}
        self._swap(a._replace(**more))

    def _swap(self, arrays: core.State) -> None:
        self.arr = arrays
        self.st = core.as_ref(self.arr)
        self.ctx._st, self.ctx._a = self.st, self.arr

    def _equity_room(self, t_stop: int) -> None:
        """Room for every equity sample due up to ``t_stop`` (the compiled loop drops samples
        that do not fit): drain the buffer to the sink first, enlarge it if one feed needs more."""
        a = self.arr
        nxt = int(a.ctr[core.C_EQ_NEXT])
        need = 2 if nxt >= core.INF or t_stop < nxt else (t_stop - nxt) // self.eq_iv + 3
        n, cap = int(a.ctr[core.C_NEQ]), a.eq_ts.shape[0]
        if n + need <= cap:
            return
        if n and self.sink is not None:
            self.sink(self.drain())
            a = self.arr
        if need > cap:
            size = max(need, 2 * cap)
            self._swap(a._replace(eq_ts=np.zeros(size, np.int64),
                                  eq_val=np.zeros((size, a.eq_val.shape[1]), np.float64),
                                  eq_pos=np.zeros((size, a.eq_pos.shape[1]), np.float64)))

    def drain(self) -> dict[str, pl.DataFrame]:
        """The rows logged since the last drain, and empty the logs.

        ``fills`` and ``orders`` as in :class:`Result`; ``equity`` one wide row per
        sample: ``ts`` (µs), ``v<k>`` (equity of venue ``k``), ``p<k>`` (position of
        instrument ``k``) — :meth:`equity_frames` turns parts of it back into the
        result's equity, venue_equity and positions frames.
        """
        a = self.arr
        n = int(a.ctr[core.C_NEQ])
        eq = {"ts": a.eq_ts[:n].copy()}
        eq.update({f"v{k}": a.eq_val[:n, k].copy() for k in range(len(self.venues))})
        eq.update({f"p{k}": a.eq_pos[:n, k].copy() for k in range(len(self.instruments))})
        out = {"fills": self.fills_frame(), "orders": self.orders_frame(),
               "equity": pl.DataFrame(eq, schema={c: pl.Int64 if c == "ts" else pl.Float64 for c in eq})}
        if n:
            self._last_eq = int(a.eq_ts[n - 1])
        a.ctr[core.C_NFILL] = 0
        a.ctr[core.C_NLOG] = 0
        a.ctr[core.C_NEQ] = 0
        return out

    def _dispatch(self, code: int, ev: Events) -> None:
        st, s, ctx = self.arr, self.strategy, self.ctx
        assert isinstance(s, Strategy)  # a FastStrategy's callbacks run inside the compiled loop
        _, i, slot, oid = (int(x) for x in st.cb[:4])
        if code == core.CB_BOOK:
            ins = self.instruments[i]
            s.on_book(ctx, ins.venue, ins.symbol)
        elif code == core.CB_TRADE:
            ins = self.instruments[i]
            s.on_trade(ctx, Trade(ins.venue, ins.symbol, int(ev.ts_x[slot]), int(ev.ts_l[slot]),
                                  float(ev.px[slot] * ins.tick), float(ev.qty[slot]),
                                  "buy" if ev.side[slot] > 0 else "sell"))
        elif code == core.CB_FILL:
            ins = self.instruments[i]
            s.on_fill(ctx, Fill(oid, ins.venue, ins.symbol, "buy" if st.cb[7] > 0 else "sell",
                                float(st.cb[5] * ins.tick), float(st.cbf[0]), float(st.cbf[1]),
                                "maker" if st.cb[6] else "taker", ctx.now))
        elif code == core.CB_ORDER:
            ins = self.instruments[i]
            s.on_order(ctx, OrderUpdate(oid, ins.venue, ins.symbol, core.EVENT_NAMES[int(st.cb[4])], ctx.now))
        elif code == core.CB_TIMER:
            s.on_timer(ctx)

    def finish(self, t_end: int) -> None:
        """A last equity sample at ``t_end`` unless one was taken there."""
        n = int(self.arr.ctr[core.C_NEQ])
        last = int(self.arr.eq_ts[n - 1]) if n else self._last_eq
        if last < t_end:
            if self.sink is not None:
                self._equity_room(t_end)
            core._sample_equity(self.st, np.int64(t_end))

    # -- results ---------------------------------------------------------------
    def _inst_frame(self) -> pl.DataFrame:
        return pl.DataFrame({"inst": np.arange(len(self.instruments), dtype=np.int64),
                             "venue": [i.venue for i in self.instruments],
                             "symbol": [i.symbol for i in self.instruments]})

    def fills_frame(self, start: int = 0) -> pl.DataFrame:
        n = int(self.arr.ctr[core.C_NFILL])
        fl, flf = self.arr.fl[start:n], self.arr.flf[start:n]
        df = pl.DataFrame({
            "ts_exchange": fl[:, core.FL_TSX], "ts_local": fl[:, core.FL_TSL],
            "order_id": fl[:, core.FL_ID], "inst": fl[:, core.FL_INST],
            "side": np.where(fl[:, core.FL_SIDE] > 0, "buy", "sell"),
            "price": flf[:, 0], "qty": flf[:, 1], "fee": flf[:, 2],
            "liquidity": np.where(fl[:, core.FL_MAKER] > 0, "maker", "taker"),
        }, schema_overrides={"side": pl.String, "liquidity": pl.String})
        return (df.join(self._inst_frame(), on="inst", how="left", maintain_order="left")
                .with_columns(pl.from_epoch("ts_exchange", "us").dt.replace_time_zone("UTC"),
                              pl.from_epoch("ts_local", "us").dt.replace_time_zone("UTC"))
                .select("ts_exchange", "ts_local", "order_id", "venue", "symbol", "side", "price",
                        "qty", "fee", "liquidity"))

    def orders_frame(self, start: int = 0) -> pl.DataFrame:
        n = int(self.arr.ctr[core.C_NLOG])
        lg, lgf = self.arr.lg[start:n], self.arr.lgf[start:n]
        tick = np.array([i.tick for i in self.instruments] or [1.0])
        df = pl.DataFrame({
            "ts": lg[:, core.LG_TS], "order_id": lg[:, core.LG_ID], "inst": lg[:, core.LG_INST],
            "side": np.where(lg[:, core.LG_SIDE] > 0, "buy", "sell"),
            "type": np.where(lg[:, core.LG_TYPE] == core.MARKET, "market", "limit"),
            "tif": np.array(["gtc", "post_only", "ioc", "fok"])[lg[:, core.LG_TIF]],
            "event": np.array(core.EVENT_NAMES)[lg[:, core.LG_EV]],
            "price": lg[:, core.LG_PX] * tick[lg[:, core.LG_INST]], "qty": lgf[:, 0],
        }, schema_overrides={"side": pl.String, "type": pl.String, "tif": pl.String, "event": pl.String})
        return (df.join(self._inst_frame(), on="inst", how="left", maintain_order="left")
                .with_columns(pl.from_epoch("ts", "us").dt.replace_time_zone("UTC"),
                              pl.when(pl.col("type") == "market").then(None).otherwise(pl.col("price"))
                              .alias("price"))
                .select("ts", "order_id", "venue", "symbol", "side", "type", "tif", "event", "price", "qty"))

    def equity_frames(self, ts_us: np.ndarray, veq: np.ndarray,
                      pos: np.ndarray) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """``equity``, ``venue_equity`` and ``positions`` of :class:`Result` from the samples'
        times (µs), equity per venue (samples x venues) and position per instrument."""
        n = len(ts_us)
        ts = pl.Series("ts", ts_us).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        equity = pl.DataFrame({"ts": ts, "equity": veq.sum(axis=1) if veq.size else np.zeros(n)})
        venue_equity = pl.concat([
            pl.DataFrame({"ts": ts, "venue": [v] * n, "equity": veq[:, k]}) for k, v in enumerate(self.venues)
        ]) if self.venues else pl.DataFrame(schema={"ts": ts.dtype, "venue": pl.String, "equity": pl.Float64})
        positions = pl.concat([
            pl.DataFrame({"ts": ts, "venue": [ins.venue] * n, "symbol": [ins.symbol] * n,
                          "qty": pos[:, k]}) for k, ins in enumerate(self.instruments)])
        return equity, venue_equity, positions

    def result(self) -> Result:
        st = self.arr
        n = int(st.ctr[core.C_NEQ])
        equity, venue_equity, positions = self.equity_frames(st.eq_ts[:n], st.eq_val[:n], st.eq_pos[:n])
        name = getattr(self.strategy, "name", type(self.strategy).__name__)
        return Result(name, self.fills_frame(), self.orders_frame(), equity, venue_equity, positions,
                      self.events, self.elapsed, self.eq_iv / 1e6, int(st.ctr[core.C_OVERFLOW]))


def run_backtest(strategy: Strategy | FastStrategy, events: Events, config: BacktestConfig | None = None,
                 **engine_kw: Any) -> Result:
    """Replay ``events`` through ``strategy``; deterministic for the same inputs."""
    config = config or BacktestConfig()
    if len(events) == 0:
        raise ValueError("run_backtest: no events (empty data for the chosen venues/symbols/times)")
    # logs sized from the data (they still grow if needed): growing a log of millions of rows
    # in the middle of a run cost far more than allocating it up front (measured 0.74 vs 1.9 M events/s)
    engine_kw.setdefault("max_log", min(max(262_144, len(events)), 16_000_000))
    engine_kw.setdefault("max_fills", min(max(65_536, len(events) // 8), 4_000_000))
    eng = Engine(events.instruments, config, start_us=events.start, end_us=events.end, **engine_kw)
    eng.start(strategy)
    eng.feed(events, events.end)
    eng.finish(events.end)
    if eng.arr.ctr[core.C_OVERFLOW]:
        import warnings

        warnings.warn(f"backtest buffers overflowed (code {int(eng.arr.ctr[core.C_OVERFLOW])}); "
                      "raise max_orders/max_fills/max_log", stacklevel=2)
    if eng.arr.ctr[core.C_DROPPED]:
        import warnings

        warnings.warn(f"{int(eng.arr.ctr[core.C_DROPPED]):,} book rows fell outside the book window and were "
                      f"dropped (prices spread over more than book_ticks={config.book_ticks:,} ticks)",
                      stacklevel=2)
    return eng.result()
