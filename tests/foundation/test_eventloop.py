"""The services' event loop (lab.eventloop): uvloop by default, asyncio's own on request, a clear
message for a bad choice; and a real service serving on it and stopping on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import uvloop
from websockets.sync.client import connect

from lab import eventloop
from lab.cli import main
from lab.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


async def _loop_type() -> type:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop())


def test_run_is_on_uvloop_unless_asyncio_is_asked_for(monkeypatch):
    monkeypatch.delenv("LAB_EVENT_LOOP", raising=False)
    assert issubclass(eventloop.run(_loop_type()), uvloop.Loop)
    monkeypatch.setenv("LAB_EVENT_LOOP", "asyncio")
    got = eventloop.run(_loop_type())
    assert not issubclass(got, uvloop.Loop) and issubclass(got, asyncio.BaseEventLoop)
    monkeypatch.setenv("LAB_EVENT_LOOP", " UVLOOP ")
    assert issubclass(eventloop.run(_loop_type()), uvloop.Loop)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_a_bad_choice_is_named_and_nothing_runs(monkeypatch, capsys):
    monkeypatch.setenv("LAB_EVENT_LOOP", "tokio")
    coro = _loop_type()
    with pytest.raises(ConfigError, match="LAB_EVENT_LOOP='tokio'.*uvloop, asyncio"):
        eventloop.run(coro)
    assert coro.cr_frame is None  # closed, not left to warn "never awaited"
    # through the CLI: one line naming the variable, exit code 2, no traceback
    rc = main(["simulate", "--venues", "binance", "--assets", "BTC", "--port-base", "0", "--duration", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "lab simulate: LAB_EVENT_LOOP='tokio'" in err and "Traceback" not in err


def test_lab_simulate_serves_on_uvloop_and_stops_on_sigterm(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "LAB_EVENT_LOOP"}
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "simulate", "--venues", "binance", "--assets",
                             "BTC", "--port-base", "0"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        line = ""
        deadline = time.monotonic() + 60
        while "binance:" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "lab simulate exited before serving"
        url = line.split("binance:", 1)[1].strip()
        with connect(f"{url}/ws/btcusdt@trade", open_timeout=30) as ws:
            msg = json.loads(ws.recv(timeout=60))
        assert msg["e"] == "trade" and msg["s"] == "BTCUSDT"
        # the process that served it has uvloop's loop loaded (read from the kernel, not asked of it)
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert "uvloop/loop." in maps
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    assert rc == 0, proc.stdout.read()
