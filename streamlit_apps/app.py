"""HFThot Research Lab dashboards: one multipage Streamlit app.

Run it with::

    streamlit run streamlit_apps/app.py --server.address 127.0.0.1 --server.port 8501

The lake is ``$LAB_LAKE`` if set, else ``$LAB_DATA/lake``. The desk pages
are listed first; pages made by ``lab promote`` (``pages/nb_*.py``) are
listed under "Promoted notebooks", titled by their docstring's first line;
``$LAB_STREAMLIT_PAGES`` (directories separated by ``os.pathsep``) adds the
``nb_*.py`` pages found there too.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import streamlit as st

from streamlit_apps import memory, warm, widgets

PAGES_DIR = Path(__file__).resolve().parent / "pages"

# (file in pages/, title, icon), in menu order.
DESK_PAGES: list[tuple[str, str, str]] = [
    ("live_market.py", "Live market", ":material/show_chart:"),
    ("arbitrage_monitor.py", "Arbitrage monitor", ":material/compare_arrows:"),
    ("microstructure.py", "Microstructure", ":material/query_stats:"),
    ("feed_health.py", "Feed health", ":material/monitor_heart:"),
    ("risk_monitor.py", "Risk monitor", ":material/shield:"),
    ("paper_vs_backtest.py", "Paper vs backtest", ":material/science:"),
]


def _title_of(path: Path) -> str:
    """First line of the page's docstring, else its file name."""
    try:
        doc = ast.get_docstring(ast.parse(path.read_text()))
    except (OSError, SyntaxError):
        doc = None
    return doc.strip().splitlines()[0].rstrip(".") if doc else path.stem.replace("_", " ")


def build_navigation() -> dict[str, list]:
    desk = [st.Page(PAGES_DIR / f, title=t, icon=i, default=(n == 0))
            for n, (f, t, i) in enumerate(x for x in DESK_PAGES if (PAGES_DIR / x[0]).exists())]
    dirs = [PAGES_DIR] + [Path(d) for d in os.environ.get("LAB_STREAMLIT_PAGES", "").split(os.pathsep) if d]
    promoted = [st.Page(p, title=_title_of(p), icon=":material/auto_stories:")
                for d in dirs for p in sorted(d.glob("nb_*.py"))]
    sections: dict[str, list] = {"Desk": desk}
    if promoted:
        sections["Promoted notebooks"] = promoted
    return sections


st.set_page_config(page_title="HFThot Research Lab", page_icon=":material/candlestick_chart:",
                   layout="wide")
memory.bound()  # the memory report / trim thread when the environment asks for it (see memory.py)
warm.start()  # import/JIT-load the heavy lab helpers while the first page renders
nav = st.navigation(build_navigation())
with st.sidebar:
    st.caption("HFThot Research Lab")
try:
    nav.run()
except widgets.PASS_THROUGH:
    raise
except BaseException as e:  # noqa: BLE001 - any page: one line on the page, the traceback in the server log
    widgets.page_error(nav.title, e)
