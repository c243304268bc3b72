"""The worker runtime."""

from __future__ import annotations

from skiplock.worker.runtime import Worker
from skiplock.worker.runtime_async import AsyncWorker, WorkerStats
from skiplock.worker.supervisor import run_processes

__all__ = ["AsyncWorker", "Worker", "WorkerStats", "run_processes"]
