"""``lab serve`` as a user runs it: a process, a generated 0600 token file, a client elsewhere."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

from svchelp import run_client

LAB = str(Path(sys.executable).with_name("lab"))


def test_lab_serve_generates_a_private_token_and_answers_a_client_in_another_process(seed_lake, tmp_path):
    data = tmp_path / "data"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LAB_SERVICE")}, "LAB_DATA": str(data)}
    p = subprocess.Popen([LAB, "serve", "--lake", str(seed_lake.root), "--port", "0", "--bus", "none"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = p.stdout.readline()
        m = re.search(r"data service on (grpc://127\.0\.0\.1:\d+)", line)
        assert m, (line, p.stderr.read() if p.poll() is not None else "")
        url = m.group(1)
        tok_file = data / "run" / "service_token"
        assert stat.S_IMODE(tok_file.stat().st_mode) == 0o600
        token = tok_file.read_text().strip()
        assert token and token not in line  # the token itself is never printed
        got = run_client(f'''
            import lab
            con = lab.connect("{url}")      # token from $LAB_DATA/run/service_token
            print(json.dumps(con.sql("select count(*) from trades").fetchall()))
        ''', env={"LAB_DATA": str(data)})
        assert got == [[2000]]
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            assert p.wait(30) == 0
        finally:
            if p.poll() is None:
                p.kill()


def test_lab_serve_refuses_half_a_tls_pair(tmp_path):
    p = subprocess.run([LAB, "serve", "--port", "0", "--tls-cert", str(tmp_path / "c.pem")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert p.stderr.strip() == "lab serve: --tls-cert and --tls-key go together"
