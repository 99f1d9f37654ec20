"""`lab schedule`: cron times, date resolution, the run loop on a fake clock,
config errors naming the job, and one real scheduled `lab report` run."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lab.apps.schedule import Job, ScheduleError, Scheduler, load_schedule, next_fire, resolve_date
from tests.notebooks.conftest import ROOT

UTC = dt.timezone.utc


class FakeClock:
    def __init__(self, t: dt.datetime) -> None:
        self.t = t
        self.slept = 0.0

    def now(self) -> dt.datetime:
        return self.t

    def sleep(self, s: float) -> None:
        assert s > 0
        self.slept += s
        self.t += dt.timedelta(seconds=s)


def test_cron_fire_times_are_hand_checked() -> None:
    daily = Job(report="r", cron="15 0 * * *")
    t = dt.datetime(2026, 11, 22, 0, 15, tzinfo=UTC)  # exactly at a fire time: the next one
    assert next_fire(daily, t) == dt.datetime(2026, 11, 23, 0, 15, tzinfo=UTC)
    weekdays = Job(report="r", cron="0 6 * * 1-5")  # 2026-11-21 is a Saturday
    assert next_fire(weekdays, dt.datetime(2026, 11, 21, 12, tzinfo=UTC)) == dt.datetime(2026, 11, 23, 6, tzinfo=UTC)
    assert resolve_date("yesterday", dt.datetime(2026, 3, 1, 0, 15, tzinfo=UTC)) == "2026-02-28"
    with pytest.raises(ScheduleError, match="today-N"):
        resolve_date("last week", t)


def test_scheduler_fires_each_job_at_its_times_on_a_fake_clock() -> None:
    clock = FakeClock(dt.datetime(2026, 11, 22, 10, 30, tzinfo=UTC))
    calls: list[tuple[str, str, dt.datetime]] = []

    def runner(job: Job, date: str) -> int:
        calls.append((job.label, date, clock.now()))
        clock.t += dt.timedelta(minutes=2)  # a report takes two minutes
        return 1 if job.label == "bad" else 0

    jobs = [Job(report="r", cron="0 * * * *", date="today", name="hourly"),
            Job(report="r", cron="45 10 * * *", date="yesterday", name="bad")]
    s = Scheduler(jobs, runner=runner, clock=clock.now, sleep=clock.sleep, log=lambda m: None)
    failed = s.run(max_runs=4)

    assert [(n, d, t.strftime("%H:%M")) for n, d, t in calls] == [
        ("bad", "2026-11-21", "10:45"), ("hourly", "2026-11-22", "11:00"),
        ("hourly", "2026-11-22", "12:00"), ("hourly", "2026-11-22", "13:00")]
    assert failed == 1 and [h[3] for h in s.history] == [1, 0, 0, 0]


def test_scheduler_does_not_repeat_a_run_that_overlaps_its_next_time() -> None:
    clock = FakeClock(dt.datetime(2026, 11, 22, 10, 59, 30, tzinfo=UTC))
    fired: list[str] = []

    def slow(job: Job, date: str) -> int:
        fired.append(clock.now().strftime("%H:%M:%S"))
        clock.t += dt.timedelta(minutes=2, seconds=30)  # overruns the 11:01 and 11:02 slots
        return 0

    Scheduler([Job(report="r", cron="* * * * *")], runner=slow, clock=clock.now, sleep=clock.sleep,
              log=lambda m: None).run(max_runs=2)
    assert fired == ["11:00:00", "11:03:00"]


def test_bad_schedule_files_name_the_job(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text('[[job]]\nreport = "daily_market_report"\ncron = "61 * * * *"\n')
    with pytest.raises(ScheduleError, match=r"job 1 \(daily_market_report\): invalid cron '61"):
        load_schedule(f)
    f.write_text('[[job]]\nreport = "nope"\ncron = "* * * * *"\n')
    with pytest.raises(ScheduleError, match="no report named 'nope'"):
        load_schedule(f)
    f.write_text('[[job]]\nreport = "daily_market_report"\ncron = "* * * * *"\ncolour = 1\n')
    with pytest.raises(ScheduleError, match="colour"):
        load_schedule(f)
    assert load_schedule(ROOT / "config" / "schedule.toml").job[0].report == "daily_market_report"


def test_lab_schedule_runs_a_report_in_the_foreground(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# tiny"),
                nbformat.v4.new_code_cell("date = None\nword = 'x'", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("print(date, word * 3)")]
    nbformat.write(nb, tmp_path / "tiny.ipynb")
    (tmp_path / "s.toml").write_text(
        f'[[job]]\nreport = "{tmp_path / "tiny.ipynb"}"\ncron = "* * * * * *"\ndate = "today"\n'
        f'out = "{tmp_path / "out"}"\nhtml = false\nparams = {{ word = "ab" }}\n')
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "lab.cli", "schedule", "--config", str(tmp_path / "s.toml"),
                        "--max-runs", "1"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    today = [p for p in (tmp_path / "out" / "tiny").glob("*.ipynb")]
    assert len(today) == 1 and not today[0].with_suffix(".html").exists()
    out = nbformat.read(today[0], as_version=4)
    assert f"{today[0].stem} ababab" in out.cells[-1].outputs[0]["text"]
    assert "tiny for" in r.stdout and "ok in" in r.stdout
