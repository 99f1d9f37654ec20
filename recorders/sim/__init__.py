"""The local exchange simulator: real venue protocols on 127.0.0.1, a
realistic multi-venue market, injected faults, replay of recorded journals,
and bulk history written straight into the lake.

Usage::

    lab simulate                                  # binance/coinbase/kraken x BTC/ETH/SOL on :9443..
    lab simulate --faults gentle --truth-dir data/sim_truth
    lab simulate --venues binance,coinbase,kraken,okx,bybit --speed 10 --seed 7
    lab simulate --to-lake --days 1 --start 2026-11-01       # ~100 M rows of history
    lab simulate --replay data/lake --speed 5               # serve a recorded journal

In Python::

    sim = Simulator(SimConfig(port_base=0, seed=1))        # free ports
    with sim.running_in_thread():
        url = sim.urls()["binance"]                       # ws://127.0.0.1:<port>
        ...                                               # sim.truth.trades / .faults / ...

Modules: ``config`` (SimConfig, listings), ``market`` (the model), ``bulk``
(history into the lake), ``server`` (Simulator), one encoder per venue
(``binance``, ``coinbase``, ``kraken``, ``okx``, ``bybit``), ``replay``.
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
