"""A task's run ends the same way in a worker and in ``skiplock.testing.drain``: both classify it
with one executor, so a test of a task tells what production will record."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import skiplock
from skiplock import JobState
from skiplock.testing import drain

FAST = {"poll_interval": timedelta(milliseconds=50), "reap_interval": timedelta(milliseconds=100)}


def run_in_worker(dsn: str, client: skiplock.Client, tasks: list[Any]) -> None:
    asyncio.run(skiplock.AsyncWorker(tasks, dsn=dsn, burst=True, **FAST).run())


def run_in_drain(dsn: str, client: skiplock.Client, tasks: list[Any]) -> None:
    drain(client, tasks)


RUNNERS: list[Callable[[str, skiplock.Client, list[Any]], None]] = [run_in_worker, run_in_drain]


def last_error(client: skiplock.Client, job_id: int) -> tuple[JobState, str, str]:
    job = client.get_job(job_id)
    return job.state, job.errors[-1]["type"], job.errors[-1]["error"]


@pytest.mark.parametrize("runner", RUNNERS, ids=["worker", "drain"])
def test_an_async_task_past_its_timeout_fails_as_timed_out(runner, dsn, client):
    @skiplock.task(queue="q", timeout=timedelta(milliseconds=50), max_attempts=1)
    async def hangs() -> None:
        await asyncio.sleep(30)

    job = hangs.using(client=client).enqueue()
    runner(dsn, client, [hangs])
    state, kind, message = last_error(client, job.id)
    assert (state, kind) == (JobState.FAILED, "TimeoutError")
    assert "exceeded its timeout of 0:00:00.050000" in message


@pytest.mark.parametrize("runner", RUNNERS, ids=["worker", "drain"])
def test_a_def_task_past_its_timeout_fails_as_timed_out(runner, dsn, client):
    @skiplock.task(queue="q", timeout=timedelta(milliseconds=50), max_attempts=1)
    def slow() -> str:
        time.sleep(0.2)  # a def task cannot be interrupted: it returns, and its value is ignored
        return "late"

    job = slow.using(client=client).enqueue()
    runner(dsn, client, [slow])
    got = client.get_job(job.id)
    assert (got.state, got.result) == (JobState.FAILED, None)
    assert [e["type"] for e in got.errors] == ["TimeoutError"]


@pytest.mark.parametrize("runner", RUNNERS, ids=["worker", "drain"])
def test_a_tasks_own_timeout_error_is_its_exception_not_a_timeout(runner, dsn, client):
    @skiplock.task(queue="q", max_attempts=1)
    async def upstream() -> None:
        raise TimeoutError("upstream did not answer")

    @skiplock.task(queue="q", timeout=timedelta(seconds=30), max_attempts=1)
    def upstream_sync() -> None:
        raise TimeoutError("upstream did not answer either")

    a = upstream.using(client=client).enqueue()
    b = upstream_sync.using(client=client).enqueue()
    runner(dsn, client, [upstream, upstream_sync])
    assert last_error(client, a.id) == (JobState.FAILED, "builtins.TimeoutError", "upstream did not answer")
    assert last_error(client, b.id) == (
        JobState.FAILED,
        "builtins.TimeoutError",
        "upstream did not answer either",
    )


@pytest.mark.parametrize("runner", RUNNERS, ids=["worker", "drain"])
def test_fail_no_retry_on_and_retry_mean_the_same_in_both(runner, dsn, client):
    class Permanent(Exception):
        pass

    @skiplock.task(queue="q", max_attempts=3, no_retry_on=(Permanent,))
    def permanent() -> None:
        raise Permanent("no such user")

    @skiplock.task(queue="q", max_attempts=3)
    def refused() -> None:
        raise skiplock.Fail("refused")

    @skiplock.task(queue="q", max_attempts=3)
    def later() -> None:
        raise skiplock.Retry(timedelta(hours=1), reason="not yet")

    @skiplock.task(queue="q")
    def odd() -> object:
        return object()  # not JSON: stored as null, the job still completes

    p, r, la, o = (t.using(client=client).enqueue() for t in (permanent, refused, later, odd))
    unknown = client.enqueue("nobody_has_this_task", queue="q")
    runner(dsn, client, [permanent, refused, later, odd])
    assert client.get_job(p.id).state is JobState.FAILED
    assert client.get_job(p.id).attempt == 1
    assert last_error(client, r.id) == (JobState.FAILED, "skiplock.errors.Fail", "refused")
    retried = client.get_job(la.id)
    assert (retried.state, retried.errors[-1]["type"]) == (JobState.RETRYABLE, "Retry")
    assert client.get_job(o.id).state is JobState.COMPLETED
    assert client.get_job(o.id).result is None
    state, kind, message = last_error(client, unknown.id)
    assert (state, kind) == (JobState.FAILED, "UnknownTask")
    assert "nobody_has_this_task" in message
