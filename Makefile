# `make demo` sets everything up and reviews a sample diff with the embedded model;
# `make test` runs every test (`make test-fast` skips the end-to-end model tests).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-fast lint
setup: $(VENV)/.revisor-setup

$(VENV)/.revisor-setup: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

demo: setup
	$(VENV)/bin/revisor review --diff examples/demo.diff \
	  --comment 'app/storage.py:11-13=use a context manager here'

test: setup
	$(PY) -m pytest -v -rs

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check .
