"""Where the project's files are: notebooks, dashboards, configs.

Commands that serve or run the project's own files (``lab demo``, ``lab report``,
``lab schedule``, ``lab promote``) find them here, never through the location of
the installed package. Order: ``$LAB_PROJECT``; the nearest folder at or above the
working directory that has ``streamlit_apps/app.py`` and ``notebooks/``; the source
checkout of an editable install. Otherwise a :class:`~lab.errors.ConfigError` says
to set ``LAB_PROJECT``.
"""

from __future__ import annotations

import os
from pathlib import Path

from lab.errors import ConfigError

__all__ = ["project_dir"]

_MARKERS = ("streamlit_apps/app.py", "notebooks")


def _is_project(d: Path) -> bool:
    return all((d / m).exists() for m in _MARKERS)


def project_dir() -> Path:
    """The project folder (absolute)."""
    env = os.environ.get("LAB_PROJECT")
    if env:
        d = Path(env).expanduser().resolve()
        if not _is_project(d):
            raise ConfigError(f"LAB_PROJECT={env}: no streamlit_apps/app.py and notebooks/ there")
        return d
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if _is_project(d):
            return d
    src = Path(__file__).resolve().parents[2]
    if _is_project(src):
        return src
    raise ConfigError("cannot find the lab project (notebooks/, streamlit_apps/): run from its folder "
                      "or set LAB_PROJECT=/path/to/project")
