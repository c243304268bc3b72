"""The worker's maintenance services: one round of each, at a time of the caller's choosing, and
the signals a running worker gives for them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

import skiplock
from skiplock._driver.executor_async import AsyncExecutor
from skiplock.testing import abandon
from skiplock.worker.database import WorkerDatabase
from skiplock.worker.maintenance import PartitionKeeper, Reaper, Scheduler
from skiplock.worker.signals import Signal


@pytest.fixture
async def database(dsn: str) -> AsyncIterator[WorkerDatabase]:
    async with AsyncConnectionPool(dsn, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:
        yield WorkerDatabase(AsyncExecutor(pool), forced=lambda: False)


def now(conn: psycopg.Connection) -> object:
    return conn.execute("SELECT now()").fetchone()[0]


async def test_a_reaper_round_as_of_a_later_time_reaps_leases_that_expire_by_then(database, client, conn):
    job = client.enqueue("t", queue="m")
    assert abandon(client, queues=["m"], lease=timedelta(minutes=10)) == [job.id]
    reaper = Reaper(database, timedelta(seconds=1), Signal())
    await reaper.run_once()
    assert client.get_job(job.id).state is skiplock.JobState.RUNNING  # its lease holds today
    await reaper.run_once(as_of=now(conn) + timedelta(minutes=11))
    reaped = client.get_job(job.id)
    assert reaped.state in (skiplock.JobState.AVAILABLE, skiplock.JobState.RETRYABLE)
    assert reaped.errors[-1]["type"] == "LeaseExpired"


async def test_a_partition_round_as_of_a_later_day_creates_that_days_partition(database, conn):
    later = now(conn) + timedelta(days=40)
    name = f"job_history_p{later:%Y%m%d}"

    def partitions() -> set[str]:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'skiplock.job_history'::regclass"
        ).fetchall()
        return {r[0] for r in rows}

    assert name not in partitions()
    keeper = PartitionKeeper(database, timedelta(hours=1), Signal(), retention=timedelta(days=400))
    await keeper.run_once(as_of=later)
    assert name in partitions()


async def test_a_scheduler_round_as_of_a_later_time_fires_the_ticks_due_by_then(database, client, conn):
    client.schedule("hourly", "0 * * * *", "report", queue="m")
    scheduler = Scheduler(database, Signal(), specs=[], tasks={})
    at = now(conn) + timedelta(hours=3)
    wait = await scheduler.run_once(as_of=at)
    jobs = client.list_jobs(queue="m", task="report")
    assert len(jobs) == 1  # the latest due tick only: the first fire has no earlier tick to make up
    assert wait is not None
    assert 0 < wait <= 3600
    again = await scheduler.run_once(as_of=at)
    assert len(client.list_jobs(queue="m", task="report")) == 1  # each tick is enqueued once
    assert again == pytest.approx(wait, abs=0.01)


async def test_a_running_worker_signals_its_rounds(dsn, client):
    @skiplock.task(queue="sig")
    async def noop() -> None:
        return None

    noop.using(client=client).enqueue()
    worker = skiplock.AsyncWorker([noop], dsn=dsn, reap_interval=timedelta(milliseconds=50))
    async with worker:
        await asyncio.wait_for(worker.signals.claimed.wait_for(1), 10)
        await asyncio.wait_for(worker.signals.acked.wait_for(1), 10)
        await asyncio.wait_for(worker.signals.reaped.wait_for(2), 10)
        await asyncio.wait_for(worker.signals.maintained.wait_for(1), 10)
        await asyncio.wait_for(worker.signals.scheduled.wait_for(1), 10)
        await asyncio.wait_for(worker.signals.idle.wait_for(1), 10)
        await asyncio.wait_for(worker.signals.listening.wait(), 10)
    assert worker.signals.claimed_jobs.count == 1
    assert worker.held == 0
