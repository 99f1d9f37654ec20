"""HFThot Research Lab dashboards (``streamlit run streamlit_apps/app.py``).

``data`` reads the lake (cached, parameterised), ``compute`` holds the Polars
computations the pages share, ``figures`` the plotly builders, ``show`` the
display helper of promoted notebook pages.
"""

__all__ = ["compute", "data", "figures", "show"]
