"""`lab report NAME --date A --until B`: one page per day through the executor, a progress line per day."""

from __future__ import annotations

from pathlib import Path

import nbformat

from lab.cli import main as lab_main


def tiny_report(folder: Path) -> Path:
    """A report that writes its date into the page, and fails on 2026-11-21."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("date = None\nlake = None", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("if date == '2026-11-21':\n    raise ValueError('no data that day')\n"
                                          "print('report for', date)")]
    src = folder / "tiny.ipynb"
    nbformat.write(nb, src)
    return src


def test_report_for_a_date_range_writes_one_page_per_day_and_names_the_failed_one(tmp_path, capsys):
    src = tiny_report(tmp_path)
    out = tmp_path / "out"

    rc = lab_main(["report", str(src), "--date", "2026-11-20", "--until", "2026-11-22", "--out", str(out),
                   "--cluster", "local", "--timeout", "120"])

    err = capsys.readouterr().err
    assert rc == 1
    for day in ("2026-11-20", "2026-11-22"):
        page = (out / "tiny" / f"{day}.html").read_text(encoding="utf-8")
        assert f"report for {day}" in page
    progress = [ln for ln in err.splitlines() if ln.startswith("lab report: 2026-11-")]
    assert [ln.split()[2] for ln in progress[:3]] == ["2026-11-20", "2026-11-21", "2026-11-22"]
    assert "3/3 done" not in err and "2/3 done, 1 failed" in progress[2]
    assert any("2026-11-21:" in ln and "no data that day" in ln for ln in err.splitlines())
    assert "1 of 3 day(s) failed" in err


def test_report_range_rejects_an_end_before_the_start(tmp_path, capsys):
    rc = lab_main(["report", str(tiny_report(tmp_path)), "--date", "2026-11-22", "--until", "2026-11-20",
                   "--out", str(tmp_path / "out")])
    assert rc == 1
    assert "--until 2026-11-20 is before --date 2026-11-22" in capsys.readouterr().err
