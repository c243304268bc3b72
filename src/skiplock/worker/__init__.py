"""The worker runtime."""

from __future__ import annotations

from skiplock.worker.runtime import Worker
from skiplock.worker.runtime_async import AsyncWorker, WorkerStats

__all__ = ["AsyncWorker", "Worker", "WorkerStats"]
