"""Every notebook is paired with a py:percent file, in sync, outputs stripped,
starts with a markdown cell and has a papermill ``parameters`` cell with ``lake``."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest

from tests.notebooks.conftest import NOTEBOOKS

IPYNB = sorted(p for p in NOTEBOOKS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
PY = sorted(p for p in NOTEBOOKS.rglob("*.py") if ".ipynb_checkpoints" not in p.parts)


def _id(p: Path) -> str:
    return str(p.relative_to(NOTEBOOKS))


def test_every_notebook_and_script_has_its_pair() -> None:
    assert IPYNB, "no notebooks found"
    assert sorted(p.with_suffix("") for p in IPYNB) == sorted(p.with_suffix("") for p in PY)


@pytest.mark.parametrize("nb_path", IPYNB, ids=_id)
def test_notebook_is_stripped_and_in_sync_with_its_script(nb_path: Path) -> None:
    nb = nbformat.read(nb_path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "outputs not stripped"
    text = jupytext.read(nb_path.with_suffix(".py"))
    src_nb = [(c.cell_type, c.source.strip()) for c in nb.cells]
    src_py = [(c.cell_type, c.source.strip()) for c in text.cells]
    assert src_nb == src_py, f"{nb_path.name} and its .py differ: run jupytext --sync {nb_path.with_suffix('.py')}"


@pytest.mark.parametrize("nb_path", IPYNB, ids=_id)
def test_notebook_says_its_question_and_takes_a_lake_parameter(nb_path: Path) -> None:
    nb = nbformat.read(nb_path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.lstrip().startswith("#")
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    assert any(line.replace(" ", "").startswith("lake=") for line in params[0].source.splitlines())
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
