"""Fixtures for the dashboard tests: a small known lake, AppTest on it, plotly spec decoding."""

from __future__ import annotations

import base64
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
APP = ROOT / "streamlit_apps" / "app.py"
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import synth  # noqa: E402

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
        return at

    return make


def _decode(v):
    """A plotly JSON array: a list, or ``{"dtype", "bdata"[, "shape"]}`` (typed array, base64)."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        if "shape" in v:
            a = a.reshape([int(s) for s in str(v["shape"]).split(",")])
        return a.tolist()
    return v


def figures(at) -> dict[str, dict]:
    """Plotly charts of a run, by element key suffix: {"bid_ask": {"title", "traces": {name: {x, y}}}}."""
    out = {}
    for el in at.get("plotly_chart"):
        spec = json.loads(el.proto.spec)
        title = spec.get("layout", {}).get("title", {})
        title = title.get("text") if isinstance(title, dict) else title
        traces = {d.get("name"): {"x": _decode(d.get("x")), "y": _decode(d.get("y")), "type": d.get("type")}
                  for d in spec["data"]}
        key = el.proto.id.rsplit("-", 1)[-1] if el.proto.id else "None"
        out[key if key != "None" else str(len(out))] = {
            "title": title, "traces": traces, "id": el.proto.id}
    return out


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}
