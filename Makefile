# foliotune: the two commands of the README's Quick start.
#   make run   -> set up .venv and run the main job (foliotune run)
#   make test  -> set up .venv (+ Debian chromium for browser tests, linux-perf and trace-cmd for the
#                 import-trace tests) and run every test, ruff and mypy
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint chromium tracetools bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/foliotune run $(ARGS)

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi; }

# perf and trace-cmd: the import-trace tests capture real migration traces with them.
tracetools:
	@{ command -v perf >/dev/null 2>&1 && command -v trace-cmd >/dev/null 2>&1; } || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf trace-cmd >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf trace-cmd >/dev/null; fi; }

lint: setup
	$(BIN)/ruff check models sweep app tests
	$(BIN)/ruff format --check models sweep app tests
	$(BIN)/mypy

test: setup chromium tracetools lint
	FOLIOTUNE_REQUIRE_BROWSER=1 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 $(BIN)/pytest -q $(PYTEST_ARGS)

bench: setup
	$(BIN)/foliotune bench models --json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
