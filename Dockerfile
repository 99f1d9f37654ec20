# Images for docker-compose.yml. Two stages:
#   runtime (default, what compose builds): the lab and its runtime dependencies only, at the
#           versions pinned in requirements.lock (used as constraints), no test extras;
#   test:   runtime + the test extras of requirements.lock, for running the suite in a container.
FROM python:3.11-slim AS runtime
WORKDIR /app
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 LAB_DATA=/data LAB_REPORTS=/app/reports
COPY requirements.lock pyproject.toml README.md ./
COPY lab ./lab
COPY recorders ./recorders
COPY streamlit_apps ./streamlit_apps
# `pip install .` installs [project.dependencies] only; `-c requirements.lock` pins each to the lock.
RUN pip install --no-cache-dir -c requirements.lock .
COPY notebooks ./notebooks
COPY config ./config
COPY .streamlit ./.streamlit
RUN mkdir -p /app/reports /data
VOLUME ["/data", "/app/notebooks", "/app/reports"]

FROM runtime AS test
COPY tests ./tests
RUN pip install --no-cache-dir -r requirements.lock
