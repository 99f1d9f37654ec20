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


@pytest.fixture(scope="session")
def sim_lake(tmp_path_factory: pytest.TempPathFactory):
    """A small simulated lake (10 minutes, 3 venues x 3 assets), built once per run.

    Read-only for tests: copy it if a test writes.
    """
    import datetime as dt

    from lab.lake import Lake
    from recorders.sim.bulk import write_to_lake

    root = tmp_path_factory.mktemp("sim_lake") / "lake"
    lake = Lake(root)
    write_to_lake(lake, start=dt.datetime(2026, 11, 22, 12, tzinfo=dt.timezone.utc),
                  duration=dt.timedelta(minutes=10), seed=7)
    return lake
