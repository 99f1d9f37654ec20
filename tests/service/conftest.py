"""Fixtures of the data-service tests: a small real lake and a real server on a free port."""

from __future__ import annotations

from pathlib import Path

import pytest
from svchelp import signals_frame, start, trades_frame

from lab.lake import Lake


@pytest.fixture
def seed_lake(tmp_path: Path) -> Lake:
    lake = Lake(tmp_path / "lake")
    lake.append("trades", trades_frame(2000))
    lake.append("arbitrage_signals", signals_frame(150))
    return lake


@pytest.fixture
def service(seed_lake: Lake):
    svc = start(seed_lake)
    yield svc
    svc.shutdown()


