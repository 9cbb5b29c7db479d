# Quickstart:  make pipeline   (install, then `dvc repro` on the bundled default)
#              make test       (install, then the test suite; what CI runs)
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install system-deps test-deps pipeline test lint

system-deps:
	@bash scripts/system-deps.sh

test-deps:
	@bash scripts/system-deps.sh --test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"

install: system-deps $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'

pipeline: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test: install test-deps
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check stages tests scripts benchmarks
