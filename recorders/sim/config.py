"""Simulator configuration and the venue listings it serves.

Everything that shapes the simulated market or the wire is a field of
:class:`SimConfig` (a frozen msgspec Struct), so a run is reproducible from its
config alone. Venue listings (symbols in venue notation, tick and lot sizes,
how numbers are written) live in :data:`LISTING_SPECS`.

>>> cfg = SimConfig(seed=3)
>>> cfg.leader, cfg.lead_lags_ms()["kraken"]
('binance', 150.0)
>>> [l.venue_symbol for l in listings(cfg) if l.venue == "kraken"]
['BTC/USD', 'ETH/USD', 'SOL/USD', 'ETH/BTC']
"""

from __future__ import annotations

import msgspec

from lab.venues import VENUES as REGISTRY

__all__ = [
    "VENUES",
    "FaultConfig",
    "SimConfig",
    "Listing",
    "listings",
    "FAULT_PRESETS",
]

VENUES: tuple[str, ...] = tuple(REGISTRY)
PORT_OFFSET = {n: v.sim_offset for n, v in REGISTRY.items()}

DEFAULT_LAGS_MS = {n: v.sim_lag_ms for n, v in REGISTRY.items()}
DEFAULT_WIRE_MS = {n: v.sim_wire_ms for n, v in REGISTRY.items()}


class FaultConfig(msgspec.Struct, frozen=True):
    """Fault rates, each in expected events per minute per venue (0 = never).

    ``gap``: a book diff is dropped (sequence gap); ``duplicate`` /
    ``out_of_order``: a message is sent twice / swapped with the next one;
    ``malformed``: a truncated JSON text is sent; ``bad_checksum``: a
    Kraken/OKX checksum is off by one; ``disconnect``: the socket is closed
    abruptly (no close frame); ``slow``: sends stall for ``slow_s``;
    ``silent``: the venue sends nothing for ``silent_s`` but keeps the socket
    open; ``rest_error``: the next REST depth request answers 429 or 503.
    """

    gap: float = 0.0
    duplicate: float = 0.0
    out_of_order: float = 0.0
    malformed: float = 0.0
    bad_checksum: float = 0.0
    disconnect: float = 0.0
    slow: float = 0.0
    silent: float = 0.0
    rest_error: float = 0.0
    slow_s: float = 2.0
    silent_s: float = 8.0

    def any(self) -> bool:
        return any(getattr(self, k) > 0 for k in FAULT_KINDS)


FAULT_KINDS = ("gap", "duplicate", "out_of_order", "malformed", "bad_checksum",
               "disconnect", "slow", "silent", "rest_error")

FAULT_PRESETS: dict[str, FaultConfig] = {
    "off": FaultConfig(),
    # A gentle rate for the demo: each kind a few times an hour per venue.
    "gentle": FaultConfig(gap=0.1, duplicate=0.1, out_of_order=0.05, malformed=0.05,
                          bad_checksum=0.05, disconnect=0.02, slow=0.03, silent=0.01,
                          rest_error=0.1),
    # For recorder tests: every kind within a minute or two.
    "heavy": FaultConfig(gap=3, duplicate=3, out_of_order=2, malformed=2, bad_checksum=2,
                         disconnect=1, slow=1, silent=0.5, rest_error=3, slow_s=1.0,
                         silent_s=4.0),
}


class SimConfig(msgspec.Struct, frozen=True):
    """How the simulated market behaves and how the venues speak.

    ``lags_ms``: how late each venue's prices follow the latent efficient
    price (the leader has the smallest lag; lead-lag research should recover
    these). ``wire_ms``: mean exchange-to-us latency (``ts_local -
    ts_exchange``). ``arbitrage=False`` removes lags and venue noise, so
    venues quote the same fair price. ``speed`` runs the live clock faster.
    """

    seed: int = 0
    venues: tuple[str, ...] = ("binance", "coinbase", "kraken")
    assets: tuple[str, ...] = ("BTC", "ETH", "SOL")
    cross: bool = True  # list ETH-BTC where both assets are simulated
    lags_ms: dict[str, float] = msgspec.field(default_factory=lambda: dict(DEFAULT_LAGS_MS))
    wire_ms: dict[str, float] = msgspec.field(default_factory=lambda: dict(DEFAULT_WIRE_MS))
    noise_bps: float = 0.15  # venue-specific pricing noise (OU, ~1 s mean reversion)
    arbitrage: bool = True
    annual_vol: float = 0.7
    jumps_per_hour: float = 6.0
    jump_bps: float = 15.0
    triangle_violations_per_hour: float = 20.0
    triangle_violation_bps: float = 4.0
    activity: float = 1.0  # scales book-event and trade rates
    faults: FaultConfig = FaultConfig()
    speed: float = 1.0
    host: str = "127.0.0.1"
    port_base: int = 9443
    # serve wss:// and https:// with this certificate chain and key (PEM files), as the
    # real venues do; None: plain ws:// and http://
    tls_cert: str | None = None
    tls_key: str | None = None
    lifetime_s: float = 86400.0  # Binance cuts a connection after 24 h
    ping_interval_s: float = 180.0
    ping_timeout_s: float = 60.0  # a client that does not pong in time is disconnected
    heartbeat_s: float = 1.0  # Coinbase heartbeats / Kraken heartbeat
    truth_dir: str | None = None
    truth_book_every: int = 50  # books.jsonl checkpoint every N updates per symbol
    start_ns: int | None = None  # simulated clock start (None: now)
    # live model step, whole simulated seconds; None: 1 s, longer at high speed so per-chunk
    # encoding costs amortise. The stream is reproducible for a given seed, speed and chunk_s.
    chunk_s: float | None = None

    def __post_init__(self) -> None:
        bad = [v for v in self.venues if v not in VENUES]
        if bad:
            raise ValueError(f"unknown venue(s) {bad}; known: {list(VENUES)}")
        bad = [a for a in self.assets if a not in ASSETS]
        if bad:
            raise ValueError(f"unknown asset(s) {bad}; known: {list(ASSETS)}")
        if self.speed <= 0:
            raise ValueError(f"speed must be > 0, got {self.speed}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("TLS needs both a certificate (tls_cert) and its key (tls_key)")

    def lag_ms(self, venue: str) -> float:
        return float(self.lags_ms.get(venue, 0.0)) if self.arbitrage else 0.0

    @property
    def leader(self) -> str:
        """The venue whose prices move first (smallest lag)."""
        return min(self.venues, key=lambda v: (self.lag_ms(v), self.venues.index(v)))

    def lead_lag_truth(self) -> dict[str, float]:
        """Each venue's lag behind the leader, in ms (ground truth for lead-lag)."""
        return self.lead_lags_ms()

    def lead_lags_ms(self) -> dict[str, float]:
        base = self.lag_ms(self.leader)
        return {v: self.lag_ms(v) - base for v in self.venues}

    def live_chunk_s(self) -> int:
        if self.chunk_s is not None:
            return max(1, int(round(self.chunk_s)))
        return 1 if self.speed <= 20 else int(min(300, round(self.speed / 25)))

    def port(self, venue: str) -> int:
        return self.port_base + PORT_OFFSET[venue]


# asset -> (initial USD price, level size median, trade size median) in base units
ASSETS: dict[str, tuple[float, float, float]] = {
    "BTC": (90000.0, 0.25, 0.004),
    "ETH": (3000.0, 4.0, 0.08),
    "SOL": (140.0, 60.0, 2.0),
}
# pairwise return correlations of the latent prices
CORR = {("BTC", "ETH"): 0.8, ("BTC", "SOL"): 0.7, ("ETH", "SOL"): 0.72}


class Listing(msgspec.Struct, frozen=True):
    """One symbol on one venue."""

    venue: str
    base: str
    quote: str
    venue_symbol: str
    price_dec: int  # tick = 10**-price_dec
    qty_dec: int  # lot = 10**-qty_dec
    spread_bps: float
    gap_bps: float  # mean distance between book levels
    book_rate: float  # book events per second
    trade_rate: float  # Hawkes baseline trades per second

    @property
    def symbol(self) -> str:
        """Canonical ``BASE-QUOTE``."""
        return f"{self.base}-{self.quote}"


_DEC_PAIRS = ("BTC", "ETH", "SOL", "ETH-BTC")  # "BTC": BTC against the venue's USD-like quote


class _Rules(msgspec.Struct, frozen=True):
    """How the simulator lists one venue's pairs."""

    usd: str  # the quote asset of its USD pairs
    fmt: str  # its notation of a pair ({b} base, {q} quote)
    spread: float  # bps
    gap: float  # bps between book levels
    rate: float  # activity scale
    dec: tuple[tuple[int, int], ...]  # (price decimals, size decimals) of each of _DEC_PAIRS

    def decimals(self, pair: str) -> tuple[int, int]:
        return self.dec[_DEC_PAIRS.index(pair)]


_VENUE_RULES: dict[str, _Rules] = {
    "binance": _Rules("USDT", "{b}{q}", 0.4, 0.15, 1.0, ((2, 5), (2, 4), (2, 3), (5, 4))),
    "coinbase": _Rules("USD", "{b}-{q}", 0.6, 0.2, 0.8, ((2, 8), (2, 8), (2, 8), (5, 8))),
    "kraken": _Rules("USD", "{b}/{q}", 1.2, 0.35, 0.5, ((1, 8), (2, 8), (2, 8), (5, 8))),
    "okx": _Rules("USDT", "{b}-{q}", 0.5, 0.2, 0.8, ((1, 8), (2, 6), (2, 6), (5, 6))),
    "bybit": _Rules("USDT", "{b}{q}", 0.5, 0.2, 0.7, ((2, 6), (2, 5), (2, 3), (5, 5))),
}


def listings(cfg: SimConfig) -> list[Listing]:
    """All listings of ``cfg``, venue by venue, USD pairs first then ETH-BTC."""
    out: list[Listing] = []
    for v in cfg.venues:
        r = _VENUE_RULES[v]
        pairs = [(a, r.usd, a) for a in cfg.assets]
        if cfg.cross and "ETH" in cfg.assets and "BTC" in cfg.assets:
            pairs.append(("ETH", "BTC", "ETH-BTC"))
        for base, quote, key in pairs:
            pd_, qd = r.decimals(key)
            scale = r.rate * cfg.activity * (0.35 if quote == "BTC" else 1.0)
            out.append(Listing(
                venue=v, base=base, quote=quote,
                venue_symbol=r.fmt.format(b=base, q=quote),
                price_dec=pd_, qty_dec=qd,
                spread_bps=r.spread * (2.0 if quote == "BTC" else 1.0),
                gap_bps=r.gap,
                book_rate=30.0 * scale, trade_rate=1.2 * scale,
            ))
    return out
