# Two commands: `make run` sets up and starts the gateway; `make test` sets up and runs every
# test (codec, server, storage and real-agent tests). Everything installs from PyPI and npm,
# and PostgreSQL and Redis from Debian when the machine has none running (scripts/services.sh).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
AGENT_CACHE ?= $(HOME)/.cache/babelgate/agents
export BABELGATE_AGENT_CACHE := $(AGENT_CACHE)

.PHONY: setup run test test-fast lint agents services bench clean

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

# PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) for the storage tests: started from
# the installed binaries (installed with apt-get if missing) unless they already answer.
services:
	bash scripts/services.sh

test: setup agents services lint
	$(BIN)/pytest -q -p no:cacheprovider

test-fast: setup services
	$(BIN)/pytest -q -m "not agent"

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/mypy src

bench: setup
	bash bench/run.sh

clean:
	rm -rf $(VENV) build dist src/*.egg-info
