"""Cancelling running jobs: the worker holding them is told (NOTIFY, heartbeat fallback) and stops them."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import skiplock
from skiplock import JobState
from waiting import await_until


async def test_an_async_task_is_cancelled_at_once_and_the_worker_carries_on(dsn, client):
    started = asyncio.Event()
    cleaned_up: list[bool] = []

    @skiplock.task(queue="q", max_attempts=5)
    async def slow(i: int) -> str:
        if i == 0:
            started.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cleaned_up.append(True)
                raise
        return f"done {i}"

    victim = slow.using(client=client).enqueue(i=0)
    worker = skiplock.AsyncWorker([slow], dsn=dsn, maintenance=False, schedules=False)
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(started.wait(), 15)
        assert client.cancel([victim.id]) == {victim.id: JobState.RUNNING}
        await await_until(lambda: _done(client, victim.id), what="the cancelled job to end")
        other = slow.using(client=client).enqueue(i=1)
        await await_until(lambda: _done(client, other.id), what="the next job to run")
    finally:
        await worker.stop()
        await running
    ended = client.get_job(victim.id)
    assert (ended.state, ended.attempt) == (JobState.CANCELLED, 1)  # not retried
    assert ended.errors[-1]["type"] == "Cancelled"
    assert cleaned_up == [True]  # the task saw CancelledError and could clean up
    assert client.get_job(other.id).result == "done 1"


async def test_a_sync_task_sees_cancel_requested_through_the_heartbeat_without_listen(dsn, client):
    """Pass: with LISTEN off, the heartbeat's poll tells the sync task, which stops early."""
    started = threading.Event()

    @skiplock.task(queue="q")
    def loop() -> str:
        started.set()
        ctx = skiplock.current_job()
        for _ in range(3000):
            if ctx.cancel_requested:
                raise RuntimeError("stopping: cancelled")
            threading.Event().wait(0.01)
        return "ran to the end"

    job = loop.using(client=client).enqueue()
    worker = skiplock.AsyncWorker(
        [loop], dsn=dsn, listen=False, lease=timedelta(seconds=1.5), maintenance=False, schedules=False
    )
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.to_thread(started.wait, 15)
        client.cancel([job.id])
        await await_until(lambda: _done(client, job.id), timeout=15, what="the sync task to stop")
    finally:
        await worker.stop()
        await running
    ended = client.get_job(job.id)
    assert ended.state is JobState.CANCELLED
    assert "stopping: cancelled" in ended.errors[-1]["error"]


async def test_cancelling_a_finished_job_changes_nothing(dsn, client):
    @skiplock.task(queue="q")
    def quick() -> int:
        return 1

    job = quick.using(client=client).enqueue()
    await skiplock.AsyncWorker([quick], dsn=dsn, burst=True, maintenance=False, schedules=False).run()
    assert client.cancel([job.id]) == {job.id: JobState.COMPLETED}
    assert client.get_job(job.id).state is JobState.COMPLETED


async def test_a_released_job_whose_cancellation_was_requested_ends_cancelled(conn):
    """A worker shutting down releases what it holds; a cancel request must not be lost by it."""
    conn.execute("SELECT skiplock.enqueue('q', 't')")
    job_id, token = conn.execute(
        "SELECT id, lease_token FROM skiplock.claim('{q}', gen_random_uuid(), 1)"
    ).fetchone()
    conn.execute("SELECT skiplock.cancel(ARRAY[%s::bigint])", [job_id])
    assert conn.execute(
        "SELECT skiplock.release(ARRAY[%s::bigint], ARRAY[%s::uuid])", [job_id, token]
    ).fetchone() == (job_id,)
    assert conn.execute("SELECT state::text FROM skiplock.jobs WHERE id = %s", [job_id]).fetchone() == (
        "cancelled",
    )


async def _done(client: skiplock.Client, job_id: int) -> bool:
    return client.get_job(job_id).is_final
