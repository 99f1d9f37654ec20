"""Shared fixtures for the recorder tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def quiet_sim(tmp_path_factory):
    """One fault-free simulator (binance, coinbase, kraken x BTC, ETH) on free loopback
    ports, shared by the tests that only need a live feed. Its truth files are under
    ``sim.truth_dir``; tests must filter them by their own connections."""
    from recorders.sim import SimConfig, Simulator

    d = tmp_path_factory.mktemp("quiet_sim")
    sim = Simulator(SimConfig(venues=("binance", "coinbase", "kraken"), assets=("BTC", "ETH"),
                              port_base=0, seed=5, truth_dir=str(d / "truth"), truth_book_every=0))
    sim.truth_dir = d / "truth"
    with sim.running_in_thread():
        yield sim
