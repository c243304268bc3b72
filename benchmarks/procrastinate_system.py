"""Procrastinate through its public async API, configured as its docs recommend for throughput.

One ``App`` on a ``PsycopgConnector`` (psycopg 3 pool); batches through ``batch_defer_async``
(one round trip per batch); an async no-op task; the worker with ``concurrency=10`` (its docs:
concurrency is for async tasks; more than a few slots per core only adds contention here),
LISTEN/NOTIFY on, and ``wait=False`` for the drain so it exits once caught up. Completed jobs
stay in ``procrastinate_jobs`` (its default, ``delete_jobs="never"``), as skiplock keeps history.
Optional: reported, not required.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

CONCURRENCY = 10


def available() -> str | None:
    """Return None when Procrastinate can run here, else why not."""
    try:
        import procrastinate  # noqa: F401
    except ImportError as exc:
        return f"not installed ({exc.name}); pip install 'skiplock[bench]'"
    return None


def _app(dsn: str, on_job: Callable[[int], None] | None = None) -> Any:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn, min_size=1, max_size=4))

    @app.task(name="noop", queue="bench")
    async def noop(i: int) -> None:
        if on_job is not None:
            on_job(i)

    return app


def setup(dsn: str) -> None:
    async def main() -> None:
        app = _app(dsn)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    asyncio.run(main())


def reset(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE procrastinate_jobs, procrastinate_events CASCADE")


def batch_enqueue(dsn: str, n: int, batch: int) -> None:
    async def main() -> None:
        app = _app(dsn)
        async with app.open_async():
            task = app.tasks["noop"]
            for start in range(0, n, batch):
                await task.batch_defer_async(*({"i": i} for i in range(start, min(n, start + batch))))

    asyncio.run(main())


def single_enqueue(dsn: str, n: int) -> None:
    async def main() -> None:
        app = _app(dsn)
        async with app.open_async():
            task = app.tasks["noop"]
            for i in range(n):
                await task.defer_async(i=i)

    asyncio.run(main())


async def drain(dsn: str) -> None:
    app = _app(dsn)
    async with app.open_async():
        await app.run_worker_async(
            queues=["bench"], concurrency=CONCURRENCY, wait=False, install_signal_handlers=False
        )


async def producer(dsn: str) -> tuple[Callable[[int], Awaitable[None]], Callable[[], Awaitable[None]]]:
    """For the latency workload: an enqueue-one-job function and a closer."""
    app = _app(dsn)
    await app.open_async()
    task = app.tasks["noop"]

    async def enqueue(i: int) -> None:
        await task.defer_async(i=i)

    return enqueue, app.close_async


async def consume(dsn: str, record: Callable[[int], None], done: asyncio.Event) -> None:
    """For the latency workload: run a listening worker until ``done`` is set."""
    app = _app(dsn, on_job=record)
    async with app.open_async():
        worker = asyncio.create_task(
            app.run_worker_async(queues=["bench"], concurrency=CONCURRENCY, install_signal_handlers=False)
        )
        await done.wait()
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
