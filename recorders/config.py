"""Recorder configuration: what to record, from where, and how to write it.

A config file (TOML) lists several venues for one process::

    [recorder]
    name = "demo"
    flush_interval = 1.0

    [[venue]]
    venue = "binance"
    symbols = ["BTC-USDT", "ETH-USDT"]
    base_url = "ws://127.0.0.1:9443"      # optional: defaults to the real venue
    rest_url = "http://127.0.0.1:9443"

See ``recorders/recorders.example.toml`` for every option.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from lab.errors import ConfigError
from lab.tomlconfig import convert, read_toml
from recorders.venues import ADAPTERS, DEFAULT_URLS, SIM_URLS

__all__ = ["VenueConfig", "RecorderConfig", "load_config", "write_config", "ConfigError"]




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
    # Seconds between lake writes: each flush's rows become visible to a fresh lab.connect()
    # (freshness p50 ~0.6 s, p99 ~1.2 s at 1 s). Live consumers get rows within milliseconds
    # from the bus, whatever this is.
    flush_interval: float = 1.0
    # Seconds between Delta commits (one per table). A flush writes its rows as tail files
    # (lab.tail: ~1 ms each, read by lab.connect() and Lake.scan at once), and the Delta commit,
    # ~10 ms of CPU however few rows it adds, happens this often. 0 = commit every flush
    # (no tail). bench/bench_recorder_cost.py prints the curve (interval -> CPU, freshness);
    # measured at ~380 msgs/s: 0 s 0.080 core, 5 s 0.061, 15 s 0.057, 30 s 0.048, freshness
    # through lab.connect() p99 1.1-1.3 s at every point.
    commit_interval: float = 30.0
    # Who makes those Delta commits. "recorder": this process, every commit_interval. "maintainer":
    # `lab maintain` (or this recorder's own maintenance pass, every maintain_every), which commits
    # the tail as it settles a stopped recorder's; the recorder commits what is left when it stops
    # and never loads delta-rs (~50 MiB less RSS on a freshly installed machine). Readers through
    # lab.connect() / Lake.scan see rows as soon as they are written either way; plain Delta readers
    # see them at the maintainer's pace. lab demo uses "maintainer" (its `lab maintain --every 30`).
    committer: str = "recorder"
    slow_flush_interval: float = 5.0      # book_snapshots and feed_events: write this often (0 = every flush)
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
    seed_hours: float = 6.0               # how far back start-up looks for the newest trade ids to seed (dedupe)
    duration: float | None = None         # stop after this many seconds (tests, benches)
    no_data_after: float = 60.0           # a symbol silent this long is a no_data feed event (0 = never)
    backfill: bool = True                 # after a reconnect/restart/gap, fetch missed trades over REST

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
        if self.commit_interval < 0:
            raise ConfigError(f"commit_interval must be >= 0, got {self.commit_interval}")
        if self.committer not in ("recorder", "maintainer"):
            raise ConfigError(f"committer must be \"recorder\" or \"maintainer\", got {self.committer!r}")
        if self.committer == "maintainer" and self.commit_interval == 0:
            raise ConfigError("committer = \"maintainer\" needs the tail: commit_interval must be > 0 "
                              "(0 commits every flush from the recorder itself)")
        if self.slow_flush_interval < 0:
            raise ConfigError(f"slow_flush_interval must be >= 0, got {self.slow_flush_interval}")


def sim_venue(venue: str, symbols: list[str], port_base: int = 9443) -> VenueConfig:
    ws, rest = SIM_URLS(venue, port_base)
    return VenueConfig(venue=venue, symbols=symbols, base_url=ws, rest_url=rest)


def load_config(path: str | Path, **overrides) -> RecorderConfig:
    """Read a TOML recorder config; keyword overrides replace ``[recorder]`` keys."""
    p = Path(path)
    data = read_toml(p, "recorder config")
    rec = dict(data.get("recorder", {}))
    sim = rec.pop("sim", False)
    port_base = rec.pop("sim_port_base", 9443)
    venues = data.get("venue", [])
    if sim:
        venues = [{**msgspec.to_builtins(sim_venue(v["venue"], v["symbols"], port_base)), **v}
                  for v in venues]
    rec.update({k: v for k, v in overrides.items() if v is not None})
    return convert({**rec, "venues": venues}, RecorderConfig, p)


def write_config(path: str | Path, urls: dict[str, str], symbols: dict[str, list[str]], lake: str | Path,
                 name: str, **recorder: object) -> Path:
    """Write a recorder TOML for ``symbols`` (venue -> canonical symbols) at the base ``urls``
    (``Simulator.urls()`` shape: venue names plus ``binance_rest``); ``recorder`` adds
    ``[recorder]`` keys. Returns ``path``."""
    import json

    lake = Path(lake)
    lines = ["[recorder]", f'name = "{name}"', f'lake = "{lake}"', f'status_dir = "{lake.parent / "run"}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in recorder.items()]
    for v, syms in symbols.items():
        lines += ["", "[[venue]]", f'venue = "{v}"', f"symbols = {json.dumps(syms)}", f'base_url = "{urls[v]}"']
        if f"{v}_rest" in urls:
            lines.append(f'rest_url = "{urls[v + "_rest"]}"')
    p = Path(path)
    p.write_text("\n".join(lines) + "\n")
    return p
