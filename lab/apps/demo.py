"""``lab demo``: start every service of the lab on this machine, supervise them, stop them all cleanly.

Foreground by default (Ctrl-C stops everything); ``--background`` detaches
and ``lab demo --stop`` (or ``make stop``) stops a background demo. Each
service's output goes to ``$LAB_DATA/logs/<name>.log``; the running set is
recorded in ``$LAB_DATA/run/demo.json`` (the pid file ``make stop`` uses).

Supervision (:class:`Supervisor`):

- every port is checked before anything starts (one line names the port and
  the flag / make variable that moves it);
- each service runs in its own process group with a parent-death signal
  (``PR_SET_PDEATHSIG``), so it stops whatever kills the supervisor
  (``make demo | tee log`` then Ctrl-C, ``kill -9``);
- every exit is reaped and reported with its code; a service that exits on
  its own is restarted with exponential backoff, and each restart is logged
  and written to ``feed_events`` (kind ``service_restart``, venue ``lab``,
  symbol the service), which the Feed health page shows;
- stopping sends SIGTERM to each service and waits (``--stop-timeout``,
  default 30 s) for it to flush; only a service still running then gets
  SIGKILL, and the supervisor says which and why.

Secrets: the Jupyter token reaches Jupyter through the environment
(``JUPYTER_TOKEN``), never its command line; ``run/jupyter_token`` and
``run/demo.ready`` (which holds the URL with the token) are mode 0600, and
in ``--background`` mode the log shows URLs without the token.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import functools
import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from lab.apps._project import project_dir
from lab.errors import ConfigError
from lab.lake import Lake, data_dir

HELP = "start every service for a local demo"
WRITES_DATA = True  # lake, logs and run files under $LAB_DATA (see lab.cli)

BIN = Path(sys.executable).parent
PR_SET_PDEATHSIG = 1
BACKGROUND_ENV = "LAB_DEMO_BACKGROUND"  # set for the detached supervisor: never log the token
# Jupyter lists each notebook once: the paired py:percent files stay out of its file browser.
JUPYTER_HIDE_GLOBS = ["__pycache__", "*.pyc", "*.pyo", ".DS_Store", "*~", ".ipynb_checkpoints", "*.py"]
SIM_VENUES = ("binance", "coinbase", "kraken")  # the demo's simulator (recorders/demo.toml): ports base+0..2


class Service(msgspec.Struct):
    """One supervised process: its command, what it needs, and how to tell it is up."""

    name: str
    argv: list[str]
    needs: str | None = None  # module (or file under the repo) that must exist
    port: int | None = None  # ready when this TCP port accepts
    url: str | None = None
    public_url: str | None = None  # ``url`` without secrets (for logs)
    env: dict[str, str] = msgspec.field(default_factory=dict)  # extra environment (secrets go here)


class PortCheck(msgspec.Struct, frozen=True):
    port: int
    what: str
    flag: str | None = None  # the `lab demo` flag that moves it
    make_var: str | None = None  # the `make demo` variable that moves it


def _lab(*args: str) -> list[str]:
    return [str(BIN / "lab"), *args]


def _sim_port_args(a: argparse.Namespace, *flags: str) -> list[str]:
    """Flags moving the simulator off its default ports (none at the default: the configs say 9443)."""
    base = getattr(a, "sim_port_base", 9443)
    return [] if base == 9443 else [*flags, str(base)]


def services(a: argparse.Namespace, token: str) -> list[Service]:
    root = project_dir()
    bus = f"ws://127.0.0.1:{a.bus_port}"
    svc_port = getattr(a, "service_port", 50053)
    out = [
        Service("simulator", _lab("simulate", "--venues", ",".join(SIM_VENUES),
                                  "--assets", "BTC,ETH,SOL", "--faults", "gentle",
                                  "--seed", str(a.seed), "--continue-ids",
                                  *_sim_port_args(a, "--port-base")),
                needs="lab.apps.simulate", port=getattr(a, "sim_port_base", 9443)),
        # The recorder hosts the live bus hub (--bus-serve) and publishes to it.
        Service("recorder", _lab("record", "--config", str(root / "recorders" / "demo.toml"),
                                 *_sim_port_args(a, "--sim", "--sim-port-base"),
                                 "--bus", bus, "--bus-serve"),
                needs="lab.apps.record", port=a.bus_port),
        Service("maintainer", _lab("maintain", "--every", "30"), needs="lab.apps.maintain"),
        Service("arbitrage", _lab("arbitrage", "--bus", bus, "--config", str(a.arbitrage_config)),
                needs="lab.apps.arbitrage"),
        Service("paper", _lab("paper", "mm", "-p", "venue=binance", "-p", "symbol=BTC-USDT",
                              "--fee", "binance=-0.0001,0.0005", "--bus", bus), needs="lab.apps.paper"),
        Service("risk", _lab("risk", "--bus", bus), needs="lab.apps.risk"),
        # The data service: the lake and live rows to other machines (token in run/service_token).
        Service("service", _lab("serve", "--port", str(svc_port), "--bus", bus), needs="lab.apps.serve",
                port=svc_port, url=f"grpc://127.0.0.1:{svc_port}",
                public_url=f"grpc://127.0.0.1:{svc_port}  (token: {data_dir() / 'run' / 'service_token'})"),
    ]
    if not a.no_jupyter:
        url = f"http://127.0.0.1:{a.jupyter_port}/lab"
        out.append(Service(
            "jupyter",
            # jupyter-lab itself, not the `jupyter` launcher: a signal to the launcher can
            # leave jupyter-lab serving. The token comes from JUPYTER_TOKEN, never argv.
            [str(BIN / "jupyter-lab"), "--ip", "127.0.0.1", "--port", str(a.jupyter_port),
             "--no-browser", "--allow-root", f"--ServerApp.root_dir={root / 'notebooks'}",
             *(f"--ContentsManager.hide_globs={g}" for g in JUPYTER_HIDE_GLOBS)],
            needs="jupyterlab", port=a.jupyter_port, url=f"{url}?token={token}",
            public_url=f"{url}  (token: {_token_file()})", env={"JUPYTER_TOKEN": token}))
    if not a.no_streamlit:
        out.append(Service(
            "streamlit",
            [str(BIN / "streamlit"), "run", str(root / "streamlit_apps" / "app.py"),
             "--server.address", "127.0.0.1", "--server.port", str(a.streamlit_port),
             "--server.headless", "true", "--browser.gatherUsageStats", "false",
             "--client.toolbarMode", "viewer", "--runner.postScriptGC", "false"],  # see .streamlit/config.toml
            needs="streamlit_apps/app.py", port=a.streamlit_port,
            url=f"http://127.0.0.1:{a.streamlit_port}"))
    return out


def port_checks(a: argparse.Namespace) -> list[PortCheck]:
    """Every port the demo will listen on, with the flag and make variable that moves it."""
    out = [PortCheck(a.sim_port_base + i, f"the exchange simulator ({v})", "--sim-port-base", "SIM_PORT_BASE")
           for i, v in enumerate(SIM_VENUES)]
    out.append(PortCheck(a.bus_port, "the live bus", "--bus-port", "BUS_PORT"))
    out.append(PortCheck(getattr(a, "service_port", 50053), "the data service", "--service-port", "SERVICE_PORT"))
    if not a.no_jupyter:
        out.append(PortCheck(a.jupyter_port, "Jupyter Lab", "--jupyter-port", "JUPYTER_PORT"))
    if not a.no_streamlit:
        out.append(PortCheck(a.streamlit_port, "Streamlit", "--streamlit-port", "STREAMLIT_PORT"))
    return out


def port_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:``port`` now (a listening socket there says no)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers do not count
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def check_ports(checks: list[PortCheck]) -> None:
    """Raise :class:`ConfigError` naming the first busy port and how to move it (before anything starts)."""
    seen: dict[int, str] = {}
    for c in checks:
        if c.port in seen:
            raise ConfigError(f"{c.what} and {seen[c.port]} both want port {c.port}: "
                              f"pass another with {c.flag} N (make demo {c.make_var}=N)")
        seen[c.port] = c.what
        if port_free(c.port):
            continue
        if c.flag:
            raise ConfigError(f"port {c.port} ({c.what}) is already in use: pass another with "
                              f"{c.flag} N (make demo {c.make_var}=N), or stop what holds it")
        raise ConfigError(f"port {c.port} ({c.what}) is already in use: stop what holds it "
                          f"(`make stop` stops a demo in the background; `ss -ltnp` names the process)")


def _available(s: Service) -> bool:
    if s.needs is None:
        return True
    if "/" in s.needs:
        return (project_dir() / s.needs).exists()
    try:
        return importlib.util.find_spec(s.needs) is not None
    except ModuleNotFoundError:
        return False


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _run_dir() -> Path:
    d = data_dir().resolve() / "run"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _token_file() -> Path:
    return _run_dir() / "jupyter_token"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600), atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def jupyter_token() -> str:
    """``$LAB_JUPYTER_TOKEN``, else the token in ``$LAB_DATA/run/jupyter_token`` (generated, 0600)."""
    env = os.environ.get("LAB_JUPYTER_TOKEN")
    if env:
        return env
    f = _token_file()
    if not f.exists() or not f.read_text().strip():
        write_private(f, secrets.token_hex(24))
    f.chmod(0o600)
    return f.read_text().strip()


def _parent_death_signal(supervisor: int) -> None:  # pragma: no cover - runs in the child before exec
    """preexec_fn: ask the kernel to SIGTERM this child when the supervisor dies, however it dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the process group and the pid file still stop it
    if os.getppid() != supervisor:  # the supervisor died before prctl took effect (works as PID 1 too)
        os.kill(os.getpid(), signal.SIGTERM)


def _open_log(path: Path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return os.fdopen(fd, "ab")


class Say:
    """Progress lines to stdout that never raise: ``make demo | tee log`` then Ctrl-C kills the
    reader first, and a supervisor that dies of EPIPE mid-stop would orphan its services."""

    def __init__(self) -> None:
        self.ok = True

    def __call__(self, text: str, err: bool = False) -> None:
        if not self.ok:
            return
        try:
            print(text, file=sys.stderr if err else sys.stdout, flush=True)
        except (BrokenPipeError, OSError, ValueError):
            self.ok = False
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.dup2(devnull, sys.stderr.fileno())
            except (OSError, ValueError):
                pass


class Proc:
    """A running service and its restart bookkeeping."""

    def __init__(self, svc: Service, popen: subprocess.Popen) -> None:
        self.svc, self.p = svc, popen
        self.started = time.monotonic()
        self.restarts = 0
        self.backoff_s = 0.0
        self.restart_at: float | None = None  # when a crashed service is due to start again


class Supervisor:
    """Start services, reap and report their exits, restart crashes with backoff, stop them gracefully.

    ``on_restart(name, detail)`` is called for every restart (the demo writes a
    ``feed_events`` row). ``state_file`` (``run/demo.json``) holds the
    supervisor's pid and every service's pid, for ``lab demo --stop``.
    """

    def __init__(self, svcs: list[Service], *, logs: Path, state_file: Path, env: dict[str, str],
                 cwd: Path, stop_timeout: float = 30.0, backoff_max: float = 60.0,
                 on_restart: Callable[[str, str], None] | None = None, say: Say | None = None) -> None:
        self.svcs, self.logs, self.state_file, self.env, self.cwd = svcs, logs, state_file, env, cwd
        self.stop_timeout, self.backoff_max = stop_timeout, backoff_max
        self.on_restart = on_restart
        self.say = say or Say()
        self.procs: dict[str, Proc] = {}
        self.stopping = False

    # -- state -------------------------------------------------------------------
    def _save(self) -> None:
        state = {"supervisor": os.getpid(), "services": {n: p.p.pid for n, p in self.procs.items()},
                 "restarts": {n: p.restarts for n, p in self.procs.items()}}
        write_private(self.state_file, json.dumps(state))

    def _spawn(self, s: Service) -> subprocess.Popen:
        log = _open_log(self.logs / f"{s.name}.log")
        try:
            return subprocess.Popen(s.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**self.env, **s.env}, cwd=str(self.cwd), start_new_session=True,
                                    preexec_fn=functools.partial(_parent_death_signal, os.getpid()))
        finally:
            log.close()

    # -- start -------------------------------------------------------------------
    def start(self, s: Service, wait_s: float = 60.0) -> bool:
        p = self._spawn(s)
        self.procs[s.name] = Proc(s, p)
        self._save()
        if s.port:
            deadline = time.monotonic() + wait_s
            while not _port_open(s.port) and p.poll() is None and time.monotonic() < deadline \
                    and not self.stopping:
                time.sleep(0.2)
        ok = p.poll() is None
        self.say(f"  {s.name:<11} {'started' if ok else 'FAILED'} (pid {p.pid}, log {self.logs / (s.name + '.log')})")
        return ok

    # -- watch -------------------------------------------------------------------
    def check(self) -> None:
        """Reap services that exited, report their code, restart them when due (with backoff)."""
        now = time.monotonic()
        for name, pr in self.procs.items():
            if pr.restart_at is not None:
                if now >= pr.restart_at and not self.stopping:
                    pr.restart_at = None
                    pr.p = self._spawn(pr.svc)
                    pr.started = now
                    self._save()
                    self.say(f"  {name:<11} restarted (pid {pr.p.pid}, restart {pr.restarts})")
                continue
            code = pr.p.poll()  # reaps: no zombie stays behind
            if code is None:
                if now - pr.started > self.backoff_max:
                    pr.backoff_s = 0.0  # up for a while: the next crash restarts quickly again
                continue
            pr.backoff_s = min(self.backoff_max, pr.backoff_s * 2 if pr.backoff_s else 1.0)
            pr.restarts += 1
            pr.restart_at = now + pr.backoff_s
            detail = (f"{name} exited with {code} after {now - pr.started:,.1f} s; restart {pr.restarts} "
                      f"in {pr.backoff_s:g} s (log {self.logs / (name + '.log')})")
            self.say(f"  {detail}")
            if self.on_restart is not None:
                try:
                    self.on_restart(name, detail)
                except Exception as e:  # noqa: BLE001 - recording the restart must not stop supervising
                    self.say(f"  (could not record the restart of {name}: {e})")

    def wait(self, poll_s: float = 0.25) -> None:
        while not self.stopping:
            self.check()
            time.sleep(poll_s)

    # -- stop --------------------------------------------------------------------
    def stop(self) -> dict[str, int | None]:
        """SIGTERM every service (last started first), reap each, SIGKILL only after ``stop_timeout``.

        Returns each service's exit code (negative: the signal that ended it).
        """
        self.stopping = True
        live = {n: pr for n, pr in self.procs.items() if pr.restart_at is None and pr.p.poll() is None}
        codes: dict[str, int | None] = {n: pr.p.returncode for n, pr in self.procs.items() if n not in live}
        for name, pr in reversed(list(live.items())):
            try:
                os.killpg(pr.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.stop_timeout
        pending = dict(live)
        while pending and time.monotonic() < deadline:
            for name, pr in list(pending.items()):
                code = pr.p.poll()
                if code is not None:
                    codes[name] = code
                    self.say(f"  {name:<11} exited with {code}")
                    del pending[name]
            time.sleep(0.05)
        for name, pr in pending.items():
            self.say(f"  {name:<11} still running {self.stop_timeout:g} s after SIGTERM: sending SIGKILL "
                     f"(it did not finish flushing; see {self.logs / (name + '.log')})")
            try:
                os.killpg(pr.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                codes[name] = pr.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                codes[name] = None
        for pr in self.procs.values():  # whatever else is left in each group (grandchildren)
            try:
                os.killpg(pr.p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return codes


def _record_restart(name: str, detail: str) -> None:
    """A ``feed_events`` row (kind ``service_restart``): the Feed health page lists it with the feeds'."""
    import polars as pl

    from lab.schema import table_spec

    row = {"ts_local": dt.datetime.now(dt.timezone.utc), "venue": "lab", "symbol": name,
           "kind": "service_restart", "detail": detail}
    Lake().append("feed_events", pl.DataFrame([row], schema=table_spec("feed_events").schema))


def banner(svcs: list[Service], *, secret: bool) -> list[str]:
    """The "demo is running" lines; ``secret=False`` (a log file) shows URLs without tokens."""
    out = ["", "HFThot Research Lab demo is running:"]
    out += [f"  {s.name:<11} {s.url if secret else (s.public_url or s.url)}" for s in svcs if s.url]
    out += [f"  data        {data_dir().resolve()}  (lab status: recorder health)",
            "Ctrl-C (or `make stop`) stops everything.", ""]
    return out


def _seed_history(minutes: int, seed: int, say: Say) -> None:
    lake = Lake()
    if minutes <= 0 or lake.exists("trades") or importlib.util.find_spec("recorders.sim.bulk") is None:
        return
    from recorders.sim.bulk import write_to_lake

    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    say(f"seeding {minutes} minutes of simulated history into {lake.root} ...")
    # Another seed than the live simulator's (another market path); the live simulator then
    # continues these trade ids (--continue-ids), so the tape has no false hole to backfill.
    write_to_lake(lake, start=now - dt.timedelta(minutes=minutes),
                  duration=dt.timedelta(minutes=minutes), seed=seed + 1, progress=True)
    say("seeded.")


def _stop_pids(pids: dict[str, int], timeout: float = 30.0, say: Say | None = None) -> None:
    """Stop services by pid (their process groups) when their supervisor is gone."""
    say = say or Say()
    for pid in pids.values():
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + timeout
    for name, pid in pids.items():
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except (ProcessLookupError, PermissionError):
                break
            time.sleep(0.1)
        else:
            try:
                os.killpg(pid, signal.SIGKILL)
                say(f"  {name}: still running {timeout:g} s after SIGTERM: sent SIGKILL")
            except (ProcessLookupError, PermissionError):
                pass


def supervise(a: argparse.Namespace) -> int:
    say = Say()
    background = os.environ.get(BACKGROUND_ENV) == "1"
    if a.seed is None:
        a.seed = int(time.time()) % 1_000_000
    run = _run_dir()
    logs = data_dir().resolve() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    state_file = run / "demo.json"
    if state_file.exists():
        try:
            old = json.loads(state_file.read_text())
        except ValueError:
            old = {}
        try:
            os.kill(old.get("supervisor", -1), 0)
            say(f"a demo is already running (pid {old['supervisor']}); `make stop` stops it", err=True)
            return 1
        except (ProcessLookupError, OverflowError, PermissionError):
            _stop_pids(old.get("services", {}), timeout=5, say=say)
            state_file.unlink(missing_ok=True)
    check_ports(port_checks(a))  # before seeding or starting anything
    token = jupyter_token()
    env = {**os.environ, "LAB_DATA": str(data_dir().resolve()), "PYTHONUNBUFFERED": "1",
           "LAB_ARBITRAGE_CONFIG": str(a.arbitrage_config)}
    env.pop("JUPYTER_TOKEN", None)  # only Jupyter gets it
    os.environ["LAB_DATA"] = env["LAB_DATA"]

    sup: Supervisor | None = None

    def on_signal(signum, frame):  # noqa: ARG001
        if sup is not None:
            sup.stopping = True
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        _seed_history(a.history_minutes, a.seed, say)
    except KeyboardInterrupt:
        say("stopped while seeding.")
        return 130
    svcs = services(a, token)
    sup = Supervisor(svcs, logs=logs, state_file=state_file, env=env, cwd=project_dir(),
                     stop_timeout=a.stop_timeout, on_restart=_record_restart, say=say)
    try:
        for s in svcs:
            if sup.stopping:
                break
            if not _available(s):
                say(f"  {s.name:<11} skipped (not installed)")
                continue
            sup.start(s)
        if not sup.stopping:
            shown = {s.name: s for s in svcs if s.url and s.name in sup.procs}
            write_private(run / "demo.ready", json.dumps({n: s.url for n, s in shown.items()}))
            for ln in banner(list(shown.values()), secret=not background):
                say(ln)
        sup.wait()
    finally:
        say("stopping the demo ...")
        codes = sup.stop()
        state_file.unlink(missing_ok=True)
        (run / "demo.ready").unlink(missing_ok=True)
        killed = [n for n, c in codes.items() if c == -signal.SIGKILL]
        say("stopped." if not killed else f"stopped ({', '.join(killed)} had to be killed).")
    return 0


def stop(timeout: float = 60.0) -> int:
    f = _run_dir() / "demo.json"
    if not f.exists():
        print("no demo is running")
        return 0
    try:
        st = json.loads(f.read_text())
    except ValueError:
        st = {}
    try:
        os.kill(st.get("supervisor", -1), signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while f.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    except (ProcessLookupError, OverflowError, PermissionError):
        pass
    if f.exists():  # supervisor gone or stuck: stop the services ourselves
        _stop_pids(st.get("services", {}))
        f.unlink(missing_ok=True)
    print("demo stopped")
    return 0


def _progress_lines(chunk: str) -> list[str]:
    """Lines of the supervisor's log; a progress bar's ``\\r`` updates count as lines."""
    return [x.strip() for x in chunk.replace("\r", "\n").split("\n") if x.strip()]


def background(argv: list[str]) -> int:
    """Start the supervisor detached; print its progress from its log, then the URLs (from 0600 demo.ready)."""
    logs = data_dir().resolve() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    ready = _run_dir() / "demo.ready"
    ready.unlink(missing_ok=True)
    log_path = logs / "demo.log"
    log = _open_log(log_path)
    offset = log_path.stat().st_size
    env = {**os.environ, BACKGROUND_ENV: "1", "LAB_DATA": str(data_dir().resolve())}
    p = subprocess.Popen([str(BIN / "lab"), "demo", *argv], stdout=log, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True, env=env)
    log.close()
    deadline = time.monotonic() + 600
    last_bar = 0.0

    def follow() -> None:
        nonlocal offset, last_bar
        with open(log_path, errors="replace") as f:
            f.seek(offset)
            chunk = f.read()
        cut = max(chunk.rfind("\n"), chunk.rfind("\r"))
        if cut < 0:
            return
        offset += len(chunk[:cut + 1].encode())
        for ln in _progress_lines(chunk[:cut + 1]):
            if ln.startswith("simulating"):  # the seed's progress bar: one line every few seconds
                if time.monotonic() - last_bar < 5:
                    continue
                last_bar = time.monotonic()
            print(f"  {ln}" if not ln.startswith("  ") else ln, flush=True)

    while not ready.exists() and p.poll() is None and time.monotonic() < deadline:
        follow()
        time.sleep(0.3)
    follow()
    if not ready.exists():
        print(f"the demo did not come up; see {log_path}", file=sys.stderr)
        return 1
    print("HFThot Research Lab demo is running in the background:")
    for name, url in json.loads(ready.read_text()).items():
        print(f"  {name:<11} {url}")
    print(f"  logs        {logs}\n`make stop` stops it.")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--background", action="store_true",
                   help="detach (progress and URLs printed, output in $LAB_DATA/logs/demo.log); "
                        "`lab demo --stop` stops it")
    p.add_argument("--stop", action="store_true", help="stop a demo running in the background")
    p.add_argument("--seed", type=int, default=None,
                   help="simulator seed (default: a new one each run, so trade ids never repeat "
                        "those already in the lake, as on a real venue)")
    p.add_argument("--history-minutes", type=int, default=60,
                   help="on an empty lake, first write this much simulated history (0: none)")
    p.add_argument("--no-jupyter", action="store_true", help="do not start Jupyter Lab")
    p.add_argument("--no-streamlit", action="store_true", help="do not start Streamlit")
    p.add_argument("--jupyter-port", type=int, default=8888,
                   help="Jupyter Lab's port on 127.0.0.1 (make demo JUPYTER_PORT=N)")
    p.add_argument("--streamlit-port", type=int, default=8501,
                   help="Streamlit's port on 127.0.0.1 (make demo STREAMLIT_PORT=N)")
    p.add_argument("--bus-port", type=int, default=50052,
                   help="the live bus's port on 127.0.0.1 (make demo BUS_PORT=N)")
    p.add_argument("--service-port", type=int, default=50053,
                   help="the data service's (lab serve) port on 127.0.0.1 (make demo SERVICE_PORT=N)")
    p.add_argument("--sim-port-base", type=int, default=9443,
                   help="first of the simulator's three ports (binance, coinbase, kraken) on 127.0.0.1 "
                        "(make demo SIM_PORT_BASE=N)")
    p.add_argument("--arbitrage-config", type=Path, default=None,
                   help="the arbitrage detector's config (default config/arbitrage.demo.toml); the "
                        "Arbitrage monitor page reads the same file (LAB_ARBITRAGE_CONFIG)")
    p.add_argument("--stop-timeout", type=float, default=30.0,
                   help="seconds each service gets to flush and exit after SIGTERM before SIGKILL")


def run(a: argparse.Namespace) -> int:
    if a.stop:
        return stop()
    if a.arbitrage_config is None:
        a.arbitrage_config = project_dir() / "config" / "arbitrage.demo.toml"
    a.arbitrage_config = Path(a.arbitrage_config).resolve()
    if a.background:
        check_ports(port_checks(a))  # say it here, on the terminal, not in the log
        argv = [x for x in sys.argv[2:] if x != "--background"]
        return background(argv)
    if not (BIN / "lab").exists():
        raise ConfigError("the `lab` script is not installed next to this Python; run `make setup`")
    return supervise(a)
