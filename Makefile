.DEFAULT_GOAL := help
PY ?= .venv/bin/python

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

install: ## create .venv and install skiplock with dev extras
	python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]'

generate: ## regenerate the sync twins from the *_async.py sources
	$(PY) tools/async_to_sync.py

check-generated: ## fail if a generated twin is stale
	$(PY) tools/async_to_sync.py --check

lint: check-generated ## ruff, ruff format --check, mypy --strict
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	.venv/bin/lint-imports

format: ## apply ruff fixes and formatting
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

test: ## the full test suite (needs PostgreSQL, or falls back to pgserver)
	$(PY) -m pytest -q

test-fast: ## tests without the slow ones
	$(PY) -m pytest -q -m "not slow"

bench: ## full benchmark run against the peers (minutes)
	$(PY) -m benchmarks

bench-smoke: ## every benchmark workload at tiny sizes (seconds)
	$(PY) -m benchmarks --smoke

demo: ## run the demo (embedded PostgreSQL if none is reachable)
	.venv/bin/skiplock demo

ci: ## what CI runs
	bash .ci/run

.PHONY: help install generate check-generated lint format test test-fast bench bench-smoke demo ci
