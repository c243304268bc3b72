"""The hand-off from the producer to the runners: every ready job is taken, at full concurrency."""

from __future__ import annotations

import asyncio
from typing import Any

from skiplock.worker.runners import ReadyJobs


async def _runner(ready: ReadyJobs, taken: list[Any], hold: asyncio.Event | None) -> None:
    while True:
        job = await ready.take()
        taken.append(job)
        if hold is not None:
            await hold.wait()  # a task that waits on I/O


def test_jobs_are_taken_in_the_order_they_were_put() -> None:
    async def main() -> list[Any]:
        ready, taken = ReadyJobs(), []
        runners = [asyncio.create_task(_runner(ready, taken, None)) for _ in range(5)]
        await asyncio.sleep(0)
        for i in range(100):
            ready.put(i)  # type: ignore[arg-type]
        while len(taken) < 100:  # noqa: ASYNC110 - the runners' turns, not a wait for time
            await asyncio.sleep(0)
        for r in runners:
            r.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        return taken

    assert asyncio.run(main()) == list(range(100))


def test_jobs_that_wait_on_io_run_at_full_concurrency() -> None:
    # Each job blocks until released: every runner must be woken to take one.
    async def main() -> tuple[int, int]:
        ready, taken, hold = ReadyJobs(), [], asyncio.Event()
        runners = [asyncio.create_task(_runner(ready, taken, hold)) for _ in range(8)]
        await asyncio.sleep(0)
        for i in range(20):
            ready.put(i)  # type: ignore[arg-type]
        for _ in range(100):
            await asyncio.sleep(0)
        running, left = len(taken), len(ready)
        for r in runners:
            r.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        return running, left

    assert asyncio.run(main()) == (8, 12)


def test_a_woken_runner_that_is_cancelled_passes_the_job_on() -> None:
    async def main() -> list[Any]:
        ready, taken = ReadyJobs(), []
        first = asyncio.create_task(_runner(ready, taken, None))
        await asyncio.sleep(0)  # first waits
        second = asyncio.create_task(_runner(ready, taken, None))
        await asyncio.sleep(0)  # second waits too
        ready.put("job")  # type: ignore[arg-type]  # wakes the first...
        first.cancel()  # ...which is cancelled before it runs
        for _ in range(10):
            await asyncio.sleep(0)
        second.cancel()
        await asyncio.gather(first, second, return_exceptions=True)
        return taken

    assert asyncio.run(main()) == ["job"]


def test_take_all_empties_the_ready_jobs() -> None:
    ready = ReadyJobs()
    for i in range(3):
        ready.put(i)  # type: ignore[arg-type]
    assert ready.take_all() == [0, 1, 2]
    assert len(ready) == 0
