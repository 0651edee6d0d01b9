# The two commands a fresh machine needs (README.md): `make demo` and `make test`.
# Both make (or reuse) the virtual environment at .venv with the `unitumour` command in it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The vendor-file converter's own environment (requirements-convert.txt): wsidicomizer pins an
# older wsidicom than the core, so it runs there as a subprocess (unitumour_dicom/convert).
CONVERT_VENV := .venv-convert
# Every Python package comes from this hash-pinned lock (pip --require-hashes): one exact set,
# written by `make lock` from the ranges in pyproject.toml (scripts/lock.sh says how).
LOCK := requirements/dev-cpu.txt
# torch in the lock is PyTorch's CPU build, torch==2.13.0+cpu, pinned by the sha256 of its
# wheel. PyPI has no such file (PyPI's torch is the CUDA build), so pip takes it from PyTorch's
# CPU wheel index page below, or from any find-links or index that pip is configured with that
# holds the same file (a local mirror): the hash admits no other. Point TORCH_CPU_WHEELS at a
# directory or page of your own where download.pytorch.org is out of reach.
TORCH_CPU_WHEELS ?= https://download.pytorch.org/whl/cpu/torch/

.PHONY: all venv venv-convert lock system-deps viewer demo test lint format clean-venv

all: test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch alone first (its entry of the lock, so that pip reads TORCH_CPU_WHEELS for torch only),
# then the whole lock (all dependencies, by hash, wheels only), then this package alone, built
# with the lock's setuptools (no build isolation: nothing unpinned is fetched to build it).
$(VENV)/.installed: $(LOCK) requirements/torch-cpu.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --require-hashes --only-binary :all: --no-deps \
		--find-links $(TORCH_CPU_WHEELS) -r requirements/torch-cpu.txt
	$(BIN)/python -m pip install -q --require-hashes --only-binary :all: -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $@

$(CONVERT_VENV)/.installed: requirements-convert.txt
	rm -rf $(CONVERT_VENV)
	$(PYTHON) -m venv $(CONVERT_VENV)
	$(CONVERT_VENV)/bin/pip install -q --upgrade pip
	$(CONVERT_VENV)/bin/pip install -q -r requirements-convert.txt
	touch $@

venv-convert: $(CONVERT_VENV)/.installed

venv: $(VENV)/.installed $(CONVERT_VENV)/.installed

# Regenerate the locks in requirements/ (needs PyPI and TORCH_CPU_WHEELS); UPGRADE=1 to move
# every pin to the newest release that pyproject.toml allows. uv runs from build/lock-tools.
lock:
	PYTHON=$(PYTHON) TORCH_CPU_WHEELS=$(TORCH_CPU_WHEELS) TORCH_CUDA_WHEELS=$(TORCH_CUDA_WHEELS) \
		UPGRADE=$(UPGRADE) bash scripts/lock.sh

# DICOM peers and validator, browser: Debian packages. Installs only what is missing.
system-deps:
	@bash scripts/system-deps.sh

# dicom-microscopy-viewer for the web app's viewer page: fetched with npm at install time
# (pinned version and sha512) into the git-ignored var/viewer, never committed.
viewer: system-deps venv
	$(BIN)/python -m unitumour_services.web.viewer_assets var/viewer

demo: system-deps venv viewer
	$(BIN)/unitumour demo

# The lint steps first: they take seconds where the suite takes minutes.
test: system-deps venv viewer lint
	$(BIN)/pytest

# mypy reads what to check from [tool.mypy] in pyproject.toml; its cache is .mypy_cache.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean-venv:
	rm -rf $(VENV) $(CONVERT_VENV)
