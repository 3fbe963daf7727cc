# Every target sets itself up: a fresh clone needs only Python 3.11+, pip and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint demo bench soak clean check-bare

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard benchmarks)
	$(BIN)/ruff format --check src tests $(wildcard benchmarks)
	$(BIN)/mypy --strict src

test: lint
	$(BIN)/pytest -q

demo: $(STAMP)
	$(BIN)/codex-tools demo

bench: $(STAMP)
	$(BIN)/python -m benchmarks
	$(BIN)/python -m benchmarks.mcp_bench
	$(BIN)/python -m benchmarks.mcp_conformance

soak: $(STAMP)
	$(BIN)/python -m benchmarks.soak

clean:
	rm -rf $(VENV) .venv-bare .mypy_cache .pytest_cache .ruff_cache .hypothesis

# The core must import and work with none of the extras installed.
check-bare:
	rm -rf .venv-bare
	$(PYTHON) -m venv .venv-bare
	.venv-bare/bin/python -m pip install -q .
	.venv-bare/bin/python -c "import sys, codex_tools as c; c.register(lambda a, b: a + b, name='add'); assert c.invoke('add', {'a': 1, 'b': 2}) == 3; assert not {'opentelemetry', 'prometheus_client', 'openai', 'mcp'} & set(sys.modules); print('bare install ok')"
