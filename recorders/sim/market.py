"""The simulated market: latent prices, venue views and L2 books.

One latent efficient log-price per asset (correlated Gaussian returns with
stochastic volatility and jumps) on a 10 ms grid. Each venue sees it
``lag_ms`` late plus its own mean-reverting pricing noise, so the leader
moves first and short cross-venue arbitrage windows open and close. ETH-BTC
follows ETH-USD / BTC-USD with occasional small triangular violations.

Each listing has an L2 book (up to ``NMAX`` price levels a side, held as
sorted integer ticks and integer lots) driven by a numba event loop:
book events re-centre the quotes on the venue's fair price (stale levels are
cancelled or taken by aggressive orders), queues build and deplete, levels
get cancelled and new ones appear in gaps; Hawkes-clustered market orders
sweep the top of the book with a buy/sell imbalance tied to where the fair
price sits against the book mid.

The model advances in fixed chunks (:meth:`Market.step`); for a given seed,
config and chunk length the output is identical run after run.

>>> import datetime as dt
>>> from recorders.sim.config import SimConfig
>>> m = Market(SimConfig(seed=1, venues=("binance",), assets=("BTC",)), start_ns=0, chunk_ns=10**9)
>>> out = m.step()
>>> out[0].listing.venue_symbol, bool((out[0].quote_bp < out[0].quote_ap).all())
('BTCUSDT', True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from recorders.sim.config import ASSETS, CORR, Listing, SimConfig, listings

__all__ = ["Market", "ChunkOut", "NMAX", "GRID_NS"]

NMAX = 64  # price levels kept per side
NMIN = 40  # refill below this
GRID_NS = 10_000_000  # latent price grid: 10 ms
HIST_NS = 2_000_000_000  # latent history kept for lagged lookups
SNAP_LEVELS = 25


@numba.njit(cache=True)
def _ou(x0: float, z: np.ndarray, a: float, b: float) -> np.ndarray:
    out = np.empty(z.shape[0])
    x = x0
    for k in range(z.shape[0]):
        x = a * x + b * z[k]
        out[k] = x
    return out


@numba.njit(cache=True)
def _latent(lp0: float, lv0: float, z: np.ndarray, zv: np.ndarray, jump: np.ndarray,
            sigma_step: float, theta: float, eta: float) -> tuple[np.ndarray, np.ndarray]:
    n = z.shape[0]
    lp = np.empty(n)
    lv = np.empty(n)
    p, v = lp0, lv0
    for k in range(n):
        v = v - theta * v + eta * zv[k]
        p = p + sigma_step * math.exp(v) * z[k] + jump[k]
        lp[k] = p
        lv[k] = v
    return lp, lv


@numba.njit(cache=True)
def _hawkes(seed: int, t0: float, t1: float, mu: float, alpha: float, beta: float,
            excess0: float) -> tuple[np.ndarray, float]:
    """Ogata thinning on [t0, t1) (seconds); returns times and the end excess."""
    np.random.seed(seed)
    cap = max(16, int((t1 - t0) * mu * 20) + 64)
    out = np.empty(cap)
    n = 0
    t = t0
    ex = excess0 * 1.0
    while n < cap:
        lam = mu + ex
        w = np.random.exponential(1.0 / lam)
        if t + w >= t1:
            ex = ex * math.exp(-beta * (t1 - t))
            break
        ex = ex * math.exp(-beta * w)
        t = t + w
        if np.random.random() * lam <= mu + ex:
            out[n] = t
            n += 1
            ex = ex + alpha
    return out[:n], ex


@numba.njit(cache=True)
def _insert(px: np.ndarray, q: np.ndarray, n: int, j: int, p: int, qq: int) -> int:
    for k in range(n, j, -1):
        px[k] = px[k - 1]
        q[k] = q[k - 1]
    px[j] = p
    q[j] = qq
    return n + 1


@numba.njit(cache=True)
def _remove(px: np.ndarray, q: np.ndarray, n: int, j: int) -> int:
    for k in range(j, n - 1):
        px[k] = px[k + 1]
        q[k] = q[k + 1]
    return n - 1


@numba.njit(cache=True)
def _size(med: float) -> int:
    s = int(med * math.exp(0.8 * np.random.standard_normal()))
    return s if s > 0 else 1


@numba.njit(cache=True)
def _run_book(seed: int, ev_t: np.ndarray, ev_kind: np.ndarray, ev_fair: np.ndarray,
              ev_hs: np.ndarray, gap: float, lvl_med: float, trd_med: float,
              p_take: float, bid_px: np.ndarray, bid_q: np.ndarray, ask_px: np.ndarray,
              ask_q: np.ndarray, st: np.ndarray, snap_dt: int,
              u_t, u_side, u_px, u_q, u_seq,
              t_t, t_px, t_q, t_side, t_id,
              q_t, q_bp, q_bq, q_ap, q_aq, q_seq,
              s_t, s_lvl, s_side, s_px, s_q):
    """Run the book through one chunk of events.

    ``st`` = [n_bids, n_asks, seq, trade_id, next_snapshot_ns]; ev_kind 0 is a
    book event, 1 a market order. Sides: 0 bid / 0 buy, 1 ask / 1 sell.
    Returns the number of update, trade, quote and snapshot rows written.
    """
    np.random.seed(seed)
    nb = st[0]
    na = st[1]
    seq = st[2]
    tid = st[3]
    nsnap = st[4]
    nu = 0
    nt = 0
    nq = 0
    ns = 0
    for i in range(ev_t.shape[0]):
        t = ev_t[i]
        if snap_dt > 0:
            while t >= nsnap:
                for lv in range(min(nb, 25)):
                    s_t[ns] = nsnap; s_lvl[ns] = lv; s_side[ns] = 0
                    s_px[ns] = bid_px[lv]; s_q[ns] = bid_q[lv]; ns += 1
                for lv in range(min(na, 25)):
                    s_t[ns] = nsnap; s_lvl[ns] = lv; s_side[ns] = 1
                    s_px[ns] = ask_px[lv]; s_q[ns] = ask_q[lv]; ns += 1
                nsnap += snap_dt
        f = ev_fair[i]
        hs = ev_hs[i]
        u0 = nu
        obp = bid_px[0] if nb > 0 else -1
        obq = bid_q[0] if nb > 0 else -1
        oap = ask_px[0] if na > 0 else -1
        oaq = ask_q[0] if na > 0 else -1
        if ev_kind[i] == 0:
            # 1. stale levels on the wrong side of fair: taken or cancelled
            while na > 0 and ask_px[0] <= f:
                if np.random.random() < p_take:
                    t_t[nt] = t; t_px[nt] = ask_px[0]; t_q[nt] = ask_q[0]
                    t_side[nt] = 0; tid += 1; t_id[nt] = tid; nt += 1
                u_t[nu] = t; u_side[nu] = 1; u_px[nu] = ask_px[0]; u_q[nu] = 0; nu += 1
                na = _remove(ask_px, ask_q, na, 0)
            while nb > 0 and bid_px[0] >= f:
                if np.random.random() < p_take:
                    t_t[nt] = t; t_px[nt] = bid_px[0]; t_q[nt] = bid_q[0]
                    t_side[nt] = 1; tid += 1; t_id[nt] = tid; nt += 1
                u_t[nu] = t; u_side[nu] = 0; u_px[nu] = bid_px[0]; u_q[nu] = 0; nu += 1
                nb = _remove(bid_px, bid_q, nb, 0)
            # 2. quote improvement towards fair +- half spread
            pa = int(math.ceil(f + hs))
            if pa <= f:
                pa = int(math.floor(f)) + 1
            pb = int(math.floor(f - hs))
            if pb >= f:
                pb = int(math.ceil(f)) - 1
            if na == 0 or (pa < ask_px[0] and np.random.random() < 0.7):
                sz = _size(lvl_med * 0.5)
                na = _insert(ask_px, ask_q, na, 0, pa, sz)
                u_t[nu] = t; u_side[nu] = 1; u_px[nu] = pa; u_q[nu] = sz; nu += 1
            if nb == 0 or (pb > bid_px[0] and np.random.random() < 0.7):
                sz = _size(lvl_med * 0.5)
                nb = _insert(bid_px, bid_q, nb, 0, pb, sz)
                u_t[nu] = t; u_side[nu] = 0; u_px[nu] = pb; u_q[nu] = sz; nu += 1
            # 3. one random queue change: add, cancel or a new level in a gap
            side = 0 if np.random.random() < 0.5 else 1
            n = nb if side == 0 else na
            j = min(int(np.random.exponential(4.0)), n - 1)
            r = np.random.random()
            if side == 0:
                px = bid_px
                qa = bid_q
            else:
                px = ask_px
                qa = ask_q
            if r < 0.45:
                qa[j] += _size(lvl_med * 0.3)
                u_t[nu] = t; u_side[nu] = side; u_px[nu] = px[j]; u_q[nu] = qa[j]; nu += 1
            elif r < 0.85:
                if np.random.random() < 0.3 and n > 1:
                    u_t[nu] = t; u_side[nu] = side; u_px[nu] = px[j]; u_q[nu] = 0; nu += 1
                    n = _remove(px, qa, n, j)
                else:
                    qa[j] = max(1, int(qa[j] * (0.2 + 0.6 * np.random.random())))
                    u_t[nu] = t; u_side[nu] = side; u_px[nu] = px[j]; u_q[nu] = qa[j]; nu += 1
            elif j + 1 < n:
                lo = px[j]
                hi = px[j + 1]
                d = abs(hi - lo)
                if d > 1:
                    off = 1 + int(np.random.random() * (d - 1))
                    p = lo + off if hi > lo else lo - off
                    sz = _size(lvl_med)
                    n = _insert(px, qa, n, j + 1, p, sz)
                    u_t[nu] = t; u_side[nu] = side; u_px[nu] = p; u_q[nu] = sz; nu += 1
            if side == 0:
                nb = n
            else:
                na = n
            # 4. keep depth between NMIN and NMAX
            for sd in range(2):
                if sd == 0:
                    px = bid_px
                    qa = bid_q
                    n = nb
                    sign = -1
                else:
                    px = ask_px
                    qa = ask_q
                    n = na
                    sign = 1
                while n < 40:
                    g = max(1, int(np.random.exponential(gap)) + 1)
                    p = px[n - 1] + sign * g
                    if p <= 0:
                        break
                    sz = _size(lvl_med * (1.0 + 0.08 * n))
                    px[n] = p
                    qa[n] = sz
                    n += 1
                    u_t[nu] = t; u_side[nu] = sd; u_px[nu] = p; u_q[nu] = sz; nu += 1
                while n > 64:
                    n -= 1
                    u_t[nu] = t; u_side[nu] = sd; u_px[nu] = px[n]; u_q[nu] = 0; nu += 1
                if sd == 0:
                    nb = n
                else:
                    na = n
        else:
            # market order: side from where fair sits against the book mid
            mid = 0.5 * (bid_px[0] + ask_px[0])
            x = (f - mid) / max(hs, 0.5)
            pbuy = 1.0 / (1.0 + math.exp(-2.0 * x))
            side = 0 if np.random.random() < pbuy else 1
            want = _size(trd_med)
            if side == 0:
                px = ask_px
                qa = ask_q
                n = na
                bs = 1
            else:
                px = bid_px
                qa = bid_q
                n = nb
                bs = 0
            while want > 0 and n > 0:
                take = min(want, qa[0])
                if n == 1 and take == qa[0]:
                    take = qa[0] - 1
                    if take <= 0:
                        break
                t_t[nt] = t; t_px[nt] = px[0]; t_q[nt] = take; t_side[nt] = side
                tid += 1; t_id[nt] = tid; nt += 1
                qa[0] -= take
                want -= take
                u_t[nu] = t; u_side[nu] = bs; u_px[nu] = px[0]; u_q[nu] = qa[0]; nu += 1
                if qa[0] == 0:
                    n = _remove(px, qa, n, 0)
            if side == 0:
                na = n
            else:
                nb = n
        if nu > u0:
            seq += 1
            for k in range(u0, nu):
                u_seq[k] = seq
            if bid_px[0] != obp or bid_q[0] != obq or ask_px[0] != oap or ask_q[0] != oaq:
                q_t[nq] = t; q_bp[nq] = bid_px[0]; q_bq[nq] = bid_q[0]
                q_ap[nq] = ask_px[0]; q_aq[nq] = ask_q[0]; q_seq[nq] = seq; nq += 1
    st[0] = nb
    st[1] = na
    st[2] = seq
    st[3] = tid
    st[4] = nsnap
    return nu, nt, nq, ns


@dataclass
class ChunkOut:
    """One listing's output for one chunk (prices in ticks, sizes in lots)."""

    listing: Listing
    upd_t: np.ndarray
    upd_side: np.ndarray  # 0 bid, 1 ask
    upd_px: np.ndarray
    upd_q: np.ndarray
    upd_seq: np.ndarray
    trade_t: np.ndarray
    trade_px: np.ndarray
    trade_q: np.ndarray
    trade_side: np.ndarray  # aggressor: 0 buy, 1 sell
    trade_id: np.ndarray
    quote_t: np.ndarray
    quote_bp: np.ndarray
    quote_bq: np.ndarray
    quote_ap: np.ndarray
    quote_aq: np.ndarray
    quote_seq: np.ndarray
    snap_t: np.ndarray
    snap_lvl: np.ndarray
    snap_side: np.ndarray
    snap_px: np.ndarray
    snap_q: np.ndarray


class _Book:
    def __init__(self, listing: Listing, idx: int, seed: int, price: float, cfg: SimConfig) -> None:
        self.listing = listing
        self.idx = idx
        self.scale = 10.0 ** listing.price_dec
        self.lot = 10.0 ** listing.qty_dec
        size_med = ASSETS[listing.base][1]
        trd_med = ASSETS[listing.base][2]
        self.lvl_med = size_med * self.lot
        self.trd_med = trd_med * self.lot
        ticks = price * self.scale
        self.gap = max(1.0, listing.gap_bps * 1e-4 * ticks)
        self.hs0 = max(0.5, listing.spread_bps * 0.5e-4 * ticks)
        rng = np.random.default_rng([seed, 1000 + idx])
        self.bid_px = np.zeros(NMAX + 8, np.int64)
        self.bid_q = np.zeros(NMAX + 8, np.int64)
        self.ask_px = np.zeros(NMAX + 8, np.int64)
        self.ask_q = np.zeros(NMAX + 8, np.int64)
        pb = int(math.floor(ticks - self.hs0))
        pa = int(math.ceil(ticks + self.hs0))
        if pa <= pb:
            pa = pb + 1
        for k in range(NMIN + 8):
            self.bid_px[k] = pb
            self.ask_px[k] = pa
            self.bid_q[k] = max(1, int(self.lvl_med * (1 + 0.08 * k) * math.exp(0.8 * rng.standard_normal())))
            self.ask_q[k] = max(1, int(self.lvl_med * (1 + 0.08 * k) * math.exp(0.8 * rng.standard_normal())))
            pb -= 1 + int(rng.exponential(self.gap))
            pa += 1 + int(rng.exponential(self.gap))
        n0 = NMIN + 8
        seq0 = int(rng.integers(10**8, 10**9))
        tid0 = int(rng.integers(10**8, 10**9))  # drawn even when overridden: same market either way
        first = cfg.first_trade_ids.get(f"{listing.venue}:{listing.symbol}")
        if first is not None:
            tid0 = int(first) - 1  # the kernel numbers a trade after incrementing
        self.st = np.array([n0, n0, seq0, tid0, 0], np.int64)
        self.hawkes_excess = 0.0
        self.noise = 0.0

    def levels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        nb, na = int(self.st[0]), int(self.st[1])
        return (self.bid_px[:nb].copy(), self.bid_q[:nb].copy(),
                self.ask_px[:na].copy(), self.ask_q[:na].copy())

    @property
    def seq(self) -> int:
        return int(self.st[2])


class Market:
    """The whole simulated market, advanced one chunk at a time.

    ``step()`` returns one :class:`ChunkOut` per listing for
    ``[t, t + chunk_ns)`` and moves the clock. ``book(i)`` gives listing
    ``i``'s current levels (after the last chunk). ``snap_dt_ns`` > 0 makes
    the book kernel emit top-25 snapshots on that interval.
    """

    def __init__(self, cfg: SimConfig, *, start_ns: int, chunk_ns: int,
                 snap_dt_ns: int = 0) -> None:
        if chunk_ns % GRID_NS:
            raise ValueError(f"chunk_ns must be a multiple of {GRID_NS} ns, got {chunk_ns}")
        self.cfg = cfg
        self.t = int(start_ns)
        self.chunk_ns = int(chunk_ns)
        self.snap_dt_ns = int(snap_dt_ns)
        self.k = 0
        self.assets = list(cfg.assets)
        na = len(self.assets)
        corr = np.eye(na)
        for i, a in enumerate(self.assets):
            for j, b in enumerate(self.assets):
                if i != j:
                    corr[i, j] = CORR.get((a, b), CORR.get((b, a), 0.6))
        self.chol = np.linalg.cholesky(corr)
        self.lp = np.array([math.log(ASSETS[a][0]) for a in self.assets])
        self.lv = np.zeros(na)
        self.hist_n = HIST_NS // GRID_NS
        # latent log prices on the grid, history first: shape (assets, hist + chunk)
        self.grid = np.repeat(self.lp[:, None], self.hist_n, axis=1)
        self.grid_vol = np.zeros((na, self.hist_n))
        self.tri = 0.0
        self.tri_grid = np.zeros(self.hist_n)
        self.listings = listings(cfg)
        self.books = [
            _Book(l, i, cfg.seed, self._price0(l), cfg) for i, l in enumerate(self.listings)
        ]
        for b in self.books:
            b.st[4] = self.t + (self.snap_dt_ns if self.snap_dt_ns else 0)
        yr = 365.25 * 86400
        self.sigma_step = cfg.annual_vol * math.sqrt(GRID_NS * 1e-9 / yr)

    def _price0(self, l: Listing) -> float:
        p = ASSETS[l.base][0]
        return p / ASSETS[l.quote][0] if l.quote in ASSETS else p

    def book(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.books[i].levels()

    def _advance_latent(self) -> None:
        cfg = self.cfg
        n = self.chunk_ns // GRID_NS
        rng = np.random.default_rng([cfg.seed, 7, self.k])
        z = self.chol @ rng.standard_normal((len(self.assets), n))
        zv = rng.standard_normal((len(self.assets), n))
        pj = cfg.jumps_per_hour * GRID_NS * 1e-9 / 3600.0
        market_jump = (rng.random(n) < pj) * rng.normal(0.0, cfg.jump_bps * 1e-4, n)
        new = np.empty((len(self.assets), n))
        newv = np.empty((len(self.assets), n))
        dt_s = GRID_NS * 1e-9
        theta = dt_s / 300.0  # log-vol mean reversion ~5 min
        eta = 0.6 * math.sqrt(2 * theta)  # stationary sd of log-vol ~0.6
        for i in range(len(self.assets)):
            own = (rng.random(n) < pj * 0.5) * rng.normal(0.0, cfg.jump_bps * 1e-4, n)
            beta = 1.0 if self.assets[i] == "BTC" else 1.3
            lp, lv = _latent(self.lp[i], self.lv[i], z[i], zv[i], own + beta * market_jump,
                             self.sigma_step, theta, eta)
            new[i], newv[i] = lp, lv
            self.lp[i], self.lv[i] = lp[-1], lv[-1]
        self.grid = np.concatenate([self.grid[:, -self.hist_n:], new], axis=1)
        self.grid_vol = np.concatenate([self.grid_vol[:, -self.hist_n:], newv], axis=1)
        # triangular violation: OU in log space with occasional kicks (~2 s decay)
        ptri = cfg.triangle_violations_per_hour * dt_s / 3600.0
        kicks = (rng.random(n) < ptri) * rng.normal(0.0, cfg.triangle_violation_bps * 1e-4, n)
        a = math.exp(-dt_s / 2.0)
        tri = _ou(self.tri, kicks, a, 1.0)
        self.tri = float(tri[-1])
        self.tri_grid = np.concatenate([self.tri_grid[-self.hist_n:], tri])

    def _fair(self, b: _Book, t: np.ndarray, noise: np.ndarray, noise_t0: int) -> tuple[np.ndarray, np.ndarray]:
        """Fair price (ticks) and half spread (ticks) of ``b`` at times ``t``."""
        l = b.listing
        lag = int(self.cfg.lag_ms(l.venue) * 1e6)
        g0 = self.t - HIST_NS  # time of grid column 0
        idx = np.clip((t - lag - g0) // GRID_NS, 0, self.grid.shape[1] - 1)
        ib = self.assets.index(l.base)
        lp = self.grid[ib, idx]
        lv = self.grid_vol[ib, idx]
        if l.quote in ASSETS:
            iq = self.assets.index(l.quote)
            lp = lp - self.grid[iq, idx] + self.tri_grid[idx]
            lv = 0.5 * (lv + self.grid_vol[iq, idx])
        ni = np.clip((t - noise_t0) // GRID_NS, 0, noise.shape[0] - 1)
        lp = lp + noise[ni]
        fair = np.exp(lp) * b.scale
        hs = np.maximum(0.5, b.hs0 * np.clip(np.exp(lv), 0.5, 4.0))
        return fair, hs

    def step(self) -> list[ChunkOut]:
        cfg = self.cfg
        t0, t1 = self.t, self.t + self.chunk_ns
        self._advance_latent()
        n = self.chunk_ns // GRID_NS
        dt_s = GRID_NS * 1e-9
        a = math.exp(-dt_s / 1.5)
        nb_sd = cfg.noise_bps * 1e-4 * math.sqrt(1 - a * a) if cfg.arbitrage else 0.0
        outs: list[ChunkOut] = []
        for i, b in enumerate(self.books):
            l = b.listing
            rng = np.random.default_rng([cfg.seed, 11, self.k, i])
            noise = _ou(b.noise, rng.standard_normal(n), a, nb_sd)
            b.noise = float(noise[-1])
            # book events: Poisson; market orders: Hawkes (clustered)
            nev = rng.poisson(l.book_rate * self.chunk_ns * 1e-9)
            bt = np.sort(rng.integers(t0, t1, nev))
            s_h = int(rng.integers(0, 2**31 - 1))
            ht, b.hawkes_excess = _hawkes(s_h, 0.0, self.chunk_ns * 1e-9, l.trade_rate,
                                          0.6 * 4.0, 4.0, b.hawkes_excess)
            tt = t0 + (ht * 1e9).astype(np.int64)
            ev_t = np.concatenate([bt, tt])
            ev_kind = np.concatenate([np.zeros(nev, np.int8), np.ones(tt.shape[0], np.int8)])
            order = np.argsort(ev_t, kind="stable")
            ev_t, ev_kind = ev_t[order], ev_kind[order]
            fair, hs = self._fair(b, ev_t, noise, t0)
            m = ev_t.shape[0]
            cap_u = m * (2 * NMAX + 8) + 8
            cap_t = m * (NMAX + 2) + 8
            nsnap = (self.chunk_ns // self.snap_dt_ns + 2) if self.snap_dt_ns else 0
            cap_s = nsnap * 2 * SNAP_LEVELS + 8
            i64, i8 = np.int64, np.int8
            u = [np.empty(cap_u, i64), np.empty(cap_u, i8), np.empty(cap_u, i64),
                 np.empty(cap_u, i64), np.empty(cap_u, i64)]
            tr = [np.empty(cap_t, i64), np.empty(cap_t, i64), np.empty(cap_t, i64),
                  np.empty(cap_t, i8), np.empty(cap_t, i64)]
            qu = [np.empty(m + 8, i64) for _ in range(6)]
            sn = [np.empty(cap_s, i64), np.empty(cap_s, np.int32), np.empty(cap_s, i8),
                  np.empty(cap_s, i64), np.empty(cap_s, i64)]
            seed_b = int(rng.integers(0, 2**31 - 1))
            nu, nt, nq, ns = _run_book(seed_b, ev_t, ev_kind, fair, hs, b.gap, b.lvl_med,
                                       b.trd_med, 0.3, b.bid_px, b.bid_q, b.ask_px, b.ask_q,
                                       b.st, self.snap_dt_ns, *u, *tr, *qu, *sn)
            if self.snap_dt_ns:
                # snapshots due before the chunk end with no event after them
                while b.st[4] < t1:
                    nbk, nak = int(b.st[0]), int(b.st[1])
                    for side, px, q, nn in ((0, b.bid_px, b.bid_q, nbk), (1, b.ask_px, b.ask_q, nak)):
                        k = min(nn, SNAP_LEVELS)
                        sl = slice(ns, ns + k)
                        sn[0][sl] = b.st[4]
                        sn[1][sl] = np.arange(k)
                        sn[2][sl] = side
                        sn[3][sl] = px[:k]
                        sn[4][sl] = q[:k]
                        ns += k
                    b.st[4] += self.snap_dt_ns
            outs.append(ChunkOut(l, *(x[:nu] for x in u), *(x[:nt] for x in tr),
                                 *(x[:nq] for x in qu), *(x[:ns] for x in sn)))
        self.t = t1
        self.k += 1
        return outs
