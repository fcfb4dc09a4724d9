# The two set-up commands: `make run` and `make test`. Both create and use .venv by themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
RUN_STAMP := $(VENV)/.run-stamp
NODE_DIR := tests/interop/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed-stamp
ARGS ?=
PYTEST_ARGS ?=

.PHONY: run test soak lint setup clean

# make run: only what serving needs (pyproject's dependencies).
$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

# make test (and lint): that, and the test extra (official SDKs, pytest, linters, Playwright...).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(RUN_STAMP)

$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

setup: $(STAMP)

## make run: start devprov on its embedded default (SQLite, generated CA) in ./devprov-data,
## with a built-in IoT hub named 127.0.0.1 (a dotted name every machine resolves).
run: $(RUN_STAMP)
	$(BIN)/devprov serve --default-hub 127.0.0.1 $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests examples
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

## make test: lint, then every test (official SDKs included) in a private network namespace.
test: $(STAMP) $(NODE_STAMP) lint
	scripts/run-tests $(PYTEST_ARGS)

## make soak: the long versions of the reliability tests (see RELIABILITY.md); prints their figures.
soak: $(STAMP) $(NODE_STAMP)
	DEVPROV_SOAK=1 scripts/run-tests -m soak -s $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(NODE_DIR)/node_modules .pytest_cache .mypy_cache .ruff_cache
