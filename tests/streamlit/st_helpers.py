"""Helpers for the dashboard tests: paths, reading plotly specs and metrics out of an AppTest run."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
APP = ROOT / "streamlit_apps" / "app.py"


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
