"""A worker keeps its promises across an immediate PostgreSQL shutdown and restart.

Runs on a throw-away embedded server, never on the shared one.
"""

from __future__ import annotations

import asyncio
import collections
from datetime import timedelta

import psycopg
import pytest

import skiplock
from waiting import await_until

pytestmark = pytest.mark.slow


async def test_immediate_restart_mid_drain_loses_nothing_and_finalizes_each_job_once(throwaway):
    dsn = throwaway.dsn
    skiplock.Migrator(dsn).up()
    runs: collections.Counter[int] = collections.Counter()

    @skiplock.task(queue="r")
    async def step(i: int) -> int:
        runs[skiplock.current_job().job.id] += 1
        await asyncio.sleep(0.001)  # the work itself: spreads the drain over the crash
        return i

    with skiplock.Client(dsn) as client:
        ids = step.using(client=client).enqueue_many([{"i": i} for i in range(3000)])
    worker = skiplock.AsyncWorker(
        [step],
        dsn=dsn,
        concurrency=20,
        prefetch=20,
        lease=timedelta(seconds=2),
        reap_interval=timedelta(milliseconds=200),
        poll_interval=timedelta(milliseconds=200),
    )
    async with worker:
        await await_until(lambda: asyncio.sleep(0, len(runs) >= 500), timeout=60, what="drain under way")
        held_at_crash = worker.held
        await asyncio.to_thread(throwaway.crash)
        await asyncio.to_thread(throwaway.start)

        async def drained() -> bool:
            def query() -> bool:
                try:
                    with psycopg.connect(dsn) as c:
                        return c.execute("SELECT count(*) FROM skiplock.job").fetchone()[0] == 0
                except psycopg.OperationalError:
                    return False

            return await asyncio.to_thread(query)

        await await_until(drained, timeout=120, what="drain after restart")
        # LISTEN works again: the listener reconnected by itself.
        await asyncio.wait_for(worker.signals.listening.wait(), 30)
        assert worker.signals.reconnected.count >= 1

    with psycopg.connect(dsn) as c:
        completed = c.execute(
            "SELECT count(*), count(DISTINCT id) FROM skiplock.job_history WHERE state = 'completed' AND id = ANY(%s)",
            [ids],
        ).fetchone()
    assert completed == (3000, 3000)  # zero lost, none finalized twice
    assert set(runs) == set(ids)  # every job ran
    extra = sum(n - 1 for n in runs.values())
    assert extra <= held_at_crash  # re-runs only for jobs whose lease the crash could have orphaned
