"""The layers hold: the library imports nothing above it.

Library (``lab`` minus ``lab.apps``) -> nothing of ``recorders`` or ``lab.apps``;
``recorders`` -> nothing of ``lab.apps``. Checked on every import statement,
deferred ones included, by reading the source.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def _violations(files: list[Path], banned: tuple[str, ...]) -> list[str]:
    bad = []
    for f in files:
        for line, mod in _imports(f):
            if any(mod == b or mod.startswith(b + ".") for b in banned):
                bad.append(f"{f.name}:{line} imports {mod}")
    return bad


def test_library_imports_neither_recorders_nor_apps():
    files = [f for f in (ROOT / "lab").rglob("*.py") if "apps" not in f.relative_to(ROOT / "lab").parts]
    assert files
    assert _violations(files, ("recorders", "lab.apps")) == []


def test_recorders_import_no_apps():
    assert _violations(list((ROOT / "recorders").rglob("*.py")), ("lab.apps",)) == []


@pytest.mark.parametrize("page", sorted((ROOT / "streamlit_apps").rglob("*.py")), ids=lambda p: p.name)
def test_pages_use_the_library_not_the_recorders(page):
    assert _violations([page], ("recorders",)) == []


def test_the_checker_sees_a_deferred_import(tmp_path):
    f = tmp_path / "probe.py"
    f.write_text("import os\n\n\ndef f():\n    from recorders.bus import subscribe\n")
    assert _violations([f], ("recorders",))[0] == "probe.py:5 imports recorders.bus"


@pytest.mark.parametrize("bench", sorted((ROOT / "bench").glob("*.py")), ids=lambda p: p.name)
def test_benches_import_nothing_from_tests(bench):
    """A bench runs without the test suite: its helpers live in bench/_common.py or the package."""
    assert _violations([bench], ("tests",)) == []
    text = bench.read_text(encoding="utf-8")
    assert not re.search(r"sys\.path\.(insert|append)\([^)]*[\"']tests[\"']", text), \
        f"{bench.name} puts tests/ on sys.path"
