"""Risk figures: positions, marks, PnL, exposure, VaR/ES, drawdown, limits.

Conventions (USD-like quotes treated as USD at ``quote_rates``):

* ``spot`` and ``linear`` positions: ``qty`` in base units (times
  ``contract_size``, default 1); notional ``qty·cs·mark``; unrealised PnL
  ``qty·cs·(mark − avg_entry)`` in USD.
* ``inverse`` positions (coin-margined perpetuals): ``qty`` contracts of
  ``contract_size`` USD face; unrealised PnL ``qty·cs·(1/avg_entry − 1/mark)``
  in coin, times ``mark`` in USD; exposure is the face value ``qty·cs``.
* total PnL = realised + unrealised − fees + funding (all USD).

Every function is pure (frames in, frames or numbers out); the live monitor
(:mod:`lab.risk.live`) calls the same functions each second.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec
import numpy as np
import polars as pl

from lab.errors import ConfigError
from lab.schema import TS
from lab.tomlconfig import load_section, read_toml
from lab.venues import usd_rates

__all__ = [
    "Position", "Limits", "RiskConfig", "load_positions", "load_risk_config",
    "positions_frame", "positions_from_paper", "marks", "mark_positions", "exposure",
    "returns_matrix", "var_es", "ewma_cov", "drawdown", "check_limits", "snapshot",
    "POSITION_SCHEMA",
]



POSITION_SCHEMA = {
    "venue": pl.String(), "asset": pl.String(), "qty": pl.Float64(), "avg_entry": pl.Float64(),
    "kind": pl.String(), "contract_size": pl.Float64(), "symbol": pl.String(),
    "realized_pnl": pl.Float64(), "fees": pl.Float64(), "funding": pl.Float64(),
}


class Position(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One position as a user exports it from an exchange account.

    ``kind``: ``spot`` (default), ``linear`` (USD(T)-margined perpetual) or
    ``inverse`` (coin-margined, ``qty`` in contracts of ``contract_size`` USD).
    ``symbol`` defaults to ``ASSET-USDT``/``ASSET-USD`` (whichever the venue quotes).
    """

    venue: str
    asset: str
    qty: float
    avg_entry: float
    kind: str = "spot"
    contract_size: float = 1.0
    symbol: str | None = None
    realized_pnl: float = 0.0
    fees: float = 0.0
    funding: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("spot", "linear", "inverse"):
            raise ValueError(f"position {self.venue}/{self.asset}: kind must be spot, linear or "
                             f"inverse, got {self.kind!r}")
        if self.avg_entry <= 0 and self.qty != 0:
            raise ValueError(f"position {self.venue}/{self.asset}: avg_entry must be > 0")


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Risk limits (USD). Missing entries mean no limit.

    ``asset_notional``/``venue_notional``: max gross exposure per asset/venue
    (``"*"`` applies to every one not listed); ``daily_loss``: max loss since
    00:00 UTC (positive number); ``stale_feed_s``: a venue whose marks are older
    than this breaches the stale-feed limit.
    """

    asset_notional: dict[str, float] = msgspec.field(default_factory=dict)
    venue_notional: dict[str, float] = msgspec.field(default_factory=dict)
    daily_loss: float | None = None
    stale_feed_s: float | None = 5.0
    leverage: float | None = None


class RiskConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``config/risk.toml``: marks, VaR settings, capital, limits and alert sinks."""

    capital: float = 100_000.0
    mark: str = "mid"  # or "conservative": bid for longs, ask for shorts
    stale_after_s: float = 5.0
    stale_policy: str = "conservative"  # or "exclude"
    quote_rates: dict[str, float] = msgspec.field(
        default_factory=usd_rates)
    var_levels: list[float] = msgspec.field(default_factory=lambda: [0.95, 0.99])
    ewma_lambda: float = 0.94
    history_days: float = 30.0
    bar: str = "1m"
    horizon_bars: int = 1
    positions_file: str | None = None
    paper: bool = True  # also read positions from the paper runner's tables
    paper_session: str | None = None
    limits: Limits = Limits()
    alerts: list[str] = msgspec.field(default_factory=lambda: ["log"])
    every_s: float = 1.0


def load_risk_config(path: str | Path | None) -> RiskConfig:
    """``[risk]`` (or the top level) of a TOML file; ``None`` → defaults."""
    return load_section(path, "risk", RiskConfig)


def load_positions(path: str | Path) -> pl.DataFrame:
    """Positions from TOML (``[[position]]`` tables) or CSV (a header row with the fields).

    Fields: venue, asset, qty, avg_entry, and optionally kind, contract_size,
    symbol, realized_pnl, fees, funding. Errors name the file and the row.
    """
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"positions file {p} not found")
    if p.suffix.lower() == ".csv":
        with p.open(newline="") as f:
            rows = [{k.strip(): v.strip() for k, v in r.items() if k and v is not None and v.strip()}
                    for r in csv.DictReader(f)]
    else:
        rows = read_toml(p, "positions").get("position", [])
    out = []
    for i, r in enumerate(rows, 1):
        try:
            out.append(msgspec.convert(r, Position, strict=False))
        except (msgspec.ValidationError, ValueError) as e:
            raise ConfigError(f"{p}: position #{i}: {e}") from None
    return positions_frame(out)


def positions_frame(positions: Sequence[Position]) -> pl.DataFrame:
    """Positions → a frame with :data:`POSITION_SCHEMA`.

    >>> positions_frame([Position("binance", "BTC", 0.5, 60000.0)]).row(0)[:5]
    ('binance', 'BTC', 0.5, 60000.0, 'spot')
    """
    return pl.DataFrame([msgspec.structs.asdict(x) for x in positions] or None,
                        schema=POSITION_SCHEMA)


def positions_from_paper(lf: pl.LazyFrame, session: str | None = None) -> pl.LazyFrame:
    """Latest ``paper_positions`` row per session/strategy/venue/asset, as positions.

    Realised PnL and fees come from the paper runner; positions are spot.
    """
    if session is not None:
        lf = lf.filter(pl.col("session") == session)
    return (lf.sort("ts").group_by("venue", "asset").agg(
                pl.col("qty").last(), pl.col("avg_price").last().alias("avg_entry"),
                pl.col("realized_pnl").last(), pl.col("fees").last())
            .select(pl.col("venue"), pl.col("asset"), pl.col("qty"),
                    pl.col("avg_entry").fill_null(0.0), pl.lit("spot").alias("kind"),
                    pl.lit(1.0).alias("contract_size"), pl.lit(None, pl.String).alias("symbol"),
                    pl.col("realized_pnl").fill_null(0.0), pl.col("fees").fill_null(0.0),
                    pl.lit(0.0).alias("funding"))
            .sort("venue", "asset"))


# --------------------------------------------------------------------------- marks
def marks(quotes: pl.LazyFrame, now: dt.datetime, *, stale_after_s: float = 5.0,
          time_column: str = "ts_local") -> pl.LazyFrame:
    """Latest quote per venue/symbol as of ``now``, with ``mid``, ``age_s`` and ``stale``.

    >>> q = pl.LazyFrame({"ts_local": [dt.datetime(2026, 1, 1, 0, 0, s, tzinfo=dt.timezone.utc) for s in (0, 1, 9)],
    ...     "venue": ["a", "a", "b"], "symbol": "BTC-USD", "bid_px": [99.0, 100.0, 98.0],
    ...     "ask_px": [101.0, 102.0, 99.0]})
    >>> now = dt.datetime(2026, 1, 1, 0, 0, 10, tzinfo=dt.timezone.utc)
    >>> marks(q, now).select("venue", "mid", "age_s", "stale").collect().rows()
    [('a', 101.0, 9.0, True), ('b', 98.5, 1.0, False)]
    """
    t = pl.col(time_column)
    return (quotes.filter(t <= now).sort(time_column)
            .group_by("venue", "symbol").agg(t.last().alias("ts"), pl.col("bid_px").last(),
                                             pl.col("ask_px").last())
            .with_columns(((pl.col("bid_px") + pl.col("ask_px")) / 2).alias("mid"),
                          ((pl.lit(now).cast(TS) - pl.col("ts").cast(TS)).dt.total_microseconds()
                           / 1e6).alias("age_s"))
            .with_columns((pl.col("age_s") > stale_after_s).alias("stale"))
            .sort("venue", "symbol"))


def mark_positions(positions: pl.DataFrame | pl.LazyFrame, marks_: pl.DataFrame | pl.LazyFrame, *,
                   method: str = "mid", stale_policy: str = "conservative",
                   quote_rates: Mapping[str, float] | None = None) -> pl.DataFrame:
    """Mark each position and compute its PnL and exposure (USD).

    The mark is the position's venue quote for its symbol (``ASSET-USDT`` or
    ``ASSET-USD`` when no symbol is given): its mid, or with
    ``method="conservative"`` the side the position would close on (bid for a
    long, ask for a short). A **stale** mark is flagged (``stale``) and, by
    ``stale_policy``: ``"conservative"`` marks at the worse of the stale
    quote's closing side and the freshest other venue's closing side for the
    asset; ``"exclude"`` leaves the position unmarked (null value, excluded
    from exposure). A position with no quote at all is ``unmarked``.

    Adds: ``mark, stale, unmarked, notional, exposure, unrealized_pnl,
    total_pnl``.
    """
    if method not in ("mid", "conservative"):
        raise ValueError(f"method must be 'mid' or 'conservative', got {method!r}")
    if stale_policy not in ("conservative", "exclude"):
        raise ValueError(f"stale_policy must be 'conservative' or 'exclude', got {stale_policy!r}")
    rates = dict(quote_rates or usd_rates())
    pos = positions.lazy().collect() if isinstance(positions, pl.LazyFrame) else positions
    mk = marks_.lazy().collect() if isinstance(marks_, pl.LazyFrame) else marks_
    mk = (mk.with_columns(pl.col("symbol").str.split_exact("-", 1)
                          .struct.rename_fields(["asset", "quote"]).alias("__s")).unnest("__s")
          .filter(pl.col("quote").is_in(list(rates)))
          .with_columns(pl.col("quote").replace_strict(rates, return_dtype=pl.Float64).alias("rate"))
          .with_columns(pl.col("bid_px") * pl.col("rate"), pl.col("ask_px") * pl.col("rate"),
                        pl.col("mid") * pl.col("rate")))
    # the venue's own quote (explicit symbol, else any USD-like symbol of the asset)
    own = mk.select("venue", "asset", pl.col("symbol").alias("__msym"), "bid_px", "ask_px", "mid",
                    "stale", "age_s").sort("stale").unique(["venue", "asset"], keep="first",
                                                           maintain_order=True)
    with_sym = pos.filter(pl.col("symbol").is_not_null()).join(
        mk.select("venue", pl.col("symbol"), pl.col("symbol").alias("__msym"), "bid_px", "ask_px",
                  "mid", "stale", "age_s"), on=["venue", "symbol"], how="left")
    no_sym = pos.filter(pl.col("symbol").is_null()).join(own, on=["venue", "asset"], how="left")
    df = pl.concat([with_sym.select(no_sym.columns), no_sym], how="vertical")
    fresh = (mk.filter(~pl.col("stale")).sort("age_s")
             .group_by("asset").agg(pl.col("bid_px").first().alias("__fbid"),
                                    pl.col("ask_px").first().alias("__fask")))
    df = df.join(fresh, on="asset", how="left")
    long = pl.col("qty") >= 0
    close_side = pl.when(long).then(pl.col("bid_px")).otherwise(pl.col("ask_px"))
    fresh_close = pl.when(long).then(pl.col("__fbid")).otherwise(pl.col("__fask"))
    worse = pl.when(long).then(pl.min_horizontal(close_side, fresh_close)).otherwise(
        pl.max_horizontal(close_side, fresh_close))
    base_mark = pl.col("mid") if method == "mid" else close_side
    stale = pl.col("stale").fill_null(False)
    if stale_policy == "conservative":
        mark = pl.when(stale).then(worse).otherwise(base_mark)
    else:
        mark = pl.when(stale).then(None).otherwise(base_mark)
    df = df.with_columns(mark.alias("mark"), stale.alias("stale"),
                         pl.col("mid").is_null().alias("unmarked"))
    cs = pl.col("contract_size")
    inverse = pl.col("kind") == "inverse"
    upnl = pl.when(inverse).then(pl.col("qty") * cs * (1 / pl.col("avg_entry") - 1 / pl.col("mark"))
                                 * pl.col("mark")).otherwise(
        pl.col("qty") * cs * (pl.col("mark") - pl.col("avg_entry")))
    exposure = (pl.when(pl.col("mark").is_null()).then(None)  # unmarked or excluded
                .when(inverse).then(pl.col("qty") * cs).otherwise(pl.col("qty") * cs * pl.col("mark")))
    df = df.with_columns(
        pl.when(pl.col("qty") == 0).then(0.0).otherwise(upnl).alias("unrealized_pnl"),
        exposure.alias("exposure"))
    return (df.with_columns(pl.col("exposure").abs().alias("notional"),
                            (pl.col("realized_pnl") + pl.col("unrealized_pnl").fill_null(0.0)
                             - pl.col("fees") + pl.col("funding")).alias("total_pnl"))
            .select(*POSITION_SCHEMA, "mark", "stale", "unmarked", "age_s", "exposure", "notional",
                    "unrealized_pnl", "total_pnl")
            .sort("venue", "asset"))


def exposure(marked: pl.DataFrame, *, capital: float, by: str = "asset") -> pl.DataFrame:
    """Net and gross exposure (USD) per ``by`` (asset or venue), share of gross and gross/capital.

    >>> m = pl.DataFrame({"asset": ["BTC", "BTC", "ETH"], "exposure": [100.0, -20.0, 80.0]})
    >>> exposure(m, capital=200.0).rows()
    [('BTC', 80.0, 120.0, 0.6, 0.6), ('ETH', 80.0, 80.0, 0.4, 0.4)]
    """
    total = marked["exposure"].abs().sum() or 0.0
    return (marked.filter(pl.col("exposure").is_not_null())
            .group_by(by).agg(pl.col("exposure").sum().alias("net"),
                              pl.col("exposure").abs().sum().alias("gross"))
            .with_columns((pl.col("gross") / total if total else pl.lit(0.0)).alias("share"),
                          (pl.col("gross") / capital).alias("leverage"))
            .sort(by))


# --------------------------------------------------------------------------- VaR
def returns_matrix(quotes: pl.LazyFrame, *, every: str = "1m", assets: Sequence[str] | None = None,
                   quote_rates: Mapping[str, float] | None = None,
                   time_column: str = "ts_exchange") -> pl.LazyFrame:
    """Bar returns per asset from quotes: the last mid of each bar (all venues' USD-like
    books pooled, median across venues), then simple returns. Wide: ``ts`` + one column per asset.
    """
    rates = dict(quote_rates or usd_rates())
    q = (quotes.with_columns(pl.col("symbol").str.split_exact("-", 1)
                             .struct.rename_fields(["asset", "quote"]).alias("__s")).unnest("__s")
         .filter(pl.col("quote").is_in(list(rates))))
    if assets is not None:
        q = q.filter(pl.col("asset").is_in(list(assets)))
    bars = (q.with_columns(((pl.col("bid_px") + pl.col("ask_px")) / 2
                            * pl.col("quote").replace_strict(rates, return_dtype=pl.Float64))
                           .alias("mid"))
            .sort(time_column)
            .group_by_dynamic(time_column, every=every, group_by=["asset", "venue"], closed="left",
                              label="right")
            .agg(pl.col("mid").last())
            .group_by(time_column, "asset").agg(pl.col("mid").median())
            .sort(time_column))
    wide = bars.collect().pivot(on="asset", index=time_column, values="mid").sort(time_column)
    cols = [c for c in wide.columns if c != time_column]
    return (wide.lazy().with_columns(pl.col(cols).forward_fill())
            .with_columns((pl.col(c) / pl.col(c).shift(1) - 1).alias(c) for c in cols)
            .slice(1).fill_null(0.0).rename({time_column: "ts"}))


def ewma_cov(r: np.ndarray, lam: float = 0.94) -> np.ndarray:
    """EWMA covariance (RiskMetrics) of returns ``r`` (T × N, oldest first), zero mean.

    Σ = Σₜ wₜ rₜ rₜᵀ with wₜ = (1−λ)λ^(T−1−t), normalised to sum to 1.

    >>> ewma_cov(np.array([[0.01], [-0.01]]), lam=0.5).round(6).tolist()
    [[0.0001]]
    """
    t = r.shape[0]
    w = (1 - lam) * lam ** np.arange(t - 1, -1, -1, dtype=np.float64)
    w /= w.sum()
    return (r * w[:, None]).T @ r


_Z = {0.95: 1.6448536269514722, 0.99: 2.3263478740408408, 0.975: 1.959963984540054}


def _z(level: float) -> float:
    if level in _Z:
        return _Z[level]
    from statistics import NormalDist

    return NormalDist().inv_cdf(level)


def var_es(exposures: Mapping[str, float], returns: pl.DataFrame, *,
           levels: Sequence[float] = (0.95, 0.99), lam: float = 0.94,
           horizon_bars: int = 1) -> dict[str, float]:
    """Historical and parametric (EWMA) VaR and expected shortfall, as positive USD losses.

    ``exposures``: USD exposure per asset (linear approximation: PnL =
    Σ exposureᵢ·rᵢ). ``returns``: :func:`returns_matrix` output (columns per
    asset). Historical: the empirical ``1−level`` quantile of the scenario
    PnLs (``horizon_bars``-bar overlapping sums) and the mean loss beyond it.
    Parametric: σ = √(wᵀΣw) with Σ the EWMA covariance (λ), VaR = z·σ·√h,
    ES = σ·√h·φ(z)/(1−level). Keys: ``hist_var_95``, ``hist_es_95``,
    ``param_var_95``, ``param_es_95``, … and ``ewma_vol``.
    """
    assets = [a for a in exposures if a in returns.columns]
    out: dict[str, float] = {}
    w = np.array([exposures[a] for a in assets], np.float64)
    if not assets or returns.height < 2:
        for lv in levels:
            p = int(round(lv * 100))
            out |= {f"hist_var_{p}": 0.0, f"hist_es_{p}": 0.0, f"param_var_{p}": 0.0,
                    f"param_es_{p}": 0.0}
        out["ewma_vol"] = 0.0
        return out
    r = returns.select(assets).to_numpy().astype(np.float64)
    pnl = r @ w
    if horizon_bars > 1:
        c = np.concatenate([[0.0], np.cumsum(pnl)])
        pnl = c[horizon_bars:] - c[:-horizon_bars]
    cov = ewma_cov(r, lam)
    sigma = float(math.sqrt(max(float(w @ cov @ w), 0.0)))
    out["ewma_vol"] = sigma
    h = math.sqrt(horizon_bars)
    for lv in levels:
        p = int(round(lv * 100))
        q = float(np.quantile(pnl, 1 - lv))
        tail = pnl[pnl <= q]
        out[f"hist_var_{p}"] = max(-q, 0.0)
        out[f"hist_es_{p}"] = max(-float(tail.mean()), 0.0) if tail.size else max(-q, 0.0)
        z = _z(lv)
        out[f"param_var_{p}"] = z * sigma * h
        out[f"param_es_{p}"] = sigma * h * math.exp(-z * z / 2) / math.sqrt(2 * math.pi) / (1 - lv)
    return out


def drawdown(equity: np.ndarray | Sequence[float]) -> dict[str, float]:
    """Max and current drawdown of an equity curve (absolute and fraction of the peak).

    >>> drawdown([100, 120, 90, 130, 117])
    {'max_drawdown': 30.0, 'max_drawdown_pct': 0.25, 'drawdown': 13.0, 'drawdown_pct': 0.1}
    """
    e = np.asarray(equity, np.float64)
    if e.size == 0:
        return {"max_drawdown": 0.0, "max_drawdown_pct": 0.0, "drawdown": 0.0, "drawdown_pct": 0.0}
    peak = np.maximum.accumulate(e)
    dd = peak - e
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = np.where(peak > 0, dd / peak, 0.0)
    return {"max_drawdown": float(dd.max()), "max_drawdown_pct": float(round(pct.max(), 12)),
            "drawdown": float(dd[-1]), "drawdown_pct": float(round(pct[-1], 12))}


# --------------------------------------------------------------------------- limits
def check_limits(limits: Limits, by_asset: pl.DataFrame, by_venue: pl.DataFrame, *,
                 daily_pnl: float, stale_venues: Mapping[str, float], leverage: float
                 ) -> list[tuple[str, bool, str, float, float]]:
    """Evaluate every limit: ``(key, breached, message, value, limit)`` per check.

    Keys: ``asset_notional:<asset>``, ``venue_notional:<venue>``,
    ``daily_loss``, ``stale_feed:<venue>``, ``leverage``.
    """
    out = []
    for frame, name, lim in ((by_asset, "asset", limits.asset_notional),
                             (by_venue, "venue", limits.venue_notional)):
        for key, gross in zip(frame[name].to_list(), frame["gross"].to_list()):
            cap = lim.get(key, lim.get("*"))
            if cap is None:
                continue
            out.append((f"{name}_notional:{key}", gross > cap,
                        f"{name} {key} gross exposure {gross:,.0f} USD vs limit {cap:,.0f}",
                        float(gross), float(cap)))
    if limits.daily_loss is not None:
        loss = -daily_pnl
        out.append(("daily_loss", loss > limits.daily_loss,
                    f"loss since 00:00 UTC {loss:,.2f} USD vs limit {limits.daily_loss:,.0f}",
                    float(loss), float(limits.daily_loss)))
    if limits.stale_feed_s is not None:
        for venue, age in stale_venues.items():
            out.append((f"stale_feed:{venue}", age > limits.stale_feed_s,
                        f"{venue} marks {age:.1f} s old vs limit {limits.stale_feed_s:g} s",
                        float(age), float(limits.stale_feed_s)))
    if limits.leverage is not None:
        out.append(("leverage", leverage > limits.leverage,
                    f"leverage {leverage:.2f} vs limit {limits.leverage:g}", float(leverage),
                    float(limits.leverage)))
    return out


# --------------------------------------------------------------------------- snapshot
def snapshot(positions: pl.DataFrame, marks_: pl.DataFrame, returns: pl.DataFrame, cfg: RiskConfig,
             *, now: dt.datetime, day_start_pnl: float | None = 0.0,
             equity_curve: Sequence[float] | None = None) -> tuple[pl.DataFrame, list, pl.DataFrame]:
    """One full risk snapshot: the ``risk_snapshots`` rows, the limit checks, the marked positions.

    Rows: scope ``portfolio`` (key ``total``: equity, total/realised/unrealised
    PnL, daily PnL, fees, funding, net/gross exposure, leverage, concentration
    (largest asset share and HHI), VaR/ES, EWMA vol, drawdown, positions,
    stale positions), ``asset`` and ``venue`` (net, gross, share, leverage),
    ``position`` (``venue:asset``: mark, exposure, unrealised/total PnL,
    stale), ``limit`` (``<limit key>``: value, limit, breached).
    ``day_start_pnl``: total PnL at 00:00 UTC (``None``: now is the day's start).
    """
    marked = mark_positions(positions, marks_, method=cfg.mark, stale_policy=cfg.stale_policy,
                            quote_rates=cfg.quote_rates)
    by_asset = exposure(marked, capital=cfg.capital, by="asset")
    by_venue = exposure(marked, capital=cfg.capital, by="venue")
    total_pnl = float(marked["total_pnl"].sum() or 0.0)
    gross = float(marked["notional"].sum() or 0.0)
    net = float(marked["exposure"].sum() or 0.0)
    equity = cfg.capital + total_pnl
    leverage = gross / equity if equity > 0 else float("inf")
    shares = by_asset["share"].to_numpy() if by_asset.height else np.zeros(0)
    exp_by_asset = dict(zip(by_asset["asset"].to_list(), by_asset["net"].to_list()))
    risk = var_es(exp_by_asset, returns, levels=cfg.var_levels, lam=cfg.ewma_lambda,
                  horizon_bars=cfg.horizon_bars)
    curve = list(equity_curve or []) + [equity]
    dd = drawdown(curve)
    stale_venues: dict[str, float] = {}
    if marks_.height:
        ages = marks_.group_by("venue").agg(pl.col("age_s").min())
        stale_venues = dict(zip(ages["venue"].to_list(), ages["age_s"].to_list()))
    daily = 0.0 if day_start_pnl is None else total_pnl - day_start_pnl
    checks = check_limits(cfg.limits, by_asset, by_venue, daily_pnl=daily,
                          stale_venues=stale_venues, leverage=leverage)
    port = {
        "equity": equity, "total_pnl": total_pnl, "daily_pnl": daily,
        "realized_pnl": float(marked["realized_pnl"].sum() or 0.0),
        "unrealized_pnl": float(marked["unrealized_pnl"].sum() or 0.0),
        "fees": float(marked["fees"].sum() or 0.0), "funding": float(marked["funding"].sum() or 0.0),
        "net_exposure": net, "gross_exposure": gross, "leverage": leverage,
        "concentration": float(shares.max()) if shares.size else 0.0,
        "hhi": float((shares ** 2).sum()) if shares.size else 0.0,
        "positions": float(marked.height), "stale_positions": float(marked["stale"].sum()),
        "unmarked_positions": float(marked["unmarked"].sum()),
        **risk, **dd,
    }
    scope, key, metric, value, detail = [], [], [], [], []

    def add(s: str, k: str, m: str, v: float | None, d: str = "") -> None:
        scope.append(s)
        key.append(k)
        metric.append(m)
        value.append(None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v))
        detail.append(d)

    for m, v in port.items():
        add("portfolio", "total", m, v)
    for frame, s in ((by_asset, "asset"), (by_venue, "venue")):
        for r in frame.iter_rows(named=True):
            for m in ("net", "gross", "share", "leverage"):
                add(s, r[s], m, r[m])
    for r in marked.iter_rows(named=True):
        k = f"{r['venue']}:{r['asset']}"
        d = "stale" if r["stale"] else ("unmarked" if r["unmarked"] else "")
        for m in ("mark", "exposure", "unrealized_pnl", "total_pnl"):
            add("position", k, m, r[m], d)
    for k, breached, msg, v, lim in checks:
        add("limit", k, "value", v, msg)
        add("limit", k, "limit", lim, msg)
        add("limit", k, "breached", 1.0 if breached else 0.0, msg)
    n = len(scope)
    rows = pl.DataFrame({"ts": [now] * n, "scope": scope, "key": key, "metric": metric,
                         "value": value, "detail": detail},
                        schema={"ts": TS, "scope": pl.String, "key": pl.String, "metric": pl.String,
                                "value": pl.Float64, "detail": pl.String})
    return rows, checks, marked
