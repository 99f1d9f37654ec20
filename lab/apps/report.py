"""``lab report``: papermill reports: ``lab report NAME --date D [-p key value ...]``.

A report is a notebook under ``notebooks/reports/<name>.ipynb`` (paired with
``<name>.py`` by jupytext) with a cell tagged ``parameters``. Running it
executes the notebook with papermill into ``<out>/<name>/<date>.ipynb`` and
renders a self-contained HTML page ``<out>/<name>/<date>.html`` (code cells
hidden, plotly.js embedded once, no script or stylesheet fetched from the
network). ``<out>`` is ``--out``, else ``$LAB_REPORTS``, else ``./reports``.

When a cell fails, :class:`ReportError` names the cell (its index, execution
count and first source line) and the exception; the failed notebook and its
HTML are still written so the traceback can be read in place.

The tables and display helpers the notebooks call are in :mod:`lab.reports`.

>>> parse_param("venues", "[binance, kraken]")
('venues', ['binance', 'kraken'])
>>> parse_param("window", "30")
('window', 30)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

import msgspec

from lab.apps._project import project_dir
from lab.errors import LabError

HELP = "run a papermill report to HTML"

__all__ = ["ReportError", "ReportResult", "report_path", "available_reports", "run_report", "run_reports",
           "date_range", "render_html", "parse_param", "add_arguments", "run"]



def reports_dir() -> Path:
    """``notebooks/reports`` of the project (see :mod:`lab.apps._project`)."""
    return project_dir() / "notebooks" / "reports"


class ReportError(LabError):
    """A report could not be found, or one of its cells failed."""


class ReportResult(msgspec.Struct, frozen=True):
    name: str
    date: str
    notebook: str  # the executed .ipynb
    html: str | None  # the rendered page (None with html=False)
    seconds: float


# --------------------------------------------------------------------------- locating
def available_reports() -> list[str]:
    """Names of the reports under ``notebooks/reports``."""
    REPORTS = reports_dir()
    names = {p.stem for p in REPORTS.glob("*.ipynb")} | {p.stem for p in REPORTS.glob("*.py")}
    return sorted(n for n in names if not n.startswith(("_", ".")))


def report_path(name: str) -> Path:
    """The notebook of report ``name`` (or ``name`` itself if it is a notebook path).

    A report that only exists as a jupytext ``.py`` file is converted to a
    notebook next to it first.
    """
    p = Path(name)
    if p.suffix in (".ipynb", ".py") and p.exists():
        cand = p
    else:
        REPORTS = reports_dir()
        cand = REPORTS / f"{name}.ipynb"
        if not cand.exists() and (REPORTS / f"{name}.py").exists():
            cand = REPORTS / f"{name}.py"
    if not cand.exists():
        known = ", ".join(available_reports()) or "none"
        raise ReportError(f"no report named {name!r} (looked for {REPORTS / (name + '.ipynb')}); "
                          f"available: {known}")
    if cand.suffix == ".py":
        import jupytext

        nb = jupytext.read(cand)
        out = cand.with_suffix(".ipynb")
        jupytext.write(nb, out)
        cand = out
    return cand


# --------------------------------------------------------------------------- parameters
def parse_param(key: str, value: str) -> tuple[str, Any]:
    """``-p key value``: the value is read as YAML (numbers, lists, true/false, null), else text."""
    import yaml

    if not key.isidentifier():
        raise ReportError(f"parameter name {key!r} is not a Python identifier")
    try:
        v = yaml.safe_load(value)
    except yaml.YAMLError:
        v = value
    if isinstance(v, (dt.date, dt.datetime)):
        v = value  # keep dates as the text given (notebooks parse them)
    return key, v


def _check_date(date: str) -> str:
    """``YYYY-MM-DD``, or ``today``, ``yesterday``, ``today-N`` (UTC) resolved to one.

    >>> _check_date("2026-11-22")
    '2026-11-22'
    """
    from lab.apps.schedule import ScheduleError, resolve_date

    try:
        day = resolve_date(str(date), dt.datetime.now(dt.timezone.utc))
        return dt.date.fromisoformat(day).isoformat()
    except (ValueError, ScheduleError):
        raise ReportError(f"--date {date!r}: expected YYYY-MM-DD, today, yesterday or today-N") from None


# --------------------------------------------------------------------------- running
def _failing_cell(nb_path: Path, e: Exception) -> str:
    idx = getattr(e, "cell_index", None)
    count = getattr(e, "exec_count", None)
    src = (getattr(e, "source", "") or "").strip().splitlines()
    first = src[0] if src else ""
    ename = getattr(e, "ename", type(e).__name__)
    evalue = getattr(e, "evalue", str(e))
    return (f"cell {idx} (execution count {count}, first line: {first!r}) failed with "
            f"{ename}: {evalue}")


def run_report(
    name: str,
    date: str | dt.date,
    params: dict[str, Any] | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    lake: str | os.PathLike[str] | None = None,
    html: bool = True,
    progress: bool = True,
    timeout: float | None = None,
    kernel: str | None = None,
) -> ReportResult:
    """Execute report ``name`` for ``date`` and render it; return the output paths.

    ``params`` are injected after the notebook's ``parameters`` cell, with
    ``date`` (ISO text) and ``lake`` (when given) added. ``timeout`` is per
    cell (seconds, None = no limit).
    """
    import time

    from lab.plots import _skip_slow_jsonschema_extras

    _skip_slow_jsonschema_extras()
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    t0 = time.perf_counter()
    src = report_path(name)
    day = _check_date(str(date))
    stem = Path(name).stem
    out_dir = Path(out if out is not None else os.environ.get("LAB_REPORTS", "reports")) / stem
    out_dir.mkdir(parents=True, exist_ok=True)
    nb_out = out_dir / f"{day}.ipynb"
    html_out = out_dir / f"{day}.html"
    p = dict(params or {})
    p["date"] = day
    # Absolute: the kernel runs in notebooks/reports, where a relative ./data is another folder.
    from lab.lake import default_lake

    p["lake"] = str(Path(lake).resolve() if lake is not None else default_lake().root.resolve())
    failure: Exception | None = None
    try:
        pm.execute_notebook(str(src), str(nb_out), parameters=p, progress_bar=progress,
                            cwd=str(src.parent), execution_timeout=timeout, kernel_name=kernel,
                            log_output=False, report_mode=False)
    except PapermillExecutionError as e:
        if e.ename == "DataError":  # nothing to report on: say so, leave no empty page behind
            nb_out.unlink(missing_ok=True)
            html_out.unlink(missing_ok=True)
            raise ReportError(f"report {stem} for {day}: {e.evalue}") from None
        failure = e
    if html or failure is not None:
        render_html(nb_out, html_out, title=f"{stem} {day}")
    if failure is not None:
        raise ReportError(f"report {stem} for {day}: {_failing_cell(src, failure)}; "
                          f"see {nb_out} and {html_out}") from failure
    return ReportResult(stem, day, str(nb_out), str(html_out) if html else None,
                        time.perf_counter() - t0)


def date_range(first: str, last: str) -> list[str]:
    """Every day from ``first`` to ``last``, both included (each as :func:`_check_date` reads it).

    >>> date_range("2026-11-29", "2026-12-01")
    ['2026-11-29', '2026-11-30', '2026-12-01']
    """
    a, b = dt.date.fromisoformat(_check_date(first)), dt.date.fromisoformat(_check_date(last))
    if b < a:
        raise ReportError(f"--until {b} is before --date {a}")
    return [(a + dt.timedelta(days=k)).isoformat() for k in range((b - a).days + 1)]


def _report_task(name: str, day: str, params: dict[str, Any] | None, out: str | None, lake: str | None,
                 html: bool, timeout: float | None, kernel: str | None) -> ReportResult:
    return run_report(name, day, params, out=out, lake=lake, html=html, progress=False, timeout=timeout,
                      kernel=kernel)


def run_reports(
    name: str,
    dates: list[str],
    params: dict[str, Any] | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    lake: str | os.PathLike[str] | None = None,
    html: bool = True,
    timeout: float | None = None,
    kernel: str | None = None,
    cluster: Any = None,
    progress: Any = None,
) -> list[tuple[str, ReportResult | str]]:
    """Run report ``name`` once per date, as tasks of :func:`lab.distributed.executor` (in this
    process one after the other unless a Ray cluster is configured: its workers then need this
    project and a shared ``out`` and lake). Returns ``(date, result or error text)`` per date, in
    order; a failing date does not stop the others. ``progress(Progress, date)`` after each.
    """
    from lab.distributed import TaskFailure, executor

    ex = executor(cluster)
    # absolute paths: a task may run in another working directory (a Ray worker)
    o = str(Path(out if out is not None else os.environ.get("LAB_REPORTS", "reports")).resolve())
    lk = str(Path(lake).resolve()) if lake is not None else None
    src = str(Path(name).resolve()) if Path(name).suffix in (".ipynb", ".py") and Path(name).exists() else name
    days = [_check_date(d) for d in dates]

    def tick(pr: Any) -> None:
        if progress is not None:
            progress(pr, days[pr.last])

    outs = ex.run(_report_task, [(src, d, params, o, lk, html, timeout, kernel) for d in days], progress=tick)
    return [(d, r.error if isinstance(r, TaskFailure) else r) for d, r in zip(days, outs, strict=True)]


_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
"""


def render_html(notebook: str | os.PathLike[str], dest: str | os.PathLike[str], *,
                title: str | None = None, code: bool = False) -> Path:
    """Render an executed notebook to one self-contained HTML file.

    Code cells are hidden unless ``code=True``; images are embedded; the
    lab template's CDN scripts (require.js, MathJax) are left out, so the
    page needs no network (plotly.js comes embedded by :func:`show`).
    """
    from lab.plots import _skip_slow_jsonschema_extras

    _skip_slow_jsonschema_extras()
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(notebook), as_version=4)
    if title:
        nb.metadata["title"] = title
    exp = HTMLExporter(extra_loaders=[DictLoader({"lab_report.html.j2": _TEMPLATE})],
                       template_file="lab_report.html.j2", embed_images=True,
                       exclude_input=not code, exclude_input_prompt=True,
                       exclude_output_prompt=True)
    body, _ = exp.from_notebook_node(nb)
    dest = Path(dest)
    dest.write_text(body, encoding="utf-8")
    return dest



# --------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Execute a report notebook (notebooks/reports/<name>.ipynb) with papermill for one "
                     "day and render it to a self-contained HTML page: OUT/<name>/<date>.ipynb and "
                     "OUT/<name>/<date>.html. A failing cell is named in the error (exit 1) and the "
                     "partial notebook and page are kept. Example: lab report daily_market_report "
                     "--date yesterday -p venues '[binance, kraken]'. A day without trades in the lake is an "
                     "error (exit 1), not an empty page.")
    p.add_argument("name", nargs="?", help="report name (a notebook under notebooks/reports) "
                   "or a path to a notebook; see --list")
    p.add_argument("--date", default=None,
                   help="the day the report covers (UTC): YYYY-MM-DD, today, yesterday or today-N; "
                   "default: yesterday")
    p.add_argument("--until", default=None, metavar="DATE",
                   help="also run it for every day after --date up to DATE (included): one page per day, "
                   "a progress line per day; a day that fails is reported and the others still run")
    p.add_argument("--cluster", default=None,
                   help="with --until: where the days run: local (default when no cluster is configured), "
                   "ray (the configured cluster: its workers need this project, the lake and --out), "
                   "or a Ray address")
    p.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="set a notebook parameter; VALUE is read as YAML, e.g. "
                   "-p venues '[binance, kraken]' -p symbols '[BTC-USDT]'")
    p.add_argument("--lake", default=None,
                   help="lake directory the report reads (default: the notebook's own default, $LAB_DATA/lake)")
    p.add_argument("--out", default=None,
                   help="output folder; files go to OUT/<name>/<date>.ipynb and .html "
                   "(default: $LAB_REPORTS or ./reports)")
    p.add_argument("--no-html", action="store_true", help="only write the executed notebook")
    p.add_argument("--timeout", type=float, default=None, help="per-cell time limit in seconds")
    p.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--list", action="store_true", help="list the available reports and exit")


def run(args: argparse.Namespace) -> int:
    if args.list or not args.name:
        for n in available_reports():
            print(n)
        if not args.list:
            print("lab report: give a report NAME (above) and --date YYYY-MM-DD", file=sys.stderr)
            return 2
        return 0
    date = args.date or "yesterday"
    if args.until is not None:
        return _run_range(args, date)
    try:
        params = dict(parse_param(k, v) for k, v in args.param)
        res = run_report(args.name, date, params, out=args.out, lake=args.lake,
                         html=not args.no_html, progress=not args.no_progress,
                         timeout=args.timeout, kernel=args.kernel)
    except ReportError as e:
        print(f"lab report: {e}", file=sys.stderr)
        return 1
    print(res.notebook)
    if res.html:
        print(res.html)
    return 0


def _run_range(args: argparse.Namespace, first: str) -> int:
    """``--date A --until B``: one report per day, a progress line each, exit 1 if any failed."""
    import time

    from lab.errors import LabError

    t0 = time.perf_counter()
    try:
        params = dict(parse_param(k, v) for k, v in args.param)
        dates = date_range(first, args.until)
        report_path(args.name)  # an unknown report fails once, not once per day

        def line(pr: Any, day: str) -> None:
            print(f"lab report: {day} ({pr}, {time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

        res = run_reports(args.name, dates, params, out=args.out, lake=args.lake, html=not args.no_html,
                          timeout=args.timeout, kernel=args.kernel, cluster=args.cluster, progress=line)
    except LabError as e:
        print(f"lab report: {e}", file=sys.stderr)
        return 1
    failed = 0
    for day, r in res:
        if isinstance(r, ReportResult):
            print(r.html or r.notebook)
        else:
            failed += 1
            print(f"lab report: {day}: {r.removeprefix('ReportError: ')}", file=sys.stderr)
    if failed:
        print(f"lab report: {failed} of {len(res)} day(s) failed", file=sys.stderr)
    return 1 if failed else 0
