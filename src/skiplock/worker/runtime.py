"""Worker: the blocking face of AsyncWorker for sync applications.

Not a generated twin on purpose: the runtime is asyncio-only, and the worker is a
long-running process, so ``run()`` owns an event loop in the calling thread and sync tasks still
run in a thread pool. ``Worker`` accepts ``def`` tasks only, so nothing async hides in a sync app.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from typing import Any

from skiplock.errors import ConfigError
from skiplock.task import REGISTRY, Task
from skiplock.worker.runtime_async import AsyncWorker, WorkerStats

__all__ = ["Worker"]


class Worker:
    """Run sync tasks until stopped; takes the same arguments as :class:`AsyncWorker`."""

    def __init__(self, tasks: Iterable[Task[Any]] | None = None, **options: Any) -> None:
        chosen = list(REGISTRY.values()) if tasks is None else list(tasks)
        coroutines = [t.name for t in chosen if t.is_async]
        if coroutines:
            raise ConfigError(f"Worker runs `def` tasks only; use AsyncWorker for async tasks {coroutines}")
        self._loop: asyncio.AbstractEventLoop | None = None
        # Built now, so bad options raise here rather than in run(); it binds to run()'s loop.
        self._worker = AsyncWorker(chosen, **options)
        self._ready = threading.Event()

    def __repr__(self) -> str:
        return repr(self._worker).replace("AsyncWorker", "Worker", 1)

    @property
    def stats(self) -> WorkerStats:
        return self._worker.stats

    def run(self) -> None:
        """Block until ``stop()`` (from another thread), a signal, or burst mode ends."""
        asyncio.run(self._main())

    def stop(self, *, force: bool = False) -> None:
        """Ask a running worker to stop (thread-safe)."""
        self._ready.wait()
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._worker.stop(force=force), self._loop)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._ready.set()
        await self._worker.run()
