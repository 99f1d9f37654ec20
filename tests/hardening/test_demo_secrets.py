"""`lab demo` keeps the Jupyter token out of `ps`, out of world-readable files and out of the
background log; Jupyter lists each notebook once (issues 15 and 16)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from lab.apps import demo
from recorders.sim.harness import free_port


def _args(**kw) -> argparse.Namespace:
    a = dict(seed=1, bus_port=free_port(), jupyter_port=free_port(), streamlit_port=free_port(),
             no_jupyter=False, no_streamlit=False, arbitrage_config=Path("config/arbitrage.demo.toml"))
    return argparse.Namespace(**(a | kw))


def test_generated_token_file_is_private(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_DATA", str(tmp_path))
    monkeypatch.delenv("LAB_JUPYTER_TOKEN", raising=False)
    token = demo.jupyter_token()
    f = tmp_path / "run" / "jupyter_token"
    assert f.read_text().strip() == token and len(token) >= 32
    assert f.stat().st_mode & 0o777 == 0o600
    assert demo.jupyter_token() == token  # stable across runs


def test_private_files_are_0600_even_under_a_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        demo.write_private(tmp_path / "demo.ready", json.dumps({"jupyter": "http://x/lab?token=s3cret"}))
    finally:
        os.umask(old)
    assert (tmp_path / "demo.ready").stat().st_mode & 0o777 == 0o600


def test_token_is_in_the_environment_not_the_command_line_and_not_in_the_background_banner(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_DATA", str(tmp_path))
    token = "t0ken-" + "x" * 40
    svcs = demo.services(_args(), token)
    jup = next(s for s in svcs if s.name == "jupyter")
    assert not any(token in a for s in svcs for a in s.argv)
    assert jup.env == {"JUPYTER_TOKEN": token}
    assert token in jup.url  # the foreground banner (your terminal) and 0600 demo.ready have it
    assert token in "\n".join(demo.banner(svcs, secret=True))
    assert token not in "\n".join(demo.banner(svcs, secret=False))  # logs/demo.log in --background


def test_jupyter_lists_each_notebook_once_and_keeps_its_token_out_of_ps_and_logs(tmp_path, monkeypatch):
    """The demo's own Jupyter service, started by the demo's supervisor."""
    monkeypatch.setenv("LAB_DATA", str(tmp_path))
    token = "jt-" + os.urandom(16).hex()
    a = _args()
    jup = next(s for s in demo.services(a, token) if s.name == "jupyter")
    sup = demo.Supervisor([jup], logs=tmp_path, state_file=tmp_path / "demo.json",
                          env=dict(os.environ), cwd=tmp_path, stop_timeout=20)
    try:
        assert sup.start(jup, wait_s=90), (tmp_path / "jupyter.log").read_text()[-2000:]
        pid = sup.procs["jupyter"].p.pid
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        assert token not in cmdline
        req = urllib.request.Request(f"http://127.0.0.1:{a.jupyter_port}/api/contents",
                                     headers={"Authorization": f"token {token}"})
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    names = [c["name"] for c in json.load(r)["content"]]
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        nbs = sorted(n for n in names if n.endswith(".ipynb"))
        assert nbs, names
        stems = [n.rsplit(".", 1)[0] for n in names if n.endswith((".ipynb", ".py"))]
        assert len(stems) == len(set(stems)), f"a notebook is listed twice: {sorted(names)}"
        with pytest.raises(urllib.error.HTTPError):  # and the token is required
            urllib.request.urlopen(f"http://127.0.0.1:{a.jupyter_port}/api/contents", timeout=5)
    finally:
        codes = sup.stop()
    assert codes["jupyter"] in (0, -signal.SIGTERM), codes
    assert token not in (tmp_path / "jupyter.log").read_text()
    assert (tmp_path / "jupyter.log").stat().st_mode & 0o777 == 0o600
