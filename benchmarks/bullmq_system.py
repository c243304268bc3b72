"""BullMQ (Node) on Redis and on its PostgreSQL backend, driven through ``bullmq/bench.mjs``.

Runs when ``node`` and ``npm`` are on PATH; the first use installs the pinned packages of
``benchmarks/bullmq/package.json`` from the npm registry. Redis runs as this machine has it
(no persistence: BullMQ on Redis is not durable here, every other system is). Configured as
BullMQ's docs recommend for throughput: ``addBulk`` for batches, a Worker with a high
concurrency for async no-op jobs (100 on Redis; 32 on PostgreSQL, its docs' best range).
The Node process reports its own elapsed time, CPU and RSS, so Node's start-up is not counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.common import as_url, npm_install, percentiles, run_json

HERE = Path(__file__).resolve().parent / "bullmq"
REDIS_URL = "redis://127.0.0.1:6379/5"
CONCURRENCY = {"redis": 100, "postgres": 32}


class BullMQ:
    """One BullMQ backend with the adapter interface the runner expects."""

    #: Runs in its own runtime and times its own drains and latency (Node: no start-up counted).
    EXTERNAL = True

    def __init__(self, backend: str) -> None:
        self.backend = backend

    def available(self) -> str | None:
        reason = npm_install(HERE, "bullmq")
        if reason is None and self.backend == "redis":
            try:
                import socket

                socket.create_connection(("127.0.0.1", 6379), timeout=2).close()
            except OSError as exc:
                return f"no Redis on 127.0.0.1:6379 ({exc})"
        return reason

    def _conn(self, dsn: str) -> str:
        return REDIS_URL if self.backend == "redis" else as_url(dsn)

    def _node(self, dsn: str, *args: Any, timeout: float = 1800) -> dict[str, Any]:
        argv = ["node", "bench.mjs", self.backend, self._conn(dsn), *map(str, args)]
        return run_json(argv, cwd=HERE, timeout=timeout)

    def setup(self, dsn: str) -> None:
        self._node(dsn, "setup")
        self.reset(dsn)

    def reset(self, dsn: str) -> None:
        self._node(dsn, "reset")

    def batch_enqueue(self, dsn: str, n: int, batch: int) -> float:
        return float(self._node(dsn, "batch", n, batch)["seconds"])

    def single_enqueue(self, dsn: str, n: int) -> float:
        return float(self._node(dsn, "single", n)["seconds"])

    def todo(self, dsn: str) -> int:
        return int(self._node(dsn, "count")["left"])

    def drain(self, dsn: str) -> dict[str, Any]:
        return self._node(dsn, "drain", CONCURRENCY[self.backend])

    def latency(self, dsn: str, rate: float, n: int) -> dict[str, Any]:
        out = self._node(dsn, "latency", rate, n, CONCURRENCY[self.backend])
        return percentiles(out["latencies_ms"]) | {"offered_rate": round(out["offered_rate"], 1)}


REDIS = BullMQ("redis")
POSTGRES = BullMQ("postgres")
