"""``lab promote notebooks/NAME.ipynb``: turn a notebook into a Streamlit page.

The notebook's cell tagged ``parameters`` (papermill's convention) becomes
sidebar widgets, one per literal assignment, typed by the default value:

==================  =====================================================
default             widget
==================  =====================================================
``True``/``False``  ``st.checkbox``
``int``             ``st.number_input`` (step 1)
``float``           ``st.number_input``
``"2026-11-22"``    ``st.date_input`` (the value stays an ISO string)
other ``str``       ``st.text_input``
list of ``str``     ``st.multiselect`` (the defaults are the options)
``None``            ``st.text_input``, empty means ``None``
other literals      ``st.text_input`` of the Python literal
==================  =====================================================

A parameter named ``lake`` defaults to the dashboards' lake
(``$LAB_LAKE`` or ``$LAB_DATA/lake``). Cells tagged ``app`` become the page
body in order: code is kept as written (IPython magics dropped); the value a
notebook would display (a cell's last bare expression, ``fig.show()``,
``display(...)``, ``show(...)``) goes through ``page.show`` (:mod:`streamlit_apps.show`), which draws
plotly figures with ``st.plotly_chart`` and frames with ``st.dataframe``; a top-level
``print(...)`` becomes ``st.caption``;
markdown cells tagged ``app`` become ``st.markdown``. Every other cell is
dropped, except its top-level ``import`` statements (the tagged cells need
them). The title is the notebook's first ``# heading``.

The page is written to ``streamlit_apps/pages/nb_<name>.py``; the app lists
every ``nb_*.py`` page under "Promoted notebooks". It is plain code meant to
be read and polished by hand, so an existing page with hand edits is only
replaced with ``--force``; one that is still exactly what ``lab promote`` wrote
(only its date differs) is regenerated, so promoting a notebook again after
editing it just works.

>>> src = promote_source({"cells": [
...     {"cell_type": "markdown", "metadata": {}, "source": "# Spreads\\nwhat we look at"},
...     {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "minutes = 5  # window"},
...     {"cell_type": "code", "metadata": {"tags": ["app"]}, "source": "x = minutes * 2\\nx"},
...     {"cell_type": "code", "metadata": {}, "source": "print('dropped')"}]}, name="spreads")
>>> print(src.split("st.title", 1)[1].strip())  # doctest: +NORMALIZE_WHITESPACE
("Spreads")
<BLANKLINE>
# -- parameters (the notebook's `parameters` cell) -------------------------------
with st.sidebar:
    minutes = st.number_input("minutes", value=5, step=1, help="window")
<BLANKLINE>
# -- cell 3 ----------------------------------------------------------------------
x = minutes * 2
page.show(x)
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import json
import re
import sys
from pathlib import Path
from typing import Any

from lab.apps._project import project_dir
from lab.errors import ConfigError

HELP = "turn a notebook into a Streamlit page"

__all__ = ["PromoteError", "promote", "promote_source", "read_notebook", "page_path", "add_arguments", "run"]

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class PromoteError(ConfigError):
    """The notebook cannot be promoted (names the cell and the reason)."""


def read_notebook(path: str | Path) -> dict[str, Any]:
    """An ``.ipynb`` (JSON) or a jupytext ``py:percent`` file, as nbformat-like dict."""
    p = Path(path)
    if not p.exists():
        raise PromoteError(f"{p}: no such notebook")
    if p.suffix == ".py":
        import jupytext

        nb = jupytext.read(p)
        return json.loads(json.dumps(nb, default=lambda o: dict(o)))
    try:
        return json.loads(p.read_text())
    except ValueError as e:
        raise PromoteError(f"{p}: not a notebook (JSON): {e}") from None


def _source(cell: dict[str, Any]) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else str(s)


def _tags(cell: dict[str, Any]) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []) or [])


def _strip_magics(code: str) -> str:
    if code.lstrip().startswith("%%"):
        return ""  # a cell magic makes the whole cell non-Python
    return "\n".join(ln for ln in code.splitlines() if not ln.lstrip().startswith(("%", "!")))


def _comment_of(src_lines: list[str], node: ast.stmt) -> str | None:
    """The trailing ``# comment`` on the statement's last line (it becomes the widget's help)."""
    import io
    import tokenize

    line = src_lines[node.end_lineno - 1] if node.end_lineno else ""
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(line).readline))
    except (tokenize.TokenError, SyntaxError):
        return None
    for t in toks:
        if t.type == tokenize.COMMENT:
            return t.string.lstrip("#").strip() or None
    return None


def _widget(name: str, value: Any, help_: str | None) -> str:
    h = f", help={json.dumps(help_)}" if help_ else ""
    n = json.dumps(name)
    if name == "lake" and (value is None or isinstance(value, str)):
        default = "data.lake_root()" if value is None else json.dumps(value)
        return f"{name} = st.text_input({n}, value={default}{h})"
    if isinstance(value, bool):
        return f"{name} = st.checkbox({n}, value={value!r}{h})"
    if isinstance(value, int):
        return f"{name} = st.number_input({n}, value={value!r}, step=1{h})"
    if isinstance(value, float):
        return f"{name} = st.number_input({n}, value={value!r}{h})"
    if isinstance(value, str) and _DATE.match(value):
        return (f"{name} = st.date_input({n}, value=dt.date.fromisoformat({json.dumps(value)}){h}).isoformat()")
    if isinstance(value, str):
        return f"{name} = st.text_input({n}, value={json.dumps(value)}{h})"
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        conv = "tuple" if isinstance(value, tuple) else "list"
        return (f"{name} = {conv}(st.multiselect({n}, {json.dumps(list(value))}, default={json.dumps(list(value))}, "
                f"accept_new_options=True{h}))")
    if value is None:
        return f"{name} = st.text_input({n}, value=\"\"{h}) or None"
    return f"{name} = ast.literal_eval(st.text_input({n}, value={repr(value)!r}{h}))"


def _parameters(code: str, cell_no: int) -> tuple[list[str], list[str]]:
    """Widget lines and verbatim lines (statements that are not literal assignments)."""
    code = _strip_magics(code)
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        raise PromoteError(f"parameters cell (cell {cell_no}): not valid Python: {e}") from None
    lines = code.splitlines()
    widgets: list[str] = []
    verbatim: list[str] = []
    for node in tree.body:
        target = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target, value_node = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            target, value_node = node.target.id, node.value
        if target is not None:
            try:
                value = ast.literal_eval(value_node)
            except ValueError:
                value = ...
            if value is not ...:
                widgets.append(_widget(target, value, _comment_of(lines, node)))
                continue
        verbatim.append(ast.get_source_segment(code, node) or "")
    return widgets, verbatim


def _is_call_to(node: ast.expr, names: tuple[str, ...]) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names


def _body(code: str, cell_no: int) -> str:
    """A tagged code cell with its displayed values routed through ``show``."""
    code = _strip_magics(code).rstrip()
    if not code.strip():
        return ""
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        raise PromoteError(f"cell {cell_no} (tagged app): not valid Python: {e}") from None
    lines = code.splitlines()
    edits: list[tuple[int, int, str]] = []  # (first line, last line, replacement), 1-based
    for i, node in enumerate(tree.body):
        if not isinstance(node, ast.Expr):
            continue
        v = node.value
        seg = ast.get_source_segment(code, v) or ""
        last_line = lines[node.end_lineno - 1].rstrip()
        if (isinstance(v, ast.Call) and isinstance(v.func, ast.Attribute) and v.func.attr == "show"
                and not v.args):
            edits.append((node.lineno, node.end_lineno, f"page.show({ast.get_source_segment(code, v.func.value)})"))
        elif _is_call_to(v, ("print",)) and v.args and not v.keywords:
            # what a notebook prints under a cell is read there: on the page it is a caption
            args = [ast.get_source_segment(code, a) or "" for a in v.args]
            text = args[0] if len(args) == 1 else f'" ".join(map(str, ({", ".join(args)},)))'
            edits.append((node.lineno, node.end_lineno, f"st.caption({text})"))
        elif _is_call_to(v, ("show", "display")):
            # the notebook's own display helper (IPython's display, a show() of a report module)
            args = ", ".join(ast.get_source_segment(code, a) or "" for a in v.args)
            edits.append((node.lineno, node.end_lineno, f"page.display({args})"))
        elif (i == len(tree.body) - 1 and not _is_call_to(v, ("print",))
              and not last_line.endswith(";") and not (isinstance(v, ast.Constant) and isinstance(v.value, str))):
            edits.append((node.lineno, node.end_lineno, f"page.show({seg})"))
        elif not isinstance(v, ast.Call):
            # Jupyter shows nothing here, but Streamlit's "magic" would st.write a bare value
            edits.append((node.lineno, node.end_lineno, f"_ = {seg}"))
    for first, last, text in sorted(edits, reverse=True):
        lines[first - 1:last] = [text]
    return "\n".join(lines)


def _imports(code: str) -> list[str]:
    """Top-level import statements of an untagged cell (kept: the page needs them)."""
    try:
        tree = ast.parse(_strip_magics(code))
    except SyntaxError:
        return []
    return [ast.get_source_segment(_strip_magics(code), n) or "" for n in tree.body
            if isinstance(n, (ast.Import, ast.ImportFrom))]


def _title(nb: dict[str, Any], name: str) -> str:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            for ln in _source(cell).splitlines():
                if ln.startswith("# "):
                    return ln[2:].strip()
    return name.replace("_", " ").strip().capitalize()


def _rule(text: str) -> str:
    return f"# -- {text} " + "-" * max(4, 76 - len(text))


def promote_source(nb: dict[str, Any], *, name: str, origin: str | None = None,
                   title: str | None = None, cells_: list[int] | None = None) -> str:
    """The page's Python source for notebook ``nb`` (see the module docstring).

    ``cells_`` (1-based cell numbers) picks the page's cells instead of the ``app`` tags.
    """
    cells = nb.get("cells", [])
    if cells_ is not None:
        bad = [i for i in cells_ if not 1 <= i <= len(cells)]
        if bad:
            raise PromoteError(f"{origin or name}: no cell(s) {bad}; the notebook has {len(cells)} cells")
        cells = [dict(c, metadata=dict(c.get("metadata", {}), tags=sorted(
            (_tags(c) - {"app"}) | ({"app"} if i in cells_ else set()))))
            for i, c in enumerate(cells, 1)]
    title = title or _title(nb, name)
    params = [(i, c) for i, c in enumerate(cells, 1) if "parameters" in _tags(c) and c.get("cell_type") == "code"]
    if len(params) > 1:
        raise PromoteError(f"{origin or name}: {len(params)} cells are tagged 'parameters' "
                           f"(cells {[i for i, _ in params]}); papermill uses one")
    app = [(i, c) for i, c in enumerate(cells, 1) if "app" in _tags(c)]
    if not app:
        raise PromoteError(f"{origin or name}: no cell is tagged 'app'; tag the cells that make the page "
                           "(Jupyter: View > Cell toolbar > Tags, or `# %% tags=[\"app\"]` in the py:percent file), or pick them with --cells")
    imports: list[str] = []
    for c in cells:
        if c.get("cell_type") == "code" and not _tags(c) & {"app", "parameters"}:
            imports += [i for i in _imports(_source(c)) if i not in imports]
    widgets, verbatim = [], []
    if params:
        widgets, verbatim = _parameters(_source(params[0][1]), params[0][0])
    out = [
        f'"""{title}.',
        "",
        f"Promoted from {origin or name} by `lab promote`"
        f" ({dt.datetime.now(dt.timezone.utc):%Y-%m-%d}); edit freely.",
        "The notebook's parameters are the sidebar widgets; the cells tagged `app` follow.",
        '"""',
        "",
        "import ast  # noqa: F401  (literal parameters)",
        "import datetime as dt  # noqa: F401  (date parameters)",
        "",
        "import streamlit as st",
        "",
        "from streamlit_apps import data  # noqa: F401  (the dashboards' lake)",
        "from streamlit_apps import show as page  # page.show(x): figure -> chart, frame -> table",
        "",
    ]
    if imports:
        out += [_rule("imports from the notebook's other cells")] + imports + [""]
    out.append(f"st.title({json.dumps(title)})")
    if widgets or verbatim:
        out += ["", _rule("parameters (the notebook's `parameters` cell)")]
        if widgets:
            out.append("with st.sidebar:")
            out += [f"    {w}" for w in widgets]
        out += verbatim
    for i, cell in app:
        src = _source(cell)
        if cell.get("cell_type") == "markdown":
            body = f"st.markdown({src.strip()!r})" if src.strip() else ""
        elif cell.get("cell_type") == "code":
            body = _body(src, i)
        else:
            continue
        if body:
            out += ["", _rule(f"cell {i}"), body]
    text = "\n".join(out) + "\n"
    try:
        compile(text, f"<promoted {name}>", "exec")
    except SyntaxError as e:  # pragma: no cover - a bug here, not in the notebook
        raise PromoteError(f"generated page does not compile: {e}") from None
    return text


_STAMP = re.compile(r"^(Promoted from .* by `lab promote`) \(\d{4}-\d{2}-\d{2}\)", re.M)


def _untouched(existing: str, generated: str) -> bool:
    """Whether ``existing`` is a page ``lab promote`` generated, unedited: equal to ``generated``
    but for the date in its docstring.

    >>> a = "Promoted from n.ipynb by `lab promote` (2026-11-22); edit freely.\\nx = 1\\n"
    >>> _untouched(a, a.replace("2026-11-22", "2026-11-29")), _untouched(a, a.replace("x = 1", "x = 2"))
    (True, False)
    """
    return _STAMP.sub(r"\1", existing) == _STAMP.sub(r"\1", generated)


def page_path(notebook: str | Path, pages: Path | None = None) -> Path:
    """``notebooks/01_Live market.ipynb`` -> ``streamlit_apps/pages/nb_01_live_market.py``."""
    stem = re.sub(r"[^0-9a-zA-Z]+", "_", Path(notebook).stem).strip("_").lower()
    return (pages or project_dir() / "streamlit_apps" / "pages") / f"nb_{stem}.py"


def promote(notebook: str | Path, *, out: str | Path | None = None, force: bool = False,
            title: str | None = None, cells: list[int] | None = None) -> Path:
    """Write the page for ``notebook``; return its path."""
    nb_path = Path(notebook)
    nb = read_notebook(nb_path)
    target = Path(out) if out else page_path(nb_path)
    try:
        origin = str(nb_path.resolve().relative_to(project_dir()))
    except (ValueError, ConfigError):
        origin = str(nb_path)
    src = promote_source(nb, name=nb_path.stem, origin=origin, title=title, cells_=cells)
    if target.exists() and not force and not _untouched(target.read_text(), src):
        raise PromoteError(f"{target} exists and has hand edits; pass --force to replace it "
                           "(or --out another page)")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(src)
    return target


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Turn a notebook into a Streamlit page: its `parameters` cell becomes sidebar widgets typed by "
        "the default values, cells tagged `app` become the page body (plotly figures -> st.plotly_chart, "
        "frames -> st.dataframe), every other cell is dropped. The page is listed in the dashboards' "
        "navigation under 'Promoted notebooks'."
    )
    p.add_argument("notebook", help="the notebook: notebooks/NAME.ipynb (or its py:percent pair)")
    p.add_argument("--out", default=None,
                   help="page file to write (default: streamlit_apps/pages/nb_<name>.py)")
    p.add_argument("--title", default=None, help="page title (default: the notebook's first '# heading')")
    p.add_argument("--force", action="store_true", help="replace an existing page (hand edits are lost)")
    p.add_argument("--cells", default=None,
                   help="comma-separated cell numbers (1-based) to use instead of the cells tagged `app`")
    p.add_argument("--print", dest="print_only", action="store_true",
                   help="print the generated code instead of writing it")


def _cells(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise PromoteError(f"--cells: expected comma-separated cell numbers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    try:
        cells = _cells(args.cells)
        if args.print_only:
            nb = read_notebook(args.notebook)
            sys.stdout.write(promote_source(nb, name=Path(args.notebook).stem, origin=args.notebook,
                                            title=args.title, cells_=cells))
            return 0
        path = promote(args.notebook, out=args.out, force=args.force, title=args.title, cells=cells)
    except PromoteError as e:
        print(f"lab promote: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    print("run the dashboards: streamlit run streamlit_apps/app.py --server.address 127.0.0.1 "
          "(the page is listed under 'Promoted notebooks')")
    return 0
