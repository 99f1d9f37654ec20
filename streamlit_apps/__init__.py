"""HFThot Research Lab dashboards (``streamlit run streamlit_apps/app.py``).

``data`` reads the lake (cached, parameterised), ``compute`` holds the Polars
computations the pages share (until ``lab`` has them), ``widgets`` shared page
pieces, ``show`` the display helper of promoted notebook pages. Figures come
from :mod:`lab.plots`, shared with the notebooks.
"""

__all__ = ["compute", "data", "show", "warm", "widgets"]
