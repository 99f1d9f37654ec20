"""`lab demo`'s command line: every flag explained; `--background` shows progress, then the URLs."""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path

from lab.apps import demo


def test_every_demo_flag_has_help():
    p = argparse.ArgumentParser()
    demo.add_arguments(p)
    missing = [a.option_strings for a in p._actions if a.help in (None, "") and a.option_strings != ["-h", "--help"]]
    assert not missing, f"flags without help: {missing}"
    text = p.format_help()
    for var in ("JUPYTER_PORT", "STREAMLIT_PORT", "BUS_PORT"):
        assert var in text


FAKE_LAB = """#!{python}
# Stands in for `lab demo` in the background: progress as the seeding prints it (a progress
# bar's carriage returns included), then the ready file the real supervisor writes (0600).
import json, os, sys, time
from pathlib import Path
print("seeding 5 minutes of simulated history into /x/lake ...", flush=True)
for i in range(1, 6):
    sys.stderr.write(f"\\rsimulating: {{i * 20}}%| {{i}}/5 [rows={{i * 1000}}]")
    sys.stderr.flush()
    time.sleep(0.2)
sys.stderr.write("\\n")
print("  simulator   started (pid 1)", flush=True)
print("  jupyter     http://127.0.0.1:1/lab  (token: run/jupyter_token)", flush=True)
run = Path(os.environ["LAB_DATA"]) / "run"
fd = os.open(run / "demo.ready", os.O_WRONLY | os.O_CREAT, 0o600)
os.write(fd, json.dumps({{"jupyter": "http://127.0.0.1:1/lab?token=SECRET"}}).encode())
os.close(fd)
"""


def test_background_prints_progress_while_it_starts_then_the_urls(tmp_path, monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    lab = bin_dir / "lab"
    lab.write_text(FAKE_LAB.format(python=sys.executable))
    lab.chmod(lab.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(demo, "BIN", bin_dir)
    monkeypatch.setenv("LAB_DATA", str(tmp_path / "data"))

    assert demo.background(["--history-minutes", "5"]) == 0

    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].strip().startswith("seeding 5 minutes"), out
    assert any(ln.strip().startswith("simulating:") for ln in lines), out  # the bar, as lines
    assert "simulator   started" in out
    running = lines.index("HFThot Research Lab demo is running in the background:")
    assert "token=SECRET" in lines[running + 1]  # the terminal gets the URL from the 0600 ready file
    log = (tmp_path / "data" / "logs" / "demo.log")
    assert "SECRET" not in log.read_text()
    assert log.stat().st_mode & 0o777 == 0o600
    assert os.environ.get(demo.BACKGROUND_ENV) is None  # only the detached child runs with it
    assert Path(tmp_path / "data" / "run" / "demo.ready").stat().st_mode & 0o777 == 0o600
