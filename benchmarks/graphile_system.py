"""graphile-worker 0.17.3 (Node), driven through ``graphile/bench.mjs``.

Runs when ``node`` and ``npm`` are on PATH; the first use installs the pinned packages of
``benchmarks/graphile/package.json`` from the npm registry (0.17.3 is the newest release that
runs on Node 20). Configured as its ``website/docs/performance.md`` recommends for throughput:
``concurrentJobs: 24``, ``maxPoolSize: 25``, ``localQueue: {size: 500}``,
``completeJobBatchDelay: 0``, ``failJobBatchDelay: 0``. Batches go through ``addJobs``, single
jobs through ``addJob``; a drain is ``runOnce()`` (each process works until nothing is left);
latency is a ``run()`` worker. graphile-worker installs its own schema (``graphile_worker``) in
its own database. The Node process reports its own elapsed time, CPU and RSS, so Node's
start-up is not counted (graphile-worker's own start-up inside ``runOnce`` is).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import psycopg

from benchmarks.common import as_url, npm_install, percentiles, run_json

HERE = Path(__file__).resolve().parent / "graphile"
#: Runs in its own runtime and times its own drains and latency.
EXTERNAL: Final = True


def available() -> str | None:
    """Return None when graphile-worker can run here (installing it if need be), else why not."""
    return npm_install(HERE, "graphile-worker")


def _node(dsn: str, *args: Any, timeout: float = 1800) -> dict[str, Any]:
    return run_json(["node", "bench.mjs", as_url(dsn), *map(str, args)], cwd=HERE, timeout=timeout)


def setup(dsn: str) -> None:
    _node(dsn, "setup")


def reset(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE graphile_worker._private_jobs, graphile_worker._private_job_queues")


def batch_enqueue(dsn: str, n: int, batch: int) -> float:
    return float(_node(dsn, "batch", n, batch)["seconds"])


def single_enqueue(dsn: str, n: int) -> float:
    return float(_node(dsn, "single", n)["seconds"])


def todo(dsn: str) -> int:
    # A completed job is deleted; a failed one would stay (none fail: the task is a no-op).
    with psycopg.connect(dsn, autocommit=True) as conn:
        return int(conn.execute("SELECT count(*) FROM graphile_worker._private_jobs").fetchone()[0])  # type: ignore[index]


def drain(dsn: str) -> dict[str, Any]:
    return _node(dsn, "drain")


def latency(dsn: str, rate: float, n: int) -> dict[str, Any]:
    out = _node(dsn, "latency", rate, n)
    return percentiles(out["latencies_ms"]) | {"offered_rate": round(out["offered_rate"], 1)}
