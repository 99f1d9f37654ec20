# HFThot Research Lab. Two commands on a fresh machine: `make demo`, `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
export LAB_DATA ?= $(CURDIR)/data
# Ports of `make demo` / `make demo-bg` (all on 127.0.0.1): make demo JUPYTER_PORT=8890
JUPYTER_PORT ?= 8888
STREAMLIT_PORT ?= 8501
BUS_PORT ?= 50052
SERVICE_PORT ?= 50053
SIM_PORT_BASE ?= 9443
DEMO_FLAGS = --jupyter-port $(JUPYTER_PORT) --streamlit-port $(STREAMLIT_PORT) --bus-port $(BUS_PORT) \
             --service-port $(SERVICE_PORT) --sim-port-base $(SIM_PORT_BASE)

.PHONY: help setup demo demo-bg stop lint test test-slow bench chromium lock clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup: $(VENV)/.stamp  ## create .venv with the pinned versions of requirements.lock

$(VENV)/.stamp: requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(UV) pip install -q --python $(PY) -r requirements.lock
	$(UV) pip install -q --python $(PY) --no-deps -e .
	@touch $@

chromium:  ## Debian's headless Chromium for the browser tests (never `playwright install`)
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium for browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

demo: setup  ## start simulator, recorders, Jupyter (:8888) and Streamlit (:8501); Ctrl-C stops all
	$(VENV)/bin/lab demo $(DEMO_FLAGS)

demo-bg: setup  ## the same demo, in the background (progress, then URLs; stop it with `make stop`)
	$(VENV)/bin/lab demo --background $(DEMO_FLAGS)

stop:  ## stop a demo (background or foreground) through its pid file $(LAB_DATA)/run/demo.json
	@test -x $(VENV)/bin/lab && $(VENV)/bin/lab demo --stop || true

lint: setup  ## ruff (whole tree) and mypy (the library, [tool.mypy] in pyproject.toml); cached in .mypy_cache
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Two pytest workers, one test file each at a time (module fixtures are built once): most of the
# suite waits on real services (simulator, recorders, kernels, a browser), so both cores stay busy.
TEST_WORKERS ?= 2

test: setup lint chromium  ## lint first, then the whole suite (not the `slow` soak/scale runs); ~8-11 min on 2 cores
	$(PY) -m pytest -m "not slow" -q -n $(TEST_WORKERS) --dist loadfile

test-slow: setup lint chromium  ## soak and scale runs too
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: setup  ## every benchmark in bench/, figures printed
	@for f in bench/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

lock:  ## re-resolve requirements.lock from pyproject.toml
	$(UV) pip compile pyproject.toml --extra test --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
