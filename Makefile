# Janus: `make help` lists the targets. Everything runs from the project's own .venv.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.ONESHELL:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Stamped after a successful install, so `make` reinstalls only when a requirements file or
# pyproject.toml changed.
VENV_STAMP := $(VENV)/.installed
# Where `make run` keeps its embedded PostgreSQL when DATABASE_URL is not set.
LOCAL_PGDATA := .janus/pgdata
LOCAL_PGPORT := 54329
# Starts it if needed (idempotent) and prints its URL.
LOCAL_DB_START := $(BIN)/python -m devtools.localdb start $(LOCAL_PGDATA) $(LOCAL_PGPORT)
# Where `make run` serves: `make run PORT=18000`, or PORT from the environment (as Render sets it).
PORT ?= 8000

.PHONY: help venv run test chromium pgbouncer check migrate db-stop clean clean-data

help: ## List the targets
	@echo "Usage: make <target>"
	awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

venv: $(VENV_STAMP) ## Create .venv and install the pinned dependencies, janus and its client

# janus itself, and its Python client (a distribution of its own, clients/python), both
# editable: the tests of the client and `make check` use it from here.
$(VENV_STAMP): requirements.txt requirements-dev.txt pyproject.toml clients/python/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e . -e clients/python
	touch $@

run: venv ## Serve on 127.0.0.1:$PORT, 8000 by default (embedded Postgres unless DATABASE_URL is set)
	@DATABASE_URL="$${DATABASE_URL:-$$($(LOCAL_DB_START))}"
	export DATABASE_URL
	$(BIN)/alembic upgrade head
	export PORT=$(PORT) JANUS_BIND_HOST=127.0.0.1
	$(BIN)/python -m janus demo
	echo "janus: serving on http://127.0.0.1:$$PORT (Ctrl-C stops it)"
	exec $(BIN)/gunicorn -c gunicorn.conf.py

test: venv chromium pgbouncer ## Run the whole suite (embedded Postgres, or TEST_DATABASE_URL); PYTEST_ARGS=...
	$(BIN)/pytest $(PYTEST_ARGS)

chromium: ## Install Debian's Chromium and ChromeDriver (the dashboard's browser tests) if missing
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
		echo "Chromium is missing (the dashboard's browser tests): installing Debian's packages"
		sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo)
		$$sudo apt-get update -qq
		$$sudo apt-get install -y -qq chromium chromium-driver >/dev/null
	fi

pgbouncer: venv ## Build Debian's PgBouncer 1.24 into .venv if no PgBouncer >= 1.21 is found (its tests)
	@devtools/install_pgbouncer.sh

check: venv ## Lint, check formatting, type-check and check the layers' imports, as CI does
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy  # the files of [tool.mypy] in pyproject.toml: janus, devtools, tests, the client
	$(BIN)/lint-imports

migrate: venv ## Upgrade DATABASE_URL (or the make-run database) to the latest migration
	@DATABASE_URL="$${DATABASE_URL:-$$($(LOCAL_DB_START))}"
	export DATABASE_URL
	$(BIN)/alembic upgrade head

db-stop: ## Stop the embedded Postgres that `make run` started
	if [ -x $(BIN)/python ]; then $(BIN)/python -m devtools.localdb stop $(LOCAL_PGDATA); fi

clean: db-stop ## Remove .venv and caches (keeps the database in .janus/, stops its server)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache build *.egg-info
	find . -name __pycache__ -type d -not -path './.janus/*' -prune -exec rm -rf {} +

clean-data: db-stop ## Stop the embedded Postgres and delete its data in .janus/
	rm -rf .janus

.PHONY: bench
bench: venv ## Load-test the service next to its ceilings; JSON in bench/results/ (SOAK=1, BENCH_ARGS=)
	@if ! command -v wrk >/dev/null; then
		echo "wrk is missing: installing Debian's package"
		sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo)
		$$sudo apt-get update -qq
		$$sudo apt-get install -y -qq wrk >/dev/null
	fi
	$(BIN)/python -m bench.run $(if $(SOAK),--soak) $(BENCH_ARGS)

.PHONY: reliability
reliability: venv ## Run the fault scenarios (tests/faults) and print what each did; SCENARIOS=...
	$(BIN)/python -m tests.faults.report $(SCENARIOS)
