"""The running job's context: ``skiplock.current_job()`` inside a task."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from uuid import UUID

from skiplock.errors import ConfigError
from skiplock.models import Job

__all__ = ["JobContext", "current_job"]


@dataclass(slots=True, kw_only=True)
class JobContext:
    """What a task can know about the attempt it runs in.

    Attributes:
        job: the job as claimed (attempt already counts this run).
        worker_id: the worker running it.
    """

    job: Job
    worker_id: UUID
    # Plain flags, set by the worker's event loop and read from task threads: assigning a bool
    # is atomic under the GIL, and a threading.Event per job costs more than the job itself.
    _lease_lost: bool = False
    _cancel_requested: bool = False
    # The latest progress reported, and the one last sent: the worker sends a report when they
    # differ (replacing a tuple is atomic too).
    _progress: tuple[float, str | None] | None = None
    _progress_sent: tuple[float, str | None] | None = None

    @property
    def attempt(self) -> int:
        return self.job.attempt

    @property
    def cancel_requested(self) -> bool:
        """True once the worker is shutting down hard or the job was cancelled: stop early."""
        return self._cancel_requested

    def set_progress(self, percent: float, message: str | None = None) -> None:
        """Report how far the job got (0-100) and what it is doing, for ``skiplock jobs show`` and SQL.

        Cheap enough for a hot loop: it only records the value; the worker sends the latest
        report of each job in one batch about once a second.

        Raises:
            ConfigError: ``percent`` is not a number between 0 and 100.
        """
        if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 <= percent <= 100:
            raise ConfigError(f"progress must be a number between 0 and 100, got {percent!r}")
        self._progress = (float(percent), None if message is None else str(message)[:1000])

    @property
    def lease_lost(self) -> bool:
        """True once the worker learned it no longer holds this job: its outcome will be ignored."""
        return self._lease_lost


_CURRENT: contextvars.ContextVar[JobContext] = contextvars.ContextVar("skiplock_current_job")


def current_job() -> JobContext:
    """Return the context of the job running in this task (thread or coroutine).

    Raises:
        ConfigError: called outside a job run by a skiplock worker.
    """
    try:
        return _CURRENT.get()
    except LookupError:
        raise ConfigError("current_job() called outside a running skiplock job") from None


def set_current(ctx: JobContext) -> contextvars.Token[JobContext]:
    return _CURRENT.set(ctx)
