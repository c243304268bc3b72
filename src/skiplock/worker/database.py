"""The worker's statements: on its pool, retried through connection errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from skiplock._core.statements import BoundStatement
from skiplock._driver.errors import is_transient
from skiplock._driver.executor_async import AsyncExecutor
from skiplock.errors import ConfigError, DatabaseUnavailable, SkiplockError

__all__ = ["WorkerDatabase"]

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
