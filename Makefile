# Quickstart:  make pipeline    (install, then `dvc repro` on the bundled default)
#              make test-quick  (install, then the tests not marked slow: a few minutes on 2 cores;
#                               run it while working, after each change)
#              make test        (install, then the whole suite, slow tests included: the pipeline end to
#                               end, training, the UI in Chromium, the servers; what CI runs, before a push)
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install system-deps test-deps pipeline test test-quick lint docs docs-build

system-deps:
	@bash scripts/system-deps.sh

test-deps:
	@bash scripts/system-deps.sh --test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"

# pip byte-compiles what it installs (half of a fresh install's 91 s here): keep it. Where PYTHONDONTWRITEBYTECODE
# is set, as on these machines, Python never writes .pyc files itself, so without pip's every process would
# compile torch and the rest from source again (the suite took 29 min instead of 20).
install: system-deps $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'

pipeline: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test: install test-deps
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q

# The slow marker: tests that run `dvc repro`/`dvc exp`, a stage, training, a browser or a server
# (tests/common/test_test_tiers.py keeps the list honest), and a few that run whole models for seconds.
# No Chromium needed, so no test-deps.
test-quick: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check stages tests scripts benchmarks examples

# The documentation site (docs/, mkdocs.yml): served at http://127.0.0.1:8000, rebuilt on every save. Its numbers
# are rendered from the results by `python -m benchmarks.render_docs`; a stale one fails the build.
docs: install
	$(BIN)/mkdocs serve

# The site built into site/ in strict mode, offline, as the tests build it.
docs-build: install
	$(BIN)/mkdocs build --strict
