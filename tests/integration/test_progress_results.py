"""Progress reports from running tasks, and waiting for results through completion notifications."""

from __future__ import annotations

import asyncio
import threading

import pytest

import skiplock
from skiplock import JobState
from waiting import await_until


@pytest.mark.timing  # batches per second of wall time: a loaded machine stretches the loop
async def test_progress_reported_in_a_hot_loop_is_coalesced_and_visible(dsn, client, conn):
    """Pass: 100,000 set_progress calls cost a handful of statements, and SQL sees the latest."""
    release = threading.Event()

    @skiplock.task(queue="q")
    def crunch() -> None:
        ctx = skiplock.current_job()
        for i in range(100_001):
            ctx.set_progress(i / 1000, f"row {i}")
        release.wait(30)

    job = crunch.using(client=client).enqueue()
    worker = skiplock.AsyncWorker([crunch], dsn=dsn, maintenance=False, schedules=False)
    running = asyncio.create_task(worker.run())
    try:
        await await_until(
            lambda: _async(client.get_job(job.id).progress == 100.0),
            timeout=15,
            what="the last progress report",
        )
        seen = client.get_job(job.id)
        assert seen.progress_message == "row 100000"
        row = conn.execute(
            "SELECT progress, progress_message FROM skiplock.jobs WHERE id = %s", [job.id]
        ).fetchone()
        assert row == (100.0, "row 100000")
        assert 1 <= worker.stats.progress_batches <= 20  # batched about once a second, not per call
    finally:
        release.set()
        await worker.stop()
        await running
    assert client.get_job(job.id).state is JobState.COMPLETED


def test_bad_progress_is_refused_in_python_and_in_sql(conn):
    ctx = skiplock.JobContext(
        job=skiplock.Job(id=1, queue="q", task="t", args={}, state=JobState.RUNNING), worker_id=None
    )  # type: ignore[arg-type]
    for bad in (-1, 101, float("nan"), "50", True):
        with pytest.raises(skiplock.ConfigError, match="progress must be a number between 0 and 100"):
            ctx.set_progress(bad)  # type: ignore[arg-type]
    conn.execute("SELECT skiplock.enqueue('q', 't')")
    job_id, token = conn.execute(
        "SELECT id, lease_token FROM skiplock.claim('{q}', gen_random_uuid(), 1)"
    ).fetchone()
    with pytest.raises(Exception, match="progress must be between 0 and 100, got 150"):
        conn.execute(
            "SELECT skiplock.set_progress(ARRAY[%s::bigint], ARRAY[%s::uuid], ARRAY[150.0])", [job_id, token]
        )


async def test_result_waits_for_completion_and_raises_for_failed_jobs(dsn, aclient):
    @skiplock.task(queue="q", max_attempts=1)
    async def square(x: int) -> int:
        if x < 0:
            raise ValueError("negative")
        return x * x

    ok = await square.using(client=aclient).aenqueue(x=7)
    bad = await square.using(client=aclient).aenqueue(x=-1)
    worker = skiplock.AsyncWorker([square], dsn=dsn, maintenance=False, schedules=False)
    waiting = asyncio.create_task(aclient.result(ok.id, timeout=20))
    await asyncio.sleep(0)
    running = asyncio.create_task(worker.run())
    try:
        assert await waiting == 49
        with pytest.raises(skiplock.JobFailed, match="negative") as failed:
            await aclient.result(bad.id, timeout=20)
        assert failed.value.job.state is JobState.FAILED
    finally:
        await worker.stop()
        await running


async def test_wait_times_out_on_a_job_nobody_runs(aclient):
    job = await aclient.enqueue("nobody_runs_this", queue="idle")
    with pytest.raises(TimeoutError, match=r"did not finish within 0\.3s"):
        await aclient.wait(job.id, timeout=0.3, poll_interval=0.1)


async def _async(value: bool) -> bool:
    return value
