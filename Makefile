# Shortcuts; each target is one documented command.
.PHONY: test test-faults lint bench bench-smoke bench-monitor churn explain

test:           ## the test suite (needs PostgreSQL on 127.0.0.1:5432, or falls back to pgserver)
	python -m pytest -q

test-faults:    ## the fault-injection scenarios at full size and duration (about 30 minutes)
	SKIPLOCK_FAULTS=full python -m pytest -q tests/faults

lint:           ## what CI checks besides the tests
	python tools/async_to_sync.py --check
	ruff check .
	ruff format --check .
	mypy
	lint-imports

bench:          ## the full side-by-side benchmarks (about 20 minutes); rewrites docs/benchmarks.md
	python -m benchmarks --write-docs

bench-smoke:    ## every workload at tiny sizes (CI)
	python -m benchmarks --smoke
	python -m benchmarks.churn --smoke
	python -m benchmarks.monitor_load --smoke

bench-monitor:  ## drain throughput with and without the monitor and a metrics scrape watching
	python -m benchmarks.monitor_load

churn:          ## the 30-minute churn run; rewrites its section of docs/benchmarks.md
	python -m benchmarks.churn --minutes 30 --write-docs

explain:        ## real plans of the statements inside claim() and complete()
	python -m benchmarks.explain
