"""Recorder configuration: what to record, from where, and how to write it.

A config file (TOML) lists several venues for one process::

    [recorder]
    name = "demo"
    flush_interval = 0.5

    [[venue]]
    venue = "binance"
    symbols = ["BTC-USDT", "ETH-USDT"]
    base_url = "ws://127.0.0.1:9443"      # optional: defaults to the real venue
    rest_url = "http://127.0.0.1:9443"

See ``recorders/recorders.example.toml`` for every option.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec

from lab.errors import ConfigError
from recorders.venues import ADAPTERS, DEFAULT_URLS, SIM_URLS

__all__ = ["VenueConfig", "RecorderConfig", "load_config", "ConfigError"]




class VenueConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    venue: str
    symbols: list[str]
    base_url: str | None = None   # WebSocket base; None = the real venue
    rest_url: str | None = None   # REST base (Binance snapshots); None = the real venue
    depth: int | None = None      # venue book depth (Kraken 10/25/...; Binance snapshot limit)
    silence_timeout: float | None = None  # seconds without a message before reconnecting

    def urls(self) -> tuple[str, str | None]:
        ws, rest = DEFAULT_URLS[self.venue]
        return self.base_url or ws, self.rest_url or rest


class RecorderConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    venues: list[VenueConfig]
    name: str = "recorder"
    lake: str | None = None               # lake root; None = $LAB_DATA/lake
    flush_interval: float = 0.5           # seconds between lake appends
    queue_batches: int = 16               # batches waiting for the writer before loss
    write_buffer_mb: float = 256.0        # rows kept in memory while lake appends fail, then counted losses
    max_batch_rows: int = 2_000_000       # a batch this large is handed over early
    bus: str | None = None                # publish to the live bus at this URL
    status_dir: str | None = None         # None = $LAB_DATA/run
    rotate_after: float = 23.5 * 3600     # planned reconnect (overlapping) after this many s
    overlap: float = 2.0                  # seconds both sockets stay open on a rotation
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    healthy_after: float = 30.0           # a connection this old resets the backoff
    rest_min_interval: float = 0.25       # seconds between REST snapshot calls (all venues)
    maintain_every: float = 120.0         # compact the lake this often (0 = never)
    seed_hours: float = 6.0               # trade ids of this many hours seeded for dedupe
    duration: float | None = None         # stop after this many seconds (tests, benches)

    def __post_init__(self) -> None:
        if not self.venues:
            raise ConfigError("no venues configured")
        for v in self.venues:
            if v.venue not in ADAPTERS:
                raise ConfigError(f"unknown venue {v.venue!r}; known: {', '.join(ADAPTERS)}")
            if not v.symbols:
                raise ConfigError(f"venue {v.venue!r}: no symbols")
        if self.flush_interval <= 0:
            raise ConfigError(f"flush_interval must be > 0, got {self.flush_interval}")


def sim_venue(venue: str, symbols: list[str], port_base: int = 9443) -> VenueConfig:
    ws, rest = SIM_URLS(venue, port_base)
    return VenueConfig(venue=venue, symbols=symbols, base_url=ws, rest_url=rest)


def load_config(path: str | Path, **overrides) -> RecorderConfig:
    """Read a TOML recorder config; keyword overrides replace ``[recorder]`` keys."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {p} not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: invalid TOML: {e}") from None
    rec = dict(data.get("recorder", {}))
    sim = rec.pop("sim", False)
    port_base = rec.pop("sim_port_base", 9443)
    venues = data.get("venue", [])
    if sim:
        venues = [{**msgspec.to_builtins(sim_venue(v["venue"], v["symbols"], port_base)), **v}
                  for v in venues]
    rec.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert({**rec, "venues": venues}, RecorderConfig)
    except msgspec.ValidationError as e:
        raise ConfigError(f"{p}: {e}") from None
