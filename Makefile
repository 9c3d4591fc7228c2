# Two commands for a new user on a fresh machine (only Python 3.11+ needed):
#   make demo   creates .venv, installs, runs `lifecycle demo` on the embedded store
#   make test   installs everything including the dev extra, runs the whole suite
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test install install-dev bench bench-quick chaos chaos-quick clean

demo: $(VENV)/.installed
	$(BIN)/lifecycle demo

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

# Measurements (issue 5), not part of `make test`: they take minutes and print figures.
bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench.run

bench-quick: $(VENV)/.installed-dev
	$(BIN)/python -m bench.run --quick

chaos: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q tests/test_hostile_inputs.py tests/test_fuzz.py
	$(BIN)/python -m chaos.run --strict $(CHAOS_ARGS)

chaos-quick: $(VENV)/.installed-dev
	$(BIN)/python -m chaos.run --strict --quick $(CHAOS_ARGS)

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

clean:
	rm -rf $(VENV) data .pytest_cache .hypothesis
