# Two commands: `make run` sets up and starts the gateway; `make test` sets up and runs every
# test (codec, server, and real-agent tests). Everything installs from PyPI and npm.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
AGENT_CACHE ?= $(HOME)/.cache/babelgate/agents
export BABELGATE_AGENT_CACHE := $(AGENT_CACHE)

.PHONY: setup run test test-fast lint agents bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/.installed

run: setup
	$(BIN)/babelgate serve $(ARGS)

agents:
	bash scripts/install-agents.sh

test: setup agents lint
	$(BIN)/pytest -q -p no:cacheprovider

test-fast: setup
	$(BIN)/pytest -q -m "not agent"

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/mypy src

bench: setup
	bash bench/run.sh

clean:
	rm -rf $(VENV) build dist src/*.egg-info
