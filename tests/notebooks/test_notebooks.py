"""Every notebook runs top to bottom on a small simulated lake: with papermill
(parameters pointing at the lake) and with nbval --nbval-lax on the committed
notebooks (lake found through $LAB_DATA)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from tests.notebooks.conftest import NOTEBOOKS, ROOT

# the daily report is executed (and its numbers checked) by test_reports.py. nbval below runs
# every notebook as a user would (defaults, lake through $LAB_DATA); papermill runs one research
# notebook with its parameters pointed at another lake (the other notebooks' parameter cells have
# the same shape; running each twice cost a minute of the suite).
RESEARCH = sorted(p for p in NOTEBOOKS.glob("*.ipynb"))
PARAMETRISED = [p for p in RESEARCH if p.name.startswith("02_")]


@pytest.fixture(scope="module", autouse=True)
def nbval_run(nb_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """Start nbval on the committed notebooks in a subprocess as soon as this
    module starts, so it runs alongside the papermill tests (the test below
    waits for it)."""
    work = tmp_path_factory.mktemp("nbval")
    env = dict(os.environ, LAB_DATA=str(nb_data), LAB_REPORTS=str(work / "reports"),
               PYTHONPATH=str(ROOT))
    paths = [str(p) for p in sorted(NOTEBOOKS.rglob("*.ipynb")) if ".ipynb_checkpoints" not in p.parts]
    log = open(work / "nbval.log", "w+")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
         "--rootdir", str(work), "--nbval-lax", "--nbval-current-env",
         "--nbval-cell-timeout", "240", *paths],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    yield proc, log
    if proc.poll() is None:
        proc.kill()
        proc.wait(30)
    log.close()


@pytest.fixture(scope="module")
def papermill_runs(nb_lake, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Future]:
    """Execute every research notebook with papermill (parameters pointing at the
    simulated lake), two at a time in threads (each kernel is its own process),
    alongside the nbval run; each test below checks one result."""
    from lab.plots import _skip_slow_jsonschema_extras

    _skip_slow_jsonschema_extras()
    import papermill as pm

    out_dir = tmp_path_factory.mktemp("papermill")

    def execute(nb_path: Path) -> Path:
        out = out_dir / nb_path.name
        params = {"lake": str(nb_lake.root)}
        if "live_updates" in pm.inspect_notebook(str(nb_path)):
            params["live_updates"] = False  # no background refresh once the run ends
        pm.execute_notebook(str(nb_path), str(out), parameters=params, cwd=str(nb_path.parent),
                            progress_bar=False, execution_timeout=300)
        return out

    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="papermill")
    runs = {p.name: pool.submit(execute, p) for p in PARAMETRISED}
    yield runs
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("nb_path", PARAMETRISED, ids=lambda p: p.name)
def test_notebook_executes_top_to_bottom_with_papermill(nb_path: Path, papermill_runs) -> None:
    out = papermill_runs[nb_path.name].result(timeout=900)  # raises PapermillExecutionError on a failed cell
    nb = nbformat.read(out, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is not None for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]


def test_committed_notebooks_pass_nbval_lax(nbval_run) -> None:
    """nbval on the committed notebooks (reports included), as a user would run them:
    every parameter at its default, the lake found through $LAB_DATA."""
    proc, log = nbval_run
    rc = proc.wait(timeout=900)
    log.seek(0)
    out = log.read()
    assert rc == 0, out[-8000:]
    assert " passed" in out and "failed" not in out
