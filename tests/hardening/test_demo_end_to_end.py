"""The real `lab demo` (no Jupyter, no Streamlit) on free ports: it starts every service, restarts
one that dies (and says so in `feed_events`), and on Ctrl-C or `make stop` (the pid file) stops
them all, each exit reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_demo_supervisor import _alive, _read_until

from recorders.sim.harness import free_port, free_port_base


@pytest.mark.parametrize("stop_with", ["ctrl-c", "make stop"])
def test_lab_demo_restarts_a_killed_service_and_stops_every_service(tmp_path, stop_with):
    data = tmp_path / "data"
    argv = [str(Path(sys.executable).parent / "lab"), "demo", "--no-jupyter", "--no-streamlit",
            "--history-minutes", "0", "--sim-port-base", str(free_port_base(3)), "--bus-port", str(free_port()), "--service-port", str(free_port()),
            "--stop-timeout", "60"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=os.environ | {"LAB_DATA": str(data)}, start_new_session=True)
    lines: list[str] = []
    pids: dict[str, int] = {}
    try:
        _read_until(proc, "demo is running", lines, timeout=180, anywhere=True)
        state = json.loads((data / "run" / "demo.json").read_text())
        pids = state["services"]
        assert {"simulator", "recorder", "maintainer"} <= set(pids), state
        assert (data / "run" / "demo.ready").stat().st_mode & 0o777 == 0o600

        os.kill(pids["maintainer"], signal.SIGKILL)  # a crash
        _read_until(proc, "maintainer  restarted", lines, timeout=60, anywhere=True)
        restarted = json.loads((data / "run" / "demo.json").read_text())["services"]["maintainer"]
        assert restarted != pids["maintainer"] and _alive(restarted)

        if stop_with == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the supervisor's group
        else:  # `make stop` runs `lab demo --stop`: the pid file names the supervisor
            stopped = subprocess.run([argv[0], "demo", "--stop"], capture_output=True, text=True, timeout=120,
                                     env=os.environ | {"LAB_DATA": str(data)})
            assert stopped.returncode == 0 and "demo stopped" in stopped.stdout, stopped
        out, _ = proc.communicate(timeout=120)
        lines += out.splitlines()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = "\n".join(lines)
    print(text)
    assert proc.returncode == 0, text
    assert "maintainer exited with -9" in text and "restart 1 in 1 s" in text
    for name in pids:
        assert any(ln.strip().startswith(f"{name} ") and "exited with" in ln for ln in lines), (name, text)
    assert "SIGKILL" not in text.split("stopping the demo")[1], text  # every service stopped on SIGTERM
    assert not (data / "run" / "demo.json").exists()
    assert not any(_alive(p) for p in pids.values())
    import polars as pl

    from lab.lake import Lake

    ev = Lake(data / "lake").scan("feed_events").filter(pl.col("kind") == "service_restart").collect()
    assert ev["symbol"].to_list() == ["maintainer"] and ev["venue"].to_list() == ["lab"]
