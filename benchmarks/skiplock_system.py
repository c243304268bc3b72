"""skiplock through its public Python API, configured as we recommend for throughput."""

from __future__ import annotations

import psycopg

import skiplock

#: Worker settings for the drain: batches of up to 1,000 claims, acks batched naturally.
WORKER = {"concurrency": 500, "prefetch": 500}


def setup(dsn: str) -> None:
    skiplock.Migrator(dsn).up()


def reset(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE skiplock.job, skiplock.job_history, skiplock.worker")


def _specs(n: int) -> list[skiplock.JobSpec]:
    return [skiplock.JobSpec(task="noop", args={"i": i}, queue="bench") for i in range(n)]


def batch_enqueue(dsn: str, n: int, batch: int) -> None:
    with skiplock.Client(dsn, max_size=1) as client:
        for start in range(0, n, batch):
            client.enqueue_many(_specs(min(batch, n - start)))


def single_enqueue(dsn: str, n: int) -> None:
    with skiplock.Client(dsn, max_size=1) as client:
        for i in range(n):
            client.enqueue("noop", {"i": i}, queue="bench")
