"""The two-command setup's own files: they parse and agree with each other."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_lock_pins_every_declared_dependency():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[<>=\[ ]", d)[0].lower() for d in deps["dependencies"] + deps["optional-dependencies"]["test"]]
    pinned = {ln.split("==")[0].lower() for ln in (ROOT / "requirements.lock").read_text().splitlines()
              if "==" in ln and not ln.startswith("#")}
    missing = [n for n in names if n not in pinned]
    assert not missing, f"not pinned in requirements.lock (run `make lock`): {missing}"


def test_environment_yml_installs_the_lock_and_the_project():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-r requirements.lock" in pip and "-e ." in pip


def test_docker_compose_parses_and_keeps_every_service_on_loopback():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"simulator", "recorder", "jupyter", "streamlit", "reports"} <= set(services)
    for name, svc in services.items():
        cmd = " ".join(svc["command"])
        assert "0.0.0.0" not in cmd, name
        ports = svc.get("ports", [])
        assert svc.get("network_mode") == "host" or all(str(p).startswith("127.0.0.1:") for p in ports), name
    assert "--port 8888" in " ".join(services["jupyter"]["command"])
    assert "IdentityProvider.token" in " ".join(services["jupyter"]["command"])
    assert "--server.port 8501" in " ".join(services["streamlit"]["command"])
    assert "--bus-serve" in services["recorder"]["command"]


def test_makefile_has_the_two_commands_and_ci_calls_make_test():
    mk = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", mk, re.M) and re.search(r"^test:", mk, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_available_subcommand_has_help():
    # One fresh interpreter builds every subcommand's parser (imports included).
    code = (
        "import sys\n"
        "from lab.cli import COMMANDS, _load, build_parser\n"
        "for name in COMMANDS:\n"
        "    if _load(name) is None: continue\n"
        "    h = build_parser(only=name)._subparsers._group_actions[0].choices[name].format_help()\n"
        "    assert h.startswith('usage: lab ' + name), (name, h[:200])\n"
        "    print(name)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert {"maintain", "demo"} <= set(out.stdout.split())


def test_unknown_subcommand_is_a_clear_error():
    out = subprocess.run([sys.executable, "-m", "lab.cli", "recrod"], capture_output=True, text=True)
    assert out.returncode == 2 and "invalid choice: 'recrod'" in out.stderr
