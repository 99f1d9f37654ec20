"""`lab promote`: a small notebook becomes a page that runs in AppTest and is listed in the navigation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from st_helpers import APP, ROOT, figures
from streamlit.testing.v1 import AppTest


def _cell(kind: str, src: str, tags: list[str] | None = None) -> dict:
    c = {"cell_type": kind, "metadata": {"tags": tags or []}, "source": src}
    if kind == "code":
        c |= {"outputs": [], "execution_count": None}
    return c


def _notebook(cells: list[dict]) -> dict:
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
            "nbformat": 4, "nbformat_minor": 5}


SPREAD_NB = _notebook([
    _cell("markdown", "# Spread study\nWhich venue quotes tightest?"),
    _cell("code", "import polars as pl\nimport lab\nfrom lab import plots"),
    _cell("code", 'market = "BTC-USD"  # market to study\nminutes = 2\nmax_spread_bps = 5.0\n'
                  'venues = ["binance", "coinbase", "kraken"]\nshow_table = True\nday = "2026-11-22"\n'
                  "lake = None\n", ["parameters"]),
    _cell("code", 'raise RuntimeError("an untagged cell must be dropped")'),
    _cell("markdown", "Mean quoted spread per venue, in bps.", ["app"]),
    _cell("code", "%matplotlib inline\n"
                  "q = (lab.scan('quotes', lake=lake, venue=venues)\n"
                  "     .filter(pl.col('symbol').str.starts_with(market.split('-')[0] + '-'))\n"
                  "     .with_columns(spread_bps=(pl.col('ask_px') - pl.col('bid_px'))\n"
                  "                   / ((pl.col('ask_px') + pl.col('bid_px')) / 2) * 1e4))\n"
                  "summary = q.group_by('venue').agg(pl.col('spread_bps').mean()).sort('venue')\n"
                  "summary", ["app"]),
    _cell("code", "fig = plots.bar_figure(summary, 'venue', 'spread_bps', title=f'{market} spread')\n"
                  "fig.show()", ["app"]),
    _cell("code", "n_rows = q.select(pl.len()).collect().item()\nn_rows;", ["app"]),
    _cell("code", "print('not shown on the page either')"),
])


def _write(tmp_path: Path, nb: dict, name: str = "spread_study.ipynb") -> Path:
    p = tmp_path / "notebooks" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(nb))
    return p


def test_promoted_notebook_runs_as_a_page_with_sidebar_widgets_table_and_chart(
        tmp_path, synth_lake, monkeypatch):
    root, written = synth_lake
    nb = _write(tmp_path, SPREAD_NB)
    pages = tmp_path / "pages"

    proc = subprocess.run([sys.executable, "-m", "lab.cli", "promote", str(nb), "--out",
                           str(pages / "nb_spread_study.py")], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    page = pages / "nb_spread_study.py"
    src = page.read_text()
    assert "an untagged cell must be dropped" not in src and "not shown on the page" not in src
    assert "%matplotlib" not in src
    assert 'st.title("Spread study")' in src

    monkeypatch.setenv("LAB_LAKE", root)
    at = AppTest.from_file(str(page), default_timeout=90).run()
    assert not at.exception, [e.value for e in at.exception]

    # widgets typed by the defaults
    sb = at.sidebar
    labels = {kind: [w.label for w in getattr(sb, kind)]
              for kind in ("text_input", "number_input", "multiselect", "checkbox", "date_input")}
    assert labels == {"text_input": ["market", "lake"], "number_input": ["minutes", "max_spread_bps"],
                      "multiselect": ["venues"], "checkbox": ["show_table"], "date_input": ["day"]}
    assert at.sidebar.number_input[0].value == 2 and at.sidebar.number_input[1].value == 5.0
    assert at.sidebar.text_input[0].help == "market to study"
    assert at.sidebar.text_input[1].value == root  # `lake = None` reads the dashboards' lake
    assert [t.value for t in at.title] == ["Spread study"]
    assert [m.value for m in at.markdown] == ["Mean quoted spread per venue, in bps."]

    # the frame (last expression) and the figure (fig.show()), from the same numbers
    want = {}
    for r in written["quotes"].iter_rows(named=True):
        if r["symbol"].startswith("BTC-"):
            want.setdefault(r["venue"], []).append(
                (r["ask_px"] - r["bid_px"]) / ((r["ask_px"] + r["bid_px"]) / 2) * 1e4)
    want = {v: sum(x) / len(x) for v, x in want.items()}
    table = at.dataframe[0].value
    assert dict(zip(table["venue"], table["spread_bps"])) == pytest.approx(want)
    fig = next(iter(figures(at).values()))
    assert fig["title"] == "BTC-USD spread"
    bars = next(iter(fig["traces"].values()))
    assert dict(zip(bars["x"], bars["y"])) == pytest.approx(want)
    assert len(at.dataframe) == 1  # `n_rows;` shows nothing, as in Jupyter

    # a sidebar change reruns the notebook code with the new value
    at.sidebar.multiselect[0].unselect("kraken").run()
    assert not at.exception
    assert sorted(at.dataframe[0].value["venue"]) == ["binance", "coinbase"]


def test_promoted_page_is_listed_in_the_app_navigation(tmp_path, synth_lake, monkeypatch):
    from lab.apps.promote import promote

    nb = _write(tmp_path, SPREAD_NB)
    pages = tmp_path / "pages"
    page = promote(nb, out=pages / "nb_spread_study.py")
    monkeypatch.setenv("LAB_LAKE", synth_lake[0])
    monkeypatch.setenv("LAB_STREAMLIT_PAGES", str(pages))

    at = AppTest.from_file(str(APP), default_timeout=90).run()
    at.switch_page(str(page)).run()  # raises unless st.navigation registered the page
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == ["Spread study"]


def test_promote_refuses_to_overwrite_and_names_missing_tags(tmp_path):
    from lab.apps.promote import PromoteError, promote

    nb = _write(tmp_path, SPREAD_NB)
    out = tmp_path / "nb_x.py"
    promote(nb, out=out)
    out.write_text("# polished by hand\n")
    with pytest.raises(PromoteError, match="--force"):
        promote(nb, out=out)
    assert out.read_text() == "# polished by hand\n"
    promote(nb, out=out, force=True)
    assert "Spread study" in out.read_text()

    untagged = _write(tmp_path, _notebook([_cell("code", "x = 1")]), "plain.ipynb")
    with pytest.raises(PromoteError, match="no cell is tagged 'app'"):
        promote(untagged, out=tmp_path / "nb_plain.py")


@pytest.fixture(scope="module")
def small_sim_lake(tmp_path_factory):
    """Two simulated minutes of BTC on 3 venues: enough for every section of the notebook's page."""
    import datetime as dt

    from lab.lake import Lake
    from recorders.sim.bulk import write_to_lake

    lake = Lake(tmp_path_factory.mktemp("st_small_sim") / "lake")
    write_to_lake(lake, start=dt.datetime(2026, 11, 22, 12, tzinfo=dt.timezone.utc),
                  duration=dt.timedelta(minutes=2), assets=("BTC",), seed=3)
    return lake


def test_the_promoted_microstructure_notebook_page_runs_on_the_simulator_lake(small_sim_lake, app_on):
    at = app_on(str(small_sim_lake.root), "pages/nb_02_microstructure.py")

    assert [t.value for t in at.title] == ["Microstructure of one market over a day"]
    figs = figures(at)
    assert len(figs) >= 4 and all(f["traces"] for f in figs.values())
    assert len(at.dataframe) >= 4
    assert "BTC-USD on 2026-11-22" in at.caption[0].value
