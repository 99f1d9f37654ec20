# One image for every service of docker-compose.yml (the lab, pinned as in requirements.lock).
FROM python:3.11-slim
WORKDIR /app
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 LAB_DATA=/data
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir -r requirements.lock
COPY lab ./lab
COPY recorders ./recorders
COPY streamlit_apps ./streamlit_apps
COPY notebooks ./notebooks
COPY config ./config
RUN pip install --no-cache-dir --no-deps -e .
VOLUME /data
