# Every target runs from the repository root and uses only the project's own .venv.
# `make test` works on a fresh clone: it creates .venv first (see `venv`).

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
START := $(shell date +%s)
SRC := workbench tests benchmarks
BENCHMARKS := $(basename $(notdir $(filter-out benchmarks/__init__.py,$(wildcard benchmarks/*.py))))

# `make lab` opens a browser only where one can be shown; on CI or a headless machine it just serves.
NO_BROWSER := $(if $(CI),--no-browser,$(if $(DISPLAY)$(WAYLAND_DISPLAY),,--no-browser))
# Jupyter refuses to run as root unless told; containers, CI and this project's machines run as root.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: help venv lab demo test lint bench clean browser cuda-wheels

help:
	@echo "make lab    create .venv if needed and open JupyterLab on notebooks/00_tour.ipynb"
	@echo "make test   create .venv if needed, run lint and every test (notebooks included)"
	@echo "make demo   the command-line story: load, prune, report, undo, reset"
	@echo "make lint   ruff check + ruff format --check"
	@echo "make bench  run every benchmarks/*.py"
	@echo "make cuda-wheels  download the pure-Python dependencies into .whl/ for an offline GPU machine (README: Development)"
	@echo "make clean  remove .venv, caches and build outputs"

venv: $(STAMP)

# torch goes in first and alone (the local CPU wheel), so nothing later pulls a CUDA build.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install torch==2.13.0
	$(VENV)/bin/pip install -e '.[dev]'
	touch $@

lab: venv
	$(VENV)/bin/jupyter lab notebooks/00_tour.ipynb --ServerApp.root_dir=. $(NO_BROWSER) $(ALLOW_ROOT)

demo: venv
	$(PY) -m workbench demo

# The browser test drives Debian's Chromium (never a browser Playwright downloads). Installed here when we are root;
# where it cannot be installed the browser test skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || echo "chromium could not be installed: the browser test will be skipped"

test: venv browser
	@rc=0; \
	$(MAKE) --no-print-directory lint && $(PY) -m pytest -q || rc=$$?; \
	echo "make test: wall time $$(( $$(date +%s) - $(START) )) s (exit $$rc)"; \
	exit $$rc

lint: venv
	$(VENV)/bin/ruff check $(SRC)
	$(VENV)/bin/ruff format --check $(SRC)

bench: venv
	@set -e; for b in $(BENCHMARKS); do \
		echo "== benchmarks.$$b"; \
		$(PY) -m benchmarks.$$b; \
	done

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis tests/artifacts
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -name .ipynb_checkpoints -type d -prune -exec rm -rf {} +

# For a GPU machine without network whose python3 has a CUDA torch, numpy, onnx, pytest and hypothesis: the rest.
cuda-wheels: venv
	$(VENV)/bin/pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
		torch-pruning==1.6.1 captum==0.9.0 platformdirs
