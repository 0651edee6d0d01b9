# The two commands a fresh machine needs (README.md): `make demo` and `make test`.
# Both make (or reuse) the virtual environment at .venv with the `unitumour` command in it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The vendor-file converter's own environment (requirements-convert.txt): wsidicomizer pins an
# older wsidicom than the core, so it runs there as a subprocess (unitumour_dicom/convert).
CONVERT_VENV := .venv-convert
# CPU build of PyTorch; an unpinned torch would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: all venv venv-convert system-deps viewer demo test lint format clean-venv

all: test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e '.[test]'
	touch $@

$(CONVERT_VENV)/.installed: requirements-convert.txt
	rm -rf $(CONVERT_VENV)
	$(PYTHON) -m venv $(CONVERT_VENV)
	$(CONVERT_VENV)/bin/pip install -q --upgrade pip
	$(CONVERT_VENV)/bin/pip install -q -r requirements-convert.txt
	touch $@

venv-convert: $(CONVERT_VENV)/.installed

venv: $(VENV)/.installed $(CONVERT_VENV)/.installed

# DICOM peers and validator, browser: Debian packages. Installs only what is missing.
system-deps:
	@bash scripts/system-deps.sh

# dicom-microscopy-viewer for the web app's viewer page: fetched with npm at install time
# (pinned version and sha512) into the git-ignored var/viewer, never committed.
viewer: system-deps venv
	$(BIN)/python -m unitumour_services.web.viewer_assets var/viewer

demo: system-deps venv viewer
	$(BIN)/unitumour demo

test: system-deps venv viewer
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean-venv:
	rm -rf $(VENV) $(CONVERT_VENV)
