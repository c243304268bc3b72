"""The worker's database: its pool, its statements retried through connection errors, and
what a running task may read through it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from skiplock._core import queries
from skiplock._core.rows import parent_result_from_row
from skiplock._core.statements import BoundStatement
from skiplock._driver import jsonb
from skiplock._driver.errors import is_transient
from skiplock._driver.executor_async import AsyncExecutor, Conn
from skiplock.errors import ConfigError, DatabaseUnavailable, SkiplockError
from skiplock.models import ParentResult
from skiplock.settings import connection_options

__all__ = ["JobReads", "WorkerDatabase", "open_pool"]

log = logging.getLogger("skiplock.worker")


class WorkerDatabase:
    """Run the worker's bound statements on its pool, retrying connection errors with backoff
    (the pool reconnects) unless the worker is being stopped by force."""

    def __init__(self, executor: AsyncExecutor | None = None, *, forced: Callable[[], bool]) -> None:
        self._driver = executor
        self._forced = forced

    def attach(self, executor: AsyncExecutor | None) -> None:
        """Run on ``executor`` from now on (the worker's pool, once open); None detaches."""
        self._driver = executor

    @property
    def driver(self) -> AsyncExecutor:
        if self._driver is None:
            raise ConfigError("worker is not running")
        return self._driver

    async def rows(
        self, stmt: BoundStatement, *, attempts: int | None = 5, tuples: bool = False
    ) -> list[Any]:
        """Run ``stmt``; ``attempts=None`` retries until it succeeds or the worker is stopped by
        force. Rows are dicts, or plain tuples with ``tuples`` (the hot path)."""
        rows, _ = await self.tried(stmt, attempts=attempts, tuples=tuples)
        return rows

    async def tried(
        self, stmt: BoundStatement, *, attempts: int | None = 5, tuples: bool = False
    ) -> tuple[list[Any], bool]:
        """:meth:`rows`, and whether it took more than one try: then an earlier try may have
        been committed by the server even though its reply never came back."""
        delay = 0.05
        attempt = 0
        while True:
            attempt += 1
            try:
                run = self.driver.tuples(stmt) if tuples else self.driver.all(stmt)
                return await run, attempt > 1
            except SkiplockError as exc:
                if not is_transient(exc):
                    raise
                if (attempts is not None and attempt >= attempts) or self._forced():
                    raise DatabaseUnavailable(str(exc)) from exc
                log.warning("%s failed (%s); retrying in %.2fs", stmt.name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)


async def open_pool(dsn: str, *, concurrency: int, pgbouncer: bool) -> AsyncExecutor:
    """The worker's pool, open: up to ``concurrency`` connections (4 to 10) that decode JSON
    with the driver's faster decoder (``_driver.jsonb``)."""
    pool = AsyncExecutor.create(
        dsn,
        min_size=2,
        max_size=max(4, min(concurrency, 10)),
        timeout=10,
        application_name="skiplock-worker",
        options=connection_options(pgbouncer),
        configure=_fast_json,
    )
    await pool.open(timeout=30)
    return pool


async def _fast_json(executor: AsyncExecutor, conn: Conn) -> None:
    await jsonb.configure_async(conn)


class JobReads:
    """What a running task may read through its worker (``current_job().parent_results()``):
    on the worker's pool, from the event loop, or from a ``def`` task's thread."""

    def __init__(
        self, database: WorkerDatabase, loop: Callable[[], asyncio.AbstractEventLoop | None]
    ) -> None:
        self._database = database
        self._loop = loop  # the loop the worker runs on, once it runs

    async def aparent_results(self, job_id: int) -> list[ParentResult]:
        rows = await self._database.rows(queries.parent_results(job_id=job_id))
        return [parent_result_from_row(r) for r in rows]

    def parent_results(self, job_id: int) -> list[ParentResult]:
        loop = self._loop()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            raise ConfigError("parent_results() is for def tasks; an async def task awaits aparent_results()")
        return asyncio.run_coroutine_threadsafe(self.aparent_results(job_id), loop).result()
