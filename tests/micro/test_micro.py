"""lab.micro metrics against plain Python/numpy references on hand-made data."""

from __future__ import annotations

import bisect
import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab import micro

T0 = dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone.utc)  # as in conftest.py


def _ms(t: dt.datetime) -> float:
    return (t - T0).total_seconds() * 1000


def _rows(df: pl.DataFrame, venue: str) -> list[dict]:
    return sorted(df.filter(pl.col("venue") == venue).iter_rows(named=True), key=lambda r: r["ts_exchange"])


def _prevailing(qrows: list[dict], t: dt.datetime, strict: bool = False) -> dict | None:
    times = [r["ts_exchange"] for r in qrows]
    i = (bisect.bisect_left(times, t) if strict else bisect.bisect_right(times, t)) - 1
    return qrows[i] if i >= 0 else None


# ---------------------------------------------------------------- quotes
@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 10_000), st.integers(1, 50), st.floats(0.001, 100.0),
                          st.floats(0.001, 100.0)), min_size=1, max_size=20))
def test_bid_le_weighted_mid_and_microprice_le_ask(rows):
    bid = [r[0] * 0.5 for r in rows]
    ask = [b + r[1] * 0.5 for b, r in zip(bid, rows)]
    q = pl.LazyFrame({"venue": "x", "symbol": "s", "bid_px": bid, "ask_px": ask,
                      "bid_qty": [r[2] for r in rows], "ask_qty": [r[3] for r in rows]})
    g = pl.LazyFrame({"venue": "x", "symbol": "s", "imb_bucket": list(range(4)) * 2,
                      "spread_ticks": [1] * 4 + [2] * 4, "g": [-3.0, -0.1, 0.1, 3.0] * 2})
    df = micro.with_microprice(micro.with_quote_metrics(q), g, tick=0.5, n_imb=4).collect()
    for c in ("weighted_mid", "microprice"):
        assert (df["bid_px"] <= df[c]).all() and (df[c] <= df["ask_px"]).all(), c


def test_quote_metrics_match_hand_values():
    q = pl.LazyFrame({"bid_px": [100.0], "ask_px": [100.5], "bid_qty": [3.0], "ask_qty": [1.0]})
    r = micro.with_quote_metrics(q).collect().row(0, named=True)
    assert r["mid"] == 100.25 and r["quoted_spread"] == 0.5
    assert r["quoted_spread_bps"] == pytest.approx(0.5 / 100.25 * 1e4)
    assert r["weighted_mid"] == pytest.approx(0.75 * 100.5 + 0.25 * 100.0)
    assert r["imbalance"] == pytest.approx(0.5)


def _stoikov_reference(qrows: list[dict], tick: float, n_imb: int, n_spread: int) -> np.ndarray:
    """Stoikov (2018) §3 with dict counting (symmetrised), then the paper's matrix formulas."""
    ns = n_imb * n_spread
    counts: dict = {}
    for a, b in zip(qrows, qrows[1:]):
        for mirror in (False, True):
            def state(r):
                i = r["bid_qty"] / (r["bid_qty"] + r["ask_qty"])
                i = 1 - i if mirror else i
                return min(int(math.floor(i * n_imb)), n_imb - 1), round((r["ask_px"] - r["bid_px"]) / tick)
            (ia, sa), (ib, sb) = state(a), state(b)
            if not (1 <= sa <= n_spread and 1 <= sb <= n_spread):
                continue
            dm = round(((b["ask_px"] + b["bid_px"]) / 2 - (a["ask_px"] + a["bid_px"]) / 2) / tick * 2) / 2
            dm = -dm if mirror else dm
            key = ((sa - 1) * n_imb + ia, (sb - 1) * n_imb + ib, dm)
            counts[key] = counts.get(key, 0) + 1
    ks = sorted({k[2] for k in counts if k[2] != 0})
    Q, T, R = np.zeros((ns, ns)), np.zeros((ns, ns)), np.zeros((ns, len(ks)))
    tot = np.zeros(ns)
    for (x, y, dm), n in counts.items():
        tot[x] += n
        if dm == 0:
            Q[x, y] += n
        else:
            T[x, y] += n
            R[x, ks.index(dm)] += n
    tot[tot == 0] = 1
    Q, T, R = Q / tot[:, None], T / tot[:, None], R / tot[:, None]
    inv = np.linalg.pinv(np.eye(ns) - Q)
    g1 = inv @ R @ (np.array(ks) * tick)
    B = inv @ T
    g, term = g1.copy(), g1.copy()
    for _ in range(5):
        term = B @ term
        g = g + term
    return g


def test_stoikov_microprice_matches_a_counting_reference(quotes):
    tick = 0.5  # spreads of the fixture are 1, 2 or 3 ticks; the mid moves by half ticks
    rng = np.random.default_rng(11)
    # continuous sizes: no imbalance falls exactly on a bucket edge, so g(I) = -g(1-I) holds exactly
    q = quotes.with_columns(pl.Series("bid_qty", rng.random(quotes.height) + 0.01),
                            pl.Series("ask_qty", rng.random(quotes.height) + 0.01))
    got = micro.stoikov_microprice(q.lazy(), tick=tick, n_imb=4, n_spread=3).collect()
    for v in ("binance", "kraken"):
        ref = _stoikov_reference(_rows(q, v), tick, 4, 3)
        g = got.filter(pl.col("venue") == v).sort("spread_ticks", "imb_bucket")["g"].to_numpy()
        np.testing.assert_allclose(g, ref, rtol=1e-9, atol=1e-12)
        assert np.abs(g).max() > 0
        # symmetrised data: g(I) = -g(1-I)
        np.testing.assert_allclose(g.reshape(3, 4), -g.reshape(3, 4)[:, ::-1], atol=1e-9)


# ---------------------------------------------------------------- OFI
def _ofi_ref(rows: list[dict], sfx: str = "") -> list[float | None]:
    out = [None]
    for p, c in zip(rows, rows[1:]):
        bq, aq = c[f"bid_qty{sfx}"] or 0.0, c[f"ask_qty{sfx}"] or 0.0
        bq0, aq0 = p[f"bid_qty{sfx}"] or 0.0, p[f"ask_qty{sfx}"] or 0.0
        bp, ap, bp0, ap0 = c[f"bid_px{sfx}"], c[f"ask_px{sfx}"], p[f"bid_px{sfx}"], p[f"ask_px{sfx}"]
        e = 0.0
        if bp is not None and bp0 is not None:
            e += (bq if bp >= bp0 else 0.0) - (bq0 if bp <= bp0 else 0.0)
        if ap is not None and ap0 is not None:
            e += -(aq if ap <= ap0 else 0.0) + (aq0 if ap >= ap0 else 0.0)
        out.append(e)
    return out


def test_ofi_events_and_windows_match_the_cks_formula(quotes):
    got = micro.with_ofi(quotes.lazy()).collect()
    for v in ("binance", "kraken"):
        rows = _rows(quotes, v)
        ref = _ofi_ref(rows)
        g = got.filter(pl.col("venue") == v)["ofi"].to_list()
        assert g[0] is None
        np.testing.assert_allclose(np.array(g[1:], float), np.array(ref[1:], float), atol=1e-12)
        # 5-second windows: sum of the events whose time falls in the window
        win = micro.ofi(quotes.lazy(), "5s").filter(pl.col("venue") == v).collect()
        sums: dict = {}
        for r, e in zip(rows, ref):
            k = int(_ms(r["ts_exchange"]) // 5000)
            sums[k] = sums.get(k, 0.0) + (e or 0.0)
        gw = {int(_ms(b) // 5000): x for b, x in zip(win["bucket"], win["ofi"])}
        assert gw.keys() == sums.keys()
        for k in sums:
            assert gw[k] == pytest.approx(sums[k], abs=1e-9)


def test_multilevel_ofi_level_zero_equals_quote_ofi_and_deeper_levels_use_their_own_book():
    t = [T0 + dt.timedelta(milliseconds=m) for m in (0, 100, 200, 1100)]
    b = pl.DataFrame({"ts_exchange": t, "venue": "x", "symbol": "s",
                      "bid_px_0": [99.0, 99.0, 99.5, 99.5], "bid_qty_0": [1.0, 2.0, 1.0, 1.0],
                      "ask_px_0": [101.0, 100.5, 100.5, 101.0], "ask_qty_0": [1.0, 1.0, 3.0, 2.0],
                      "bid_px_1": [98.0, 98.0, 99.0, 99.0], "bid_qty_1": [5.0, 4.0, 2.0, None],
                      "ask_px_1": [102.0, 101.0, 101.0, 102.0], "ask_qty_1": [5.0, 1.0, 1.0, 1.0]})
    got = micro.mlofi(b.lazy(), "1s", levels=2).collect()
    rows = b.to_dicts()
    for m in (0, 1):
        ref = _ofi_ref(rows, f"_{m}")
        assert got[f"ofi_{m}"].to_list() == pytest.approx([sum(ref[1:3]), ref[3]])


# ---------------------------------------------------------------- trade signs
def test_tick_rule_and_lee_ready_follow_the_paper_rules():
    t = [T0 + dt.timedelta(seconds=s) for s in range(1, 7)]
    q = pl.LazyFrame({"ts_exchange": [T0], "venue": "x", "symbol": "s", "bid_px": [99.0], "ask_px": [101.0],
                      "bid_qty": [1.0], "ask_qty": [1.0]})
    # prices: above mid, at mid after an uptick, at mid after zero tick, below, at mid after downtick, at mid
    tr = pl.LazyFrame({"ts_exchange": t, "venue": "x", "symbol": "s",
                       "price": [100.0, 100.5, 100.0, 100.0, 99.5, 100.0], "qty": 1.0, "side": None},
                      schema_overrides={"side": pl.String})
    got_tick = micro.with_trade_sign(tr, method="tick").collect()["sign"].to_list()
    assert got_tick == [None, 1, -1, -1, -1, 1]
    got_lr = micro.with_trade_sign(tr, q, method="lee_ready").collect()["sign"].to_list()
    # 100.0 is the mid (99+101)/2: those take the tick rule
    assert got_lr == [None, 1, -1, -1, -1, 1]
    tr2 = tr.with_columns(pl.Series("price", [100.5, 100.0, 99.0, 100.0, 101.0, 100.0]))
    assert micro.with_trade_sign(tr2, q, method="lee_ready").collect()["sign"].to_list() == [1, -1, -1, 1, 1, -1]


def test_auto_sign_uses_the_flag_and_falls_back_to_lee_ready(trades, quotes):
    tr = trades.with_columns(pl.when(pl.int_range(pl.len()) % 3 == 0).then(None).otherwise(pl.col("side"))
                             .alias("side"))
    got = micro.with_trade_sign(tr.lazy(), quotes.lazy()).collect()
    for v in ("binance", "kraken"):
        qrows = _rows(quotes, v)
        prev_px, last_tick = None, None
        for r, s in zip(_rows(tr, v), got.filter(pl.col("venue") == v)["sign"].to_list()):
            if prev_px is not None and r["price"] != prev_px:
                last_tick = 1 if r["price"] > prev_px else -1
            prev_px = r["price"]
            if r["side"] is not None:
                assert s == (1 if r["side"] == "buy" else -1)
                continue
            q = _prevailing(qrows, r["ts_exchange"])
            m = None if q is None else (q["bid_px"] + q["ask_px"]) / 2
            want = last_tick if m is None or r["price"] == m else (1 if r["price"] > m else -1)
            assert s == want


# ---------------------------------------------------------------- spreads
def test_effective_realized_spread_and_impact_match_a_loop(trades, quotes):
    got = micro.with_spreads(trades.lazy(), quotes.lazy(), horizon="2s").collect()
    for v in ("binance", "kraken"):
        qrows = _rows(quotes, v)
        g = got.filter(pl.col("venue") == v)
        for r, e, rs, pi in zip(_rows(trades, v), g["effective_spread_bps"], g["realized_spread_bps"],
                                g["price_impact_bps"]):
            q = _prevailing(qrows, r["ts_exchange"])
            if q is None:
                assert e is None
                continue
            m = (q["bid_px"] + q["ask_px"]) / 2
            ql = _prevailing(qrows, r["ts_exchange"] + dt.timedelta(seconds=2))
            ml = (ql["bid_px"] + ql["ask_px"]) / 2
            d = 1 if r["side"] == "buy" else -1
            assert e == pytest.approx(2 * d * (r["price"] - m) / m * 1e4)
            assert rs == pytest.approx(2 * d * (r["price"] - ml) / m * 1e4)
            assert pi == pytest.approx(2 * d * (ml - m) / m * 1e4)
            assert e == pytest.approx(rs + pi)


# ---------------------------------------------------------------- bar-based estimators
def _minute_bars(rows: list[dict], every_s: int = 10) -> list[dict]:
    bars: dict = {}
    for r in rows:
        k = int(r["ts_exchange"].timestamp() // every_s)
        b = bars.setdefault(k, {"close": None, "buy": 0.0, "sell": 0.0, "vol": 0.0, "notional": 0.0})
        b["close"] = r["price"]
        b["buy" if r["side"] == "buy" else "sell"] += r["qty"]
        b["vol"] += r["qty"]
        b["notional"] += r["price"] * r["qty"]
    return [bars[k] for k in sorted(bars)]


def test_kyle_lambda_amihud_and_roll_match_numpy(trades):
    kl = micro.kyle_lambda(trades.lazy(), "10s").collect()
    am = micro.amihud(trades.lazy(), "10s").collect()
    ro = micro.roll_spread(trades.lazy()).collect()
    for v in ("binance", "kraken"):
        rows = _rows(trades, v)
        bars = _minute_bars(rows)
        dp = np.diff([b["close"] for b in bars])
        q = np.array([b["buy"] - b["sell"] for b in bars])[1:]
        slope = np.polyfit(q, dp, 1)[0]
        assert kl.filter(pl.col("venue") == v)["kyle_lambda"].item() == pytest.approx(slope, rel=1e-9)
        r = np.diff(np.log([b["close"] for b in bars]))
        ami = np.mean(np.abs(r) / np.array([b["notional"] for b in bars])[1:]) * 1e6
        assert am.filter(pl.col("venue") == v)["amihud"].item() == pytest.approx(ami, rel=1e-9)
        d = np.diff([r["price"] for r in rows])
        c = np.cov(d[1:], d[:-1])[0, 1]
        want = 2 * math.sqrt(-c) if c < 0 else None
        got = ro.filter(pl.col("venue") == v)["roll_spread"].item()
        assert (got is None and want is None) or got == pytest.approx(want, rel=1e-9)


def test_roll_spread_recovers_a_bid_ask_bounce():
    # Roll's model: efficient price constant, trades bounce between bid and ask at random: cov = -s^2/4
    rng = np.random.default_rng(0)
    s = 0.5
    px = 100 + np.where(rng.random(20_000) < 0.5, s / 2, -s / 2)
    tr = pl.LazyFrame({"ts_exchange": np.arange(px.size), "venue": "x", "symbol": "s", "price": px,
                       "qty": 1.0, "side": "buy"})
    assert micro.roll_spread(tr).collect()["roll_spread"].item() == pytest.approx(s, rel=0.03)


def _vpin_reference(rows: list[dict], V: float, every_s: int, window: int) -> list[float | None]:
    bars = _minute_bars(rows, every_s)
    dp = np.diff([b["close"] for b in bars])
    sd = float(np.std(dp, ddof=1))
    buckets, cur_buy, cur_vol = [], 0.0, 0.0
    for b, d in zip(bars[1:], dp):
        frac = 0.5 * (1 + math.erf(d / sd / math.sqrt(2)))
        left = b["vol"]
        while left > 1e-12:
            take = min(left, V - cur_vol)
            cur_buy += take * frac
            cur_vol += take
            left -= take
            if cur_vol >= V - 1e-9:
                buckets.append(cur_buy)
                cur_buy, cur_vol = 0.0, 0.0
    oi = [abs(2 * x - V) / V for x in buckets]
    return [None if i + 1 < window else float(np.mean(oi[i + 1 - window:i + 1])) for i in range(len(oi))]


def test_vpin_matches_a_bucket_filling_loop(trades):
    got = micro.vpin(trades.lazy(), 0.7, every="5s", window=5).collect()
    for v in ("binance", "kraken"):
        ref = _vpin_reference(_rows(trades, v), 0.7, 5, 5)
        g = got.filter(pl.col("venue") == v)["vpin"].to_list()
        assert len(g) == len(ref)
        for a, b in zip(g, ref):
            assert (a is None and b is None) or a == pytest.approx(b, rel=1e-9, abs=1e-12)


def test_vpin_per_group_bucket_count_gives_that_many_buckets(trades):
    got = micro.vpin(trades.lazy(), n_buckets=20, every="5s", window=3).collect()
    counts = got.group_by("venue").len()["len"].to_list()
    assert all(c in (19, 20) for c in counts)  # the first bar has no price change and is dropped


# ---------------------------------------------------------------- trade-time statistics
def test_sign_autocorrelation_matches_numpy(trades):
    got = micro.sign_autocorrelation(trades.lazy(), 5).collect()
    for v in ("binance", "kraken"):
        s = np.array([1.0 if r["side"] == "buy" else -1.0 for r in _rows(trades, v)])
        d = s - s.mean()
        ref = [np.sum(d[:-l] * d[l:]) / np.sum(d * d) for l in range(1, 6)]
        np.testing.assert_allclose(got.filter(pl.col("venue") == v)["acf"].to_numpy(), ref, rtol=1e-9)


def test_response_function_matches_a_loop(trades, quotes):
    got = micro.response_function(trades.lazy(), quotes.lazy(), 4).collect()
    for v in ("binance", "kraken"):
        qrows = _rows(quotes, v)
        eps, mids = [], []
        for r in _rows(trades, v):
            q = _prevailing(qrows, r["ts_exchange"], strict=True)
            if q is None:
                continue
            eps.append(1 if r["side"] == "buy" else -1)
            mids.append((q["bid_px"] + q["ask_px"]) / 2)
        eps, mids = np.array(eps), np.array(mids)
        ref = [np.mean(eps[:-l] * (mids[l:] - mids[:-l])) for l in range(1, 5)]
        np.testing.assert_allclose(got.filter(pl.col("venue") == v)["response"].to_numpy(), ref, rtol=1e-9)


def test_helpers_lazy_schema_equals_collected_schema(trades, quotes):
    tl, ql = trades.lazy(), quotes.lazy()
    for lf in (micro.with_quote_metrics(ql), micro.with_ofi(ql), micro.ofi(ql, "1s"),
               micro.with_trade_sign(tl, ql), micro.with_spreads(tl, ql), micro.kyle_lambda(tl, "10s"),
               micro.amihud(tl, "10s"), micro.roll_spread(tl), micro.vpin(tl, 0.5, every="5s"),
               micro.sign_autocorrelation(tl, 3), micro.response_function(tl, ql, 3),
               micro.stoikov_microprice(ql, tick=0.25, n_imb=4, n_spread=2),
               micro.summary(tl, ql, bar="10s", vpin_buckets=10, vpin_window=3)):
        assert lf.collect_schema() == lf.collect().schema
