# Every target sets itself up: a fresh clone needs only Python 3.11+, pip and make.
# `make demo` installs the package alone; lint, test, bench and soak add the dev extra to the
# same .venv. uv, fetched from PyPI into the venv, does the installing; pip if uv cannot be had.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORE := $(VENV)/.installed-core
DEV := $(VENV)/.installed-dev
PYTEST_WORKERS ?= auto

# Prints only the command it runs (set -x), not the choice.
install = if [ -x $(BIN)/uv ]; then set -x; $(BIN)/uv pip install -q --python $(BIN)/python $(1); \
	else set -x; $(BIN)/python -m pip install -q $(1); fi

.PHONY: test lint demo bench soak clean check-bare

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv || echo "uv could not be installed: pip installs instead"

$(CORE): pyproject.toml | $(BIN)/python
	@$(call install,-e .)
	@touch $@

$(DEV): pyproject.toml | $(BIN)/python
	@$(call install,-e '.[dev]')
	@touch $@ $(CORE)

lint: $(DEV)
	$(BIN)/ruff check src tests conftest.py $(wildcard benchmarks)
	$(BIN)/ruff format --check src tests conftest.py $(wildcard benchmarks)
	$(BIN)/mypy --strict src

# Tests run on every core. loadscope sends a module's (or a class's) tests to one worker, so
# README.md's blocks, which share a namespace, run in order in one process. (Not loadgroup:
# with pytest 9.2 it silently stops grouping, pytest-xdist issue 1386.)
test: lint
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadscope

demo: $(CORE)
	$(BIN)/codex-tools demo

bench: $(DEV)
	$(BIN)/python -m benchmarks
	$(BIN)/python -m benchmarks.mcp_bench
	$(BIN)/python -m benchmarks.mcp_conformance

soak: $(DEV)
	$(BIN)/python -m benchmarks.soak

clean:
	rm -rf $(VENV) .venv-bare .mypy_cache .pytest_cache .ruff_cache .hypothesis

# The core must import and work with none of the extras installed, and must not import one
# where they are all installed (the dev .venv).
EXTRAS_IMPORTED = 'opentelemetry', 'prometheus_client', 'openai', 'mcp', 'agents', \
	'pydantic_ai', 'langchain', 'langchain_core', 'langgraph', 'uvloop'
BARE_CHECK = import sys, codex_tools as c; c.register(lambda a, b: a + b, name='add'); \
	assert c.invoke('add', {'a': 1, 'b': 2}) == 3; \
	extras = {$(EXTRAS_IMPORTED)} & set(sys.modules); assert not extras, extras; \
	print(sys.prefix, 'imports no extra: ok')

check-bare: $(DEV)
	rm -rf .venv-bare
	$(PYTHON) -m venv .venv-bare
	.venv-bare/bin/python -m pip install -q .
	.venv-bare/bin/python -c "$(BARE_CHECK)"
	$(BIN)/python -c "$(BARE_CHECK)"
