# `make install` sets up what serving needs; `make run` does that and starts the gateway in the
# foreground; `make test` sets up and runs every
# test (codec, server, storage and real-agent tests). Everything installs from PyPI and npm,
# PostgreSQL and Redis from Debian when the machine has none running (scripts/services.sh), and
# Debian's chromium for the dashboard's browser tests (scripts/chromium.sh).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
AGENT_CACHE ?= $(HOME)/.cache/babelgate/agents
export BABELGATE_AGENT_CACHE := $(AGENT_CACHE)

.PHONY: install setup setup-run run test test-fast lint agents local-model services chromium bench clean

# Two install levels in one venv, each with its stamp: `make install` and `make run` need only
# what serving needs; `make test` (and setup, lint) add the test tools. pip runs without -q so
# a fresh machine shows pip's own progress bars rather than a minute of silence. The venv's
# own pip is used as it comes (Python 3.11+ ships one that installs everything here): no
# upgrade of pip itself on the way to a first start.
$(BIN)/.installed-run: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --progress-bar on -e .
	touch $@

$(BIN)/.installed-test: $(BIN)/.installed-run
	$(BIN)/pip install --progress-bar on -e '.[test]'
	touch $@

setup-run: $(BIN)/.installed-run

install: setup-run
	@echo "babelgate is installed in $(VENV): \`. $(VENV)/bin/activate\` puts it on this shell's PATH"

setup: $(BIN)/.installed-test

run: setup-run
	@echo "babelgate: starting in the foreground (Ctrl-C stops it); in another shell," \
	     "\`. $(VENV)/bin/activate\` puts the babelgate command on PATH"
	$(BIN)/babelgate serve $(ARGS)

agents:
	bash scripts/install-agents.sh

# llama-cpp-python's server and Gemma 3 270M for the local-model agent test, outside the
# clone (compiled once, ~15 minutes on 2 cores; cheap when cached).
local-model:
	bash scripts/install-local-model.sh

# PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) for the storage tests: started from
# the installed binaries (installed with apt-get if missing) unless they already answer.
services:
	bash scripts/services.sh

# Debian's chromium, which Playwright drives in tests/dashboard (installed with apt-get if missing).
chromium:
	bash scripts/chromium.sh

test: setup agents local-model services chromium lint
	$(BIN)/pytest -q -p no:cacheprovider

test-fast: setup services chromium
	$(BIN)/pytest -q -m "not agent"

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/mypy src

bench: setup
	bash bench/run.sh

clean:
	rm -rf $(VENV) build dist src/*.egg-info
