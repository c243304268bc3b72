"""The raw-SQL ceiling: the least SQL a queue must run per job, from psycopg, no library around it."""

from __future__ import annotations

from collections.abc import Callable

import psycopg

SCHEMA = """
CREATE TABLE raw_job (
    id       bigserial PRIMARY KEY,
    queue    text NOT NULL,
    task     text NOT NULL,
    args     jsonb NOT NULL,
    state    text NOT NULL DEFAULT 'available',
    priority smallint NOT NULL DEFAULT 0,
    run_at   timestamptz NOT NULL DEFAULT now(),
    attempt  integer NOT NULL DEFAULT 0,
    lease_expires_at timestamptz
);
CREATE INDEX raw_job_claim_idx ON raw_job (queue, priority DESC, run_at, id) WHERE state = 'available';
CREATE TABLE raw_history (
    id bigint NOT NULL, queue text NOT NULL, task text NOT NULL, args jsonb NOT NULL, finished_at timestamptz NOT NULL
) PARTITION BY RANGE (finished_at);
CREATE TABLE raw_history_default PARTITION OF raw_history DEFAULT;
"""

CLAIM = """
UPDATE raw_job SET state = 'running', attempt = attempt + 1, lease_expires_at = now() + interval '30 seconds'
WHERE id IN (
    SELECT id FROM raw_job WHERE queue = 'bench' AND state = 'available'
    ORDER BY priority DESC, run_at, id LIMIT 1000 FOR UPDATE SKIP LOCKED
)
RETURNING id, args
"""

COMPLETE = """
WITH done AS (DELETE FROM raw_job WHERE id = ANY(%s) RETURNING id, queue, task, args)
INSERT INTO raw_history SELECT id, queue, task, args, now() FROM done
"""


def setup(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)


def reset(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE raw_job, raw_history")


def _args(n: int) -> list[str]:
    return [f'{{"i": {i}}}' for i in range(n)]


def batch_insert(dsn: str, n: int, batch: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for start in range(0, n, batch):
            conn.execute(
                "INSERT INTO raw_job (queue, task, args) SELECT 'bench', 'noop', a::jsonb FROM unnest(%b::text[]) AS a",
                [_args(min(batch, n - start))],
            )


def batch_copy(dsn: str, n: int, batch: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for start in range(0, n, batch):
            with (
                conn.transaction(),
                conn.cursor() as cur,
                cur.copy("COPY raw_job (queue, task, args) FROM STDIN") as copy,
            ):
                for a in _args(min(batch, n - start)):
                    copy.write_row(("bench", "noop", a))


def single_insert(dsn: str, n: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(n):
            conn.execute(
                "INSERT INTO raw_job (queue, task, args) VALUES ('bench', 'noop', %s::jsonb)",
                [f'{{"i": {i}}}'],
            )


def drain(dsn: str, on_batch: Callable[[int], None] | None = None) -> int:
    """Claim 1,000 at a time and complete each batch with one statement; return jobs done."""
    done = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            rows = conn.execute(CLAIM).fetchall()
            if not rows:
                return done
            conn.execute(COMPLETE, [[r[0] for r in rows]])
            done += len(rows)
            if on_batch is not None:
                on_batch(len(rows))
