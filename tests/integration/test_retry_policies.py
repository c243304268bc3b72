"""Retry policies decide when a failed job runs again; some exceptions never retry."""

from __future__ import annotations

from datetime import datetime, timedelta

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
