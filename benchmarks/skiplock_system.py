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


def batch_enqueue_copy(dsn: str, n: int, batch: int) -> None:
    """batch_enqueue with the client's COPY path switched on (off by default: docs/performance.md)."""
    from skiplock._core import copying

    saved, copying.COPY_MIN_BATCH = copying.COPY_MIN_BATCH, 1
    try:
        batch_enqueue(dsn, n, batch)
    finally:
        copying.COPY_MIN_BATCH = saved


def single_enqueue(dsn: str, n: int) -> None:
    with skiplock.Client(dsn, max_size=1) as client:
        for i in range(n):
            client.enqueue("noop", {"i": i}, queue="bench")


def fill_history(dsn: str, rows: int, days: int = 10) -> None:
    """Put ``rows`` finished jobs into history, spread over the last ``days`` days' partitions."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT count(*) FROM skiplock.ensure_partitions(days_ahead => %s, as_of => now() - make_interval(days => %s))",
            [days + 2, days],
        )
        conn.execute(
            """
            INSERT INTO skiplock.job_history (id, queue, task, args, state, priority, attempt, max_attempts,
                                              run_at, created_at, errors, finished_at)
            SELECT g, 'bench', 'noop', jsonb_build_object('i', g), 'completed', 0, 1, 10, x.t, x.t, '[]', x.t
            FROM generate_series(1, %(rows)s) AS g
            CROSS JOIN LATERAL (
                SELECT now() - make_interval(days => %(days)s) * (1 - g::float8 / %(rows)s) AS t
            ) AS x
            """,
            {"rows": rows, "days": days},
        )
        conn.execute("SELECT setval('skiplock.job_id_seq', %s)", [rows])
        conn.execute("VACUUM ANALYZE skiplock.job_history")
