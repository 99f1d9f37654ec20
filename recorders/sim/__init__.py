"""The local exchange simulator: real venue protocols on 127.0.0.1, a
realistic multi-venue market, injected faults, replay of recorded journals,
and bulk history written straight into the lake.

``Simulator`` is imported lazily so ``recorders.sim.bulk`` does not pull in
the WebSocket stack.
"""

from __future__ import annotations

from recorders.sim.config import FAULT_PRESETS, FaultConfig, Listing, SimConfig, listings

__all__ = [
    "SimConfig",
    "FaultConfig",
    "FAULT_PRESETS",
    "Listing",
    "listings",
    "Simulator",
    "write_to_lake",
]


def __getattr__(name: str):
    if name == "Simulator":
        from recorders.sim.server import Simulator

        return Simulator
    if name == "write_to_lake":
        from recorders.sim.bulk import write_to_lake

        return write_to_lake
    raise AttributeError(name)
