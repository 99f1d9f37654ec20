"""`lab demo`'s supervisor: reaps and reports every exit, restarts crashes with backoff, stops
gracefully (SIGKILL only for a service that ignores SIGTERM, named), and its services stop
whatever kills it (issue 15, "Stopping and supervising services").

Real subprocesses throughout: the supervisor runs in its own Python process (as `lab demo`
does) with three small services: one that flushes on SIGTERM, one that crashes, one that
ignores SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recorders.sim.harness import free_port_base

GOOD = ("import signal, sys, time, pathlib\n"
        "def bye(*_):\n"
        "    pathlib.Path(sys.argv[1]).write_text('flushed')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "signal.signal(signal.SIGINT, bye)\n"
        "pathlib.Path(sys.argv[1] + '.ready').write_text('up')\n"
        "while True: time.sleep(0.1)\n")
CRASH = "import time, sys\ntime.sleep(0.3)\nsys.exit(3)\n"
STUBBORN = ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ignoring SIGTERM', flush=True)\nwhile True: time.sleep(0.1)\n")

SUPERVISOR = """
import json, os, signal, sys
from pathlib import Path
from lab.apps.demo import Service, Supervisor

base = Path(sys.argv[1])
py = sys.executable
svcs = [Service("good", [py, str(base / "good.py"), str(base / "good.flushed")]),
        Service("crash", [py, str(base / "crash.py")]),
        Service("stubborn", [py, str(base / "stubborn.py")])]
sup = Supervisor(svcs, logs=base, state_file=base / "demo.json", env=dict(os.environ), cwd=base,
                 stop_timeout=float(sys.argv[2]),
                 on_restart=lambda name, detail: print("RESTART", name, "|", detail, flush=True))
def on_signal(*_):
    sup.stopping = True
signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)
for s in svcs:
    sup.start(s)
print("READY", json.dumps({n: p.p.pid for n, p in sup.procs.items()}), flush=True)
sup.wait()
codes = sup.stop()
zombies = []
for d in Path("/proc").iterdir():
    if d.name.isdigit():
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z" and int(fields[1]) == os.getpid():
            zombies.append(int(d.name))
print("CODES", json.dumps(codes), flush=True)
print("ZOMBIES", json.dumps(zombies), flush=True)
"""


def _wait_good_up(tmp_path: Path) -> None:
    """The good service has installed its SIGTERM handler (before that, SIGTERM kills it unflushed)."""
    deadline = time.monotonic() + 30
    while not (tmp_path / "good.flushed.ready").exists():
        assert time.monotonic() < deadline, "the good service never came up"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _start(tmp_path: Path, stop_timeout: float) -> subprocess.Popen:
    (tmp_path / "good.py").write_text(GOOD)
    (tmp_path / "crash.py").write_text(CRASH)
    (tmp_path / "stubborn.py").write_text(STUBBORN)
    (tmp_path / "sup.py").write_text(SUPERVISOR)
    return subprocess.Popen([sys.executable, str(tmp_path / "sup.py"), str(tmp_path), str(stop_timeout)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _read_until(proc: subprocess.Popen, text: str, lines: list[str], timeout: float = 60.0, *,
                anywhere: bool = False) -> str:
    """Read ``proc``'s output into ``lines`` up to the first line starting with ``text`` (or
    containing it, ``anywhere``), and return that line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ln = proc.stdout.readline()
        if not ln:
            break
        lines.append(ln.rstrip("\n"))
        if (text in ln) if anywhere else ln.startswith(text):
            return ln
    raise AssertionError(f"no {text!r} line; output so far:\n" + "\n".join(lines))


def _start_ready(tmp_path: Path) -> tuple[subprocess.Popen, list[str], dict[str, int]]:
    """The supervisor started, its READY line read (the services' pids), the good service up."""
    proc = _start(tmp_path, stop_timeout=3.0)
    lines: list[str] = []
    try:
        pids = json.loads(_read_until(proc, "READY", lines).split(" ", 1)[1])
        _wait_good_up(tmp_path)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc, lines, pids


def test_supervisor_restarts_a_crash_with_backoff_then_stops_gracefully_and_reaps_everything(tmp_path):
    proc = _start(tmp_path, stop_timeout=3.0)
    lines: list[str] = []
    try:
        pids = json.loads(_read_until(proc, "READY", lines).split(" ", 1)[1])
        first = _read_until(proc, "RESTART crash", lines)
        second = _read_until(proc, "RESTART crash", lines)
        assert "exited with 3" in first and "restart 1 in 1 s" in first
        assert "restart 2 in 2 s" in second  # exponential backoff
        state = json.loads((tmp_path / "demo.json").read_text())
        assert state["supervisor"] == proc.pid and set(state["services"]) == {"good", "crash", "stubborn"}
        assert oct((tmp_path / "demo.json").stat().st_mode & 0o777) == "0o600"

        os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    lines += out.splitlines()
    text = "\n".join(lines)
    codes = json.loads(next(ln for ln in lines if ln.startswith("CODES")).split(" ", 1)[1])
    assert codes["good"] == 0, text  # it got SIGTERM, flushed and exited by itself
    assert (tmp_path / "good.flushed").read_text() == "flushed"
    assert codes["stubborn"] == -signal.SIGKILL, text
    killed = [ln for ln in lines if "SIGKILL" in ln]
    assert len(killed) == 1 and "stubborn" in killed[0] and "after SIGTERM" in killed[0], text
    assert "good        exited with 0" in text
    assert json.loads(next(ln for ln in lines if ln.startswith("ZOMBIES")).split(" ", 1)[1]) == []
    assert not any(_alive(p) for p in pids.values())


def test_services_stop_when_the_supervisor_is_killed(tmp_path):
    """`make demo | tee log`, Ctrl-C, `kill -9`: the parent-death signal stops every service."""
    proc, lines, pids = _start_ready(tmp_path)
    try:
        assert all(_alive(p) for p in (pids["good"], pids["stubborn"]))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 30
        while _alive(pids["good"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pids["good"]), "the service outlived its supervisor"
        assert (tmp_path / "good.flushed").read_text() == "flushed"  # SIGTERM: it flushed
    finally:
        for p in pids.values():
            try:
                os.killpg(p, signal.SIGKILL)  # the stubborn one ignores SIGTERM by design
            except ProcessLookupError:
                pass


def test_a_closed_stdout_does_not_stop_the_supervisor_from_stopping_its_services(tmp_path):
    """`make demo | tee log` then Ctrl-C: tee dies first; printing must not abort the stop."""
    proc, lines, pids = _start_ready(tmp_path)
    try:
        proc.stdout.close()  # the reader is gone: every later print hits EPIPE
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids.values())
        assert (tmp_path / "good.flushed").read_text() == "flushed"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize("flag,make_var,service", [("--jupyter-port", "JUPYTER_PORT", "Jupyter Lab"),
                                                   ("--streamlit-port", "STREAMLIT_PORT", "Streamlit"),
                                                   ("--bus-port", "BUS_PORT", "the live bus"),
                                                   ("--sim-port-base", "SIM_PORT_BASE",
                                                    "the exchange simulator (binance)")])
def test_a_busy_port_is_named_with_its_flag_before_anything_starts(tmp_path, flag, make_var, service):
    import socket

    ports = {"--sim-port-base": free_port_base(3)}  # the demo's simulator uses base+0..2
    socks = []
    for f in ("--jupyter-port", "--streamlit-port", "--bus-port"):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        ports[f] = s.getsockname()[1]
        socks.append(s)
    for s in socks:
        s.close()
    busy = socket.socket()
    busy.bind(("127.0.0.1", ports[flag]))
    busy.listen()
    data = tmp_path / "data"
    argv = [str(Path(sys.executable).parent / "lab"), "demo", "--history-minutes", "5"]
    for f, p in ports.items():
        argv += [f, str(p)]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                             env=os.environ | {"LAB_DATA": str(data)})
    finally:
        busy.close()
    assert out.returncode == 2, out.stdout + out.stderr
    err = out.stderr.strip().splitlines()
    assert len(err) == 1, out.stderr
    assert f"port {ports[flag]} ({service})" in err[0] and flag in err[0] and f"{make_var}=" in err[0]
    assert not (data / "lake").exists(), "nothing is seeded before the ports are checked"
    assert "seeding" not in out.stdout and "started" not in out.stdout
