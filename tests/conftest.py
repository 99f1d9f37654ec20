import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def lake_dir(tmp_path: Path) -> Path:
    """A fresh, empty lake directory."""
    d = tmp_path / "lake"
    d.mkdir()
    return d


@pytest.fixture
def lab_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point LAB_DATA at a temp dir for code that uses the default lake."""
    monkeypatch.setenv("LAB_DATA", str(tmp_path / "data"))
    return tmp_path / "data"
