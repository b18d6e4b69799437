# One command surface for people, the README and CI.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install run run-scale-out test check lint typecheck pytest bench clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Plaudit needs Python 3.11 or newer (found " + sys.version.split()[0] + "); run make with PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## Run the server on the embedded default (SQLite in ./data) with the demo program loaded.
run: $(STAMP)
	$(BIN)/plaudit serve --demo --host $(HOST) --port $(PORT)

## The scale-out mode with the demo program: 2 API processes and 2 workers on the local
## PostgreSQL, Redis and NATS (PLAUDIT_DATABASE_URL, PLAUDIT_REDIS_URL, PLAUDIT_STREAM_URL).
run-scale-out: $(STAMP)
	@mkdir -p data
	scripts/run-scale-out

## The whole test suite: lint, format check, strict types, tests (warnings are errors).
test: check

check: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The client-credentials tests run a real OpenID provider on Node.js (npm's oidc-provider);
# without npm they are skipped, and named.
NODE_OIDC := tests/support/oidc_node

pytest: $(STAMP)
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix $(NODE_OIDC) --no-audit --no-fund --silent; fi
	$(BIN)/pytest -n 2 --cov --cov-report=term:skip-covered

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .coverage
