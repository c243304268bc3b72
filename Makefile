# The development entry point: `make help` lists every target. Each target is one documented
# command run with the virtualenv's Python (VENV=.venv by default; PYTHON makes the venv).
PYTHON ?= python3
VENV ?= .venv
EXTRAS ?= dev
PY := $(VENV)/bin/python
FAST := not slow and not timing and not subprocess

.DEFAULT_GOAL := help
.PHONY: help install test test-fast test-faults lint generate check-generated docs demo \
	bench bench-smoke bench-monitor bench-web churn explain rotation-lab

help:            ## list the targets
	@awk 'BEGIN {FS = ":[^#]*## "} /^[a-z][a-z-]*:.*## / {printf "  make %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install:         ## a virtualenv (VENV=.venv) with skiplock[EXTRAS] installed editable (EXTRAS=dev)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'

test:            ## the whole suite (PostgreSQL on 127.0.0.1:5432, else an embedded one)
	$(PY) -m pytest -q

test-fast:       ## the suite without slow, real-clock (timing) and subprocess tests (under two minutes)
	$(PY) -m pytest -q -m "$(FAST)"

test-faults:     ## the fault-injection scenarios at full size and duration (about 30 minutes)
	SKIPLOCK_FAULTS=full $(PY) -m pytest -q tests/faults

lint:            ## ruff, ruff format --check, mypy --strict and the import layers
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

generate:        ## rewrite the generated files: sync twins, query bindings, CLI reference, schema dump
	$(PY) tools/async_to_sync.py
	$(PY) tools/bindings.py
	$(PY) tools/cli_reference.py
	$(PY) tools/schema_dump.py

check-generated: ## fail if a generated file differs from what `make generate` would write
	$(PY) tools/async_to_sync.py --check
	$(PY) tools/bindings.py --check
	$(PY) tools/cli_reference.py --check
	$(PY) tools/schema_dump.py --check

docs:            ## build the documentation site strictly (into a temporary folder)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet --site-dir "$$(mktemp -d)"

demo:            ## the demo on a fresh embedded PostgreSQL (500 jobs)
	$(VENV)/bin/skiplock demo --embedded --jobs 500

bench:           ## the full side-by-side benchmarks (about 20 minutes); rewrites docs/benchmarks.md
	$(PY) -m benchmarks --write-docs

bench-smoke:     ## every benchmark workload at tiny sizes (needs skiplock[bench])
	$(PY) -m benchmarks --smoke
	$(PY) -m benchmarks.churn --smoke
	$(PY) -m benchmarks.monitor_load --smoke
	$(PY) -m benchmarks.long_tx --smoke
	$(PY) -m benchmarks.rotation_lab --smoke
	$(PY) -m benchmarks.web_load --smoke

bench-monitor:   ## drain throughput with and without the monitor and a metrics scrape watching
	$(PY) -m benchmarks.monitor_load

bench-long-tx:   ## pickup and drain through a 30-minute held xmin horizon, on a throw-away cluster (35 min)
	$(PY) -m benchmarks.long_tx

rotation-lab:    ## issue 17's candidate live-table layouts side by side through a held snapshot (7 min)
	$(PY) -m benchmarks.rotation_lab

bench-web:       ## job search with 1M jobs in history, and drain throughput with the dashboard open
	$(PY) -m benchmarks.web_load

churn:           ## the 30-minute churn run; rewrites its section of docs/benchmarks.md
	$(PY) -m benchmarks.churn --minutes 30 --write-docs

explain:         ## real plans of the statements inside claim() and complete()
	$(PY) -m benchmarks.explain
