"""``lab schedule``: run reports on a cron-like schedule, in the foreground.

An alternative to cron or a systemd timer that needs nothing but the lab
(and the ``reports`` service of docker-compose). Jobs come from a TOML file
(default ``config/schedule.toml``)::

    [[job]]
    report = "daily_market_report"   # a notebook under notebooks/reports (or a path)
    cron = "15 0 * * *"              # UTC; 5 fields, or 6 with seconds last
    date = "yesterday"               # the report's --date: today, yesterday, today-N
    params = { venues = ["binance", "coinbase", "kraken"] }
    # lake = "data/lake"  out = "reports"  timeout = 600  name = "daily"  html = true

Each run is ``lab report`` in a child process (a failing report is logged and
the schedule goes on). Runs are sequential; a run that overlaps the next
fire time is not repeated (the next fire time is taken after it ends), and
fire times missed while the scheduler was down are not caught up.

>>> j = Job(report="daily_market_report", cron="15 0 * * *")
>>> import datetime as dt
>>> next_fire(j, dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.timezone.utc)).isoformat()
'2026-11-23T00:15:00+00:00'
>>> resolve_date("yesterday", dt.datetime(2026, 11, 23, 0, 15, tzinfo=dt.timezone.utc))
'2026-11-22'
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from lab.apps._project import project_dir
from lab.errors import ConfigError

HELP = "run configured reports on a cron-like schedule"

__all__ = ["Job", "ScheduleConfig", "ScheduleError", "load_schedule", "next_fire", "resolve_date",
           "report_command", "Scheduler", "add_arguments", "run"]

UTC = dt.timezone.utc


class ScheduleError(ConfigError):
    """A schedule file or job that cannot work (names the bad job or field)."""


class Job(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    report: str
    cron: str
    date: str = "yesterday"
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    lake: str | None = None
    out: str | None = None
    timeout: float | None = None
    name: str | None = None
    html: bool = True

    @property
    def label(self) -> str:
        return self.name or Path(self.report).stem


class ScheduleConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    job: list[Job] = msgspec.field(default_factory=list)


_DATE = re.compile(r"^(today|yesterday)(?:\s*-\s*(\d+))?$|^\d{4}-\d{2}-\d{2}$")


def resolve_date(spec: str, now: dt.datetime) -> str:
    """The report date for a run at ``now``: ``today``, ``yesterday``, ``today-N``
    (days back) or a fixed ``YYYY-MM-DD``.

    >>> now = dt.datetime(2026, 11, 23, 0, 15, tzinfo=dt.timezone.utc)
    >>> resolve_date("today", now), resolve_date("today-3", now), resolve_date("2026-01-02", now)
    ('2026-11-23', '2026-11-20', '2026-01-02')
    """
    m = _DATE.match(spec.strip())
    if not m:
        raise ScheduleError(f"date {spec!r}: expected today, yesterday, today-N or YYYY-MM-DD")
    if m.group(1) is None:
        return spec.strip()
    back = (1 if m.group(1) == "yesterday" else 0) + int(m.group(2) or 0)
    return (now.astimezone(UTC).date() - dt.timedelta(days=back)).isoformat()


def next_fire(job: Job, after: dt.datetime) -> dt.datetime:
    """The first fire time of ``job`` strictly after ``after`` (UTC)."""
    from croniter import croniter

    return croniter(job.cron, after.astimezone(UTC)).get_next(dt.datetime).astimezone(UTC)


def load_schedule(path: str | os.PathLike[str]) -> ScheduleConfig:
    """Read and check a schedule file (cron expressions, dates, report names)."""
    from croniter import croniter

    from lab.apps.report import ReportError, report_path

    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ScheduleError(f"schedule file {p} not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ScheduleError(f"{p}: invalid TOML: {e}") from None
    try:
        cfg = msgspec.convert(raw, ScheduleConfig)
    except msgspec.ValidationError as e:
        raise ScheduleError(f"{p}: {e}") from None
    if not cfg.job:
        raise ScheduleError(f"{p}: no [[job]] entries")
    for i, j in enumerate(cfg.job):
        where = f"{p}: job {i + 1} ({j.label})"
        if not croniter.is_valid(j.cron):
            raise ScheduleError(f"{where}: invalid cron {j.cron!r} (5 fields 'min hour day month weekday', "
                                "or 6 with seconds last)")
        try:
            resolve_date(j.date, dt.datetime.now(UTC))
            if not Path(j.report).suffix:
                report_path(j.report)
        except (ScheduleError, ReportError) as e:
            raise ScheduleError(f"{where}: {e}") from None
    return cfg


def report_command(job: Job, date: str) -> list[str]:
    """The ``lab report`` command line a job runs for ``date``.

    >>> report_command(Job(report="r", cron="* * * * *", params={"venues": ["a", "b"]}), "2026-01-01")[3:]
    ['report', 'r', '--date', '2026-01-01', '--no-progress', '-p', 'venues', '["a", "b"]']
    """
    import json

    cmd = [sys.executable, "-m", "lab.cli", "report", job.report, "--date", date, "--no-progress"]
    for k, v in job.params.items():
        cmd += ["-p", k, v if isinstance(v, str) else json.dumps(v)]
    if job.lake:
        cmd += ["--lake", job.lake]
    if job.out:
        cmd += ["--out", job.out]
    if job.timeout:
        cmd += ["--timeout", str(job.timeout)]
    if not job.html:
        cmd.append("--no-html")
    return cmd


def _subprocess_runner(job: Job, date: str) -> int:
    return subprocess.run(report_command(job, date), check=False).returncode


class Scheduler:
    """Fire each job at its cron times; ``runner(job, date) -> exit code`` does the work.

    ``clock`` and ``sleep`` are injectable (tests drive a fake clock).
    """

    def __init__(self, jobs: Sequence[Job], *, runner: Callable[[Job, str], int] | None = None,
                 clock: Callable[[], dt.datetime] | None = None,
                 sleep: Callable[[float], None] | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.jobs = list(jobs)
        self.runner = runner or _subprocess_runner
        self.clock = clock or (lambda: dt.datetime.now(UTC))
        self.sleep = sleep or time.sleep
        self.log = log or (lambda msg: print(msg, flush=True))
        self.history: list[tuple[str, str, dt.datetime, int]] = []  # (job, date, fired at, rc)

    def run(self, *, max_runs: int | None = None, until: dt.datetime | None = None) -> int:
        """Run until interrupted, ``max_runs`` runs, or ``until``; returns the number of failed runs."""
        now = self.clock()
        due = {i: next_fire(j, now) for i, j in enumerate(self.jobs)}
        for i, j in enumerate(self.jobs):
            self.log(f"[schedule] {j.label}: cron {j.cron!r}, next run {due[i]:%Y-%m-%d %H:%M:%S} UTC")
        failed = runs = 0
        while max_runs is None or runs < max_runs:
            i = min(due, key=lambda k: due[k])
            when = due[i]
            if until is not None and when > until:
                break
            wait = (when - self.clock()).total_seconds()
            while wait > 0:
                self.sleep(min(wait, 60.0))
                wait = (when - self.clock()).total_seconds()
            job = self.jobs[i]
            date = resolve_date(job.date, when)
            self.log(f"[schedule] {when:%Y-%m-%d %H:%M:%S} running {job.label} for {date}")
            t0 = time.monotonic()
            try:
                rc = int(self.runner(job, date))
            except Exception as e:  # noqa: BLE001 - one bad run must not stop the schedule
                self.log(f"[schedule] {job.label}: {type(e).__name__}: {e}")
                rc = 1
            runs += 1
            failed += rc != 0
            self.history.append((job.label, date, when, rc))
            self.log(f"[schedule] {job.label} for {date}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} "
                     f"in {time.monotonic() - t0:.1f} s")
            due[i] = next_fire(job, max(self.clock(), when))
        return failed


# --------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Run the reports configured in a TOML schedule (cron expressions in UTC) in the "
                     "foreground, each as `lab report` in a child process; a failed run is logged and "
                     "the schedule continues. Stop with Ctrl-C. An alternative to cron/systemd timers.")
    p.add_argument("--config", default=None,
                   help="schedule file with [[job]] entries (report, cron, date, params, lake, out, timeout, "
                   "name, html); default: config/schedule.toml of the project")
    p.add_argument("--list", type=int, nargs="?", const=5, default=None, metavar="N",
                   help="print each job's next N fire times (default 5) and exit")
    p.add_argument("--once", action="store_true",
                   help="run every job once now (its date resolved for now) and exit")
    p.add_argument("--max-runs", type=int, default=None, help="exit after this many report runs")


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_schedule(args.config or project_dir() / "config" / "schedule.toml")
    except ScheduleError as e:
        print(f"lab schedule: {e}", file=sys.stderr)
        return 2
    now = dt.datetime.now(UTC)
    if args.list is not None:
        for j in cfg.job:
            t = now
            times = []
            for _ in range(args.list):
                t = next_fire(j, t)
                times.append(f"{t:%Y-%m-%d %H:%M:%S} (date {resolve_date(j.date, t)})")
            print(f"{j.label}: {j.cron!r}\n  " + "\n  ".join(times))
        return 0
    if args.once:
        failed = sum(_subprocess_runner(j, resolve_date(j.date, now)) != 0 for j in cfg.job)
        return 1 if failed else 0
    try:
        failed = Scheduler(cfg.job).run(max_runs=args.max_runs)
    except KeyboardInterrupt:
        return 0
    return 1 if failed else 0
