"""Retry policies decide when a failed job runs again; some exceptions never retry."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from psycopg.types.json import Jsonb

import skiplock
from skiplock import JobState, backoff


async def test_a_task_policy_sets_the_next_run_and_the_attempt_history_is_kept(dsn, client):
    @skiplock.task(queue="q", max_attempts=3, retry_backoff=backoff.fixed(30))
    def flaky() -> None:
        raise ConnectionError("upstream down")

    job = flaky.using(client=client).enqueue()
    await skiplock.AsyncWorker([flaky], dsn=dsn, burst=True, maintenance=False, schedules=False).run()
    after = client.get_job(job.id)
    assert after.state is JobState.RETRYABLE
    (entry,) = after.errors
    failed_at = datetime.fromisoformat(entry["at"])
    assert after.run_at is not None
    assert abs((after.run_at - failed_at) - timedelta(seconds=30)) < timedelta(seconds=1)
    assert entry["type"] == "builtins.ConnectionError"
    assert entry["error"] == "upstream down"
    assert "raise ConnectionError" in entry["traceback"]
    assert entry["attempt"] == 1


async def test_exceptions_declared_non_retryable_fail_at_once(dsn, client):
    @skiplock.task(queue="q", max_attempts=5, no_retry_on=(KeyError,))
    def lookup() -> None:
        raise KeyError("missing")

    job = lookup.using(client=client).enqueue()
    await skiplock.AsyncWorker([lookup], dsn=dsn, burst=True, maintenance=False, schedules=False).run()
    after = client.get_job(job.id)
    assert (after.state, after.attempt) == (JobState.FAILED, 1)


async def test_a_per_call_policy_is_stored_on_the_job_and_replaces_the_tasks(dsn, client):
    """Pass: the same task enqueued with its own policy retries after that policy's delay (applied
    by the database), while a plain enqueue keeps the task's policy."""

    @skiplock.task(queue="q", max_attempts=3, retry_backoff=backoff.fixed(30))
    def flaky() -> None:
        raise ConnectionError("upstream down")

    own = flaky.using(client=client, retry_backoff=backoff.linear(300)).enqueue()
    plain = flaky.using(client=client).enqueue()
    assert own.retry_policy == {"kind": "linear", "step": 300.0}
    assert plain.retry_policy is None
    await skiplock.AsyncWorker([flaky], dsn=dsn, burst=True, maintenance=False, schedules=False).run()
    for job, delay in ((own, 300), (plain, 30)):
        after = client.get_job(job.id)
        assert after.state is JobState.RETRYABLE
        failed_at = datetime.fromisoformat(after.errors[0]["at"])
        assert after.run_at is not None
        assert abs((after.run_at - failed_at) - timedelta(seconds=delay)) < timedelta(seconds=1)


def test_a_per_call_policy_must_be_storable(client):
    @skiplock.task(queue="q")
    def noop() -> None: ...

    with pytest.raises(
        skiplock.ConfigError, match=r"must be skiplock\.backoff\.fixed, linear or exponential"
    ):
        noop.using(client=client, retry_backoff=lambda attempt: timedelta(seconds=attempt)).enqueue()


@pytest.mark.parametrize(
    "policy",
    [
        backoff.fixed(7),
        backoff.linear(5, cap=12),
        backoff.linear(timedelta(minutes=1)),
        backoff.exponential(2, cap=10, jitter=False),
        backoff.exponential(0.5, factor=3, jitter=False),
    ],
)
def test_python_and_sql_compute_the_same_delays(conn, policy):
    """A policy stored as data gives the delays its Python twin gives."""
    sql = [
        r[0]
        for r in conn.execute(
            "SELECT skiplock.retry_delay(%s, a) FROM generate_series(1, 12) AS a", [Jsonb(policy.as_json())]
        )
    ]
    assert sql == [policy(a) for a in range(1, 13)]


def test_dedupe_window_from_python(client, conn):
    @skiplock.task(queue="q")
    def report(day: str) -> None: ...

    call = report.using(client=client, dedupe_key="report:2030-01-01", dedupe_window=timedelta(hours=6))
    first = call.enqueue(day="2030-01-01")
    conn.execute(
        "WITH c AS (SELECT id, lease_token FROM skiplock.claim('{q}', gen_random_uuid(), 1))"
        " SELECT skiplock.complete(array_agg(id), array_agg(lease_token)) FROM c"
    )
    again = call.enqueue(day="2030-01-01")
    assert (again.id, again.state) == (first.id, JobState.COMPLETED)
    ids = client.enqueue_many(
        [
            skiplock.JobSpec(
                task="report", queue="q", dedupe_key="report:2030-01-01", dedupe_window=timedelta(hours=6)
            )
        ]
    )
    assert ids == [first.id]
