"""Fixtures for the dashboard tests: a small known lake and AppTest on it."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import st_synth as synth  # noqa: E402
from st_helpers import APP  # noqa: E402

START = dt.datetime(2026, 11, 22, 12, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="session")
def synth_lake(tmp_path_factory: pytest.TempPathFactory):
    """(lake root, the frames written) for a 3-minute, 3-venue, 2-market synthetic lake."""
    from lab.lake import Lake

    root = tmp_path_factory.mktemp("st_synth") / "lake"
    written = synth.write(Lake(root), START, seconds=180.0)
    return str(root), written


@pytest.fixture
def app_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """``app_on(lake_root, page=None)`` -> an AppTest of the whole app, run once, on that lake."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("LAB_DATA", str(tmp_path / "data"))

    def make(lake_root: str, page: str | None = None) -> AppTest:
        monkeypatch.setenv("LAB_LAKE", str(lake_root))
        at = AppTest.from_file(str(APP), default_timeout=90)
        at.run()
        if page is not None:
            at.switch_page(page)
            at.run()
        assert not at.exception, [e.value for e in at.exception]
        unplanned = [e.value for e in at.error if e.value.startswith("Page error")]
        assert not unplanned, unplanned  # the app shows unexpected errors as one line: still a failure here
        return at

    return make
