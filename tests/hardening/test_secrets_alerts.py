"""Webhook URLs are secrets (issue 15, "Secrets"): they come from the environment and
are never printed or logged beyond their scheme and host."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import logging
import subprocess
import sys
import threading

import pytest
from bus_fixtures import ROOT

from lab.alerts import Alert, make_sink, make_sinks
from lab.errors import ConfigError

SECRET = "T0SECRET/B0SECRET/xoxb-123456"


@pytest.fixture
def hook_server():
    """A local webhook endpoint: 200 on /ok/..., 500 elsewhere; records what it got."""
    got: list[tuple[str, dict]] = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            got.append((self.path, body))
            self.send_response(200 if self.path.startswith("/ok/") else 500)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    srv.got = got
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()


def _alert() -> Alert:
    return Alert(ts=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), source="risk", kind="breach",
                 key="limit:x", message="over")


def test_the_webhook_sink_reads_its_url_from_the_environment(hook_server, monkeypatch):
    monkeypatch.setenv("LAB_ALERT_WEBHOOK", f"{hook_server.base}/ok/{SECRET}")
    monkeypatch.setenv("MY_HOOK", f"{hook_server.base}/ok/other")
    sinks = make_sinks(["webhook", "webhook:env:MY_HOOK"])
    for s in sinks:
        s.emit(_alert())
        s.close()
    assert sorted(p for p, _ in hook_server.got) == sorted([f"/ok/{SECRET}", "/ok/other"])
    assert all(b["key"] == "limit:x" for _, b in hook_server.got)
    assert SECRET not in repr(sinks)


def test_a_missing_webhook_variable_names_the_variable_only(monkeypatch):
    monkeypatch.delenv("LAB_ALERT_WEBHOOK", raising=False)
    with pytest.raises(ConfigError, match="LAB_ALERT_WEBHOOK is not set"):
        make_sink("webhook")
    with pytest.raises(ConfigError, match="NOPE_HOOK is not set"):
        make_sink("webhook:env:NOPE_HOOK")


def test_a_failing_webhook_is_logged_without_its_url(hook_server, caplog):
    caplog.set_level(logging.ERROR, logger="lab.alerts")
    s = make_sink(f"webhook:{hook_server.base}/fail/{SECRET}")
    s.retries = 0
    s.emit(_alert())
    s.close()
    msgs = [r.getMessage() for r in caplog.records]
    assert s.failed == 1 and len(msgs) == 1
    assert "HTTP 500" in msgs[0] and "127.0.0.1" in msgs[0]
    assert SECRET not in msgs[0] and "/fail/" not in msgs[0]


def test_a_bad_webhook_spec_error_does_not_echo_the_url():
    with pytest.raises(ConfigError) as e:
        make_sink(f"webhook:ftp://files.example.com/{SECRET}")
    assert SECRET not in str(e.value)


@pytest.mark.parametrize("app", ["arbitrage", "risk"])
def test_the_services_never_print_a_webhook_url(tmp_path, app, lab_data):
    lake = tmp_path / "lake"
    args = [sys.executable, "-m", "lab.cli", app, "--alerts", f"log,webhook:https://hooks.example.com/{SECRET}",
            "--lake", str(lake), "--no-write", "--duration", "0.5", "--bus", "ws://127.0.0.1:9"]
    if app == "arbitrage":
        args += ["--replay"]
    else:
        args += ["--no-paper", "--every", "0.2"]
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "webhook:https://hooks.example.com/…" in text  # says which sink, not its secret
    assert SECRET not in text
