"""``lab record`` sizes its process for memory before Polars and delta-rs load (lab.cli.PROCESS_ENV)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import os, sys
from lab.cli import tune_process
{before}
tune_process(sys.argv[1])
import polars
print(polars.thread_pool_size(), os.environ.get("_RJEM_MALLOC_CONF", "-"))
"""


def _probe(command: str, env: dict[str, str] | None = None, before: str = "") -> tuple[int, list[str]]:
    """(Polars' thread pool size, the jemalloc options in effect) in a fresh process."""
    clean = {k: v for k, v in os.environ.items() if k not in ("POLARS_MAX_THREADS", "_RJEM_MALLOC_CONF")}
    out = subprocess.run([sys.executable, "-c", PROBE.format(before=before), command], cwd=ROOT,
                         env={**clean, "PYTHONPATH": str(ROOT), **(env or {})},
                         capture_output=True, text=True, check=True, timeout=120)
    threads, conf = out.stdout.split()
    return int(threads), conf.split(",")  # Polars adds its decay options to the user's


def test_record_runs_polars_on_one_thread_with_one_jemalloc_arena_and_no_thread_caches():
    # Polars itself reports the pool it started with
    threads, conf = _probe("record")
    assert threads == 1 and "tcache:false" in conf and "narenas:1" in conf


def test_other_commands_and_user_settings_are_left_alone():
    threads, conf = _probe("sql")
    assert threads == len(os.sched_getaffinity(0)) and "tcache:false" not in conf
    threads, conf = _probe("record", {"POLARS_MAX_THREADS": "2", "_RJEM_MALLOC_CONF": "narenas:4"})
    # options merged, not replaced: the user's arenas stay, the thread caches still go
    assert threads == 2 and "narenas:4" in conf and "narenas:1" not in conf and "tcache:false" in conf


def test_a_parent_that_imported_polars_does_not_stop_it():
    # Polars writes its decay options into the environment when it loads; a child started from such a
    # process (a bench, lab demo, a test) inherits them: they are not the user's choice of tcache
    import polars  # noqa: F401 - what the parent has done

    inherited = os.environ["_RJEM_MALLOC_CONF"]
    assert "tcache" not in inherited
    threads, conf = _probe("record", {"_RJEM_MALLOC_CONF": inherited})
    assert threads == 1 and "tcache:false" in conf and set(inherited.split(",")) <= set(conf)
    _, conf = _probe("record", {"_RJEM_MALLOC_CONF": inherited + ",tcache:true"})
    assert "tcache:true" in conf and "tcache:false" not in conf  # a user's own choice stays


def test_nothing_is_set_once_polars_is_loaded():
    # too late to matter: setting it then would only mislead whoever reads the environment
    threads, conf = _probe("record", before="import polars")
    assert threads == len(os.sched_getaffinity(0)) and "tcache:false" not in conf


HTTPX_PROBE = """
import sys
import recorders.runtime  # what `lab record` loads
print("click" in sys.modules, type(recorders.rest.httpx.AsyncClient).__name__)
import click  # hidden only while httpx loaded
print(callable(click.command))
"""


def test_the_recorder_loads_httpx_without_its_command_line_client():
    # httpx's CLI import pulled click into every recorder (~3.7 MiB resident); click stays importable
    out = subprocess.run([sys.executable, "-c", HTTPX_PROBE], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, check=True, timeout=120).stdout.split()
    assert out == ["False", "type", "True"]
