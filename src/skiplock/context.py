"""The running job's context: ``skiplock.current_job()`` inside a task."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from skiplock.errors import ConfigError, LeaseLost
from skiplock.models import Job, ParentResult

if TYPE_CHECKING:
    from skiplock._driver.protocols import AsyncJobConnection, JobConnection

__all__ = ["JobContext", "current_job"]


class _TransactionHook(Protocol):
    """How a context reaches its worker to open the job's transaction (the worker implements it)."""

    def transaction(self, ctx: JobContext) -> JobConnection: ...

    async def atransaction(self, ctx: JobContext) -> AsyncJobConnection: ...


class _ReadHook(Protocol):
    """How a context reads the database through its worker (the worker implements it)."""

    def parent_results(self, job_id: int) -> list[ParentResult]: ...

    async def aparent_results(self, job_id: int) -> list[ParentResult]: ...


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
    # The job's transaction (see transaction()): the worker's hook that opens it, None outside a
    # worker and once the attempt is over, and the connection once opened. The hook reads and
    # writes both under its lock (a def task's thread and the event loop both get here).
    _tx_hook: _TransactionHook | None = None
    _tx_conn: Any = None
    # The worker's reads for this job (parent_results); None outside a worker.
    _reads: _ReadHook | None = None

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
            LeaseLost: the worker no longer holds the job (it was reaped, and may run elsewhere):
                stop, nothing this attempt does will be recorded.
        """
        self._check_lease()
        if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 <= percent <= 100:
            raise ConfigError(f"progress must be a number between 0 and 100, got {percent!r}")
        self._progress = (float(percent), None if message is None else str(message)[:1000])

    @property
    def lease_lost(self) -> bool:
        """True once the worker learned it no longer holds this job: its outcome will be ignored."""
        return self._lease_lost

    def _check_lease(self) -> None:
        if self._lease_lost:
            raise LeaseLost(
                f"job {self.job.id}: this worker no longer holds its lease (attempt {self.job.attempt}"
                " was reaped); nothing this attempt does will be recorded"
            )

    def transaction(self) -> JobConnection:
        """The job's transaction, for a ``def`` task's own writes: they commit with the job's completion.

        Returns a psycopg connection already inside an open transaction (the same one on every
        call within the attempt). Write with it and never commit or roll back: when the task
        returns, the worker completes the job on this connection and commits only if it still
        holds the job's lease, so the writes and the completion happen together or not at all.
        If the task raises, times out, is cancelled or released, or the lease was lost, the
        writes are rolled back. The transaction is read committed; inside it,
        ``with conn.transaction():`` makes a savepoint.

        Raises:
            ConfigError: called outside a task run by a skiplock worker, after the attempt is
                over, or from an ``async def`` task (use :meth:`atransaction`).
            LeaseLost: the worker no longer holds the job: its completion would be refused.
        """
        self._check_lease()
        hook = self._tx_hook
        if hook is None:
            raise ConfigError(_NO_TRANSACTION)
        return hook.transaction(self)

    async def atransaction(self) -> AsyncJobConnection:
        """The job's transaction for an ``async def`` task: :meth:`transaction`, as an async connection.

        Raises:
            ConfigError: called outside a task run by a skiplock worker, after the attempt is
                over, or from a ``def`` task's thread (use :meth:`transaction`).
            LeaseLost: the worker no longer holds the job: its completion would be refused.
        """
        self._check_lease()
        hook = self._tx_hook
        if hook is None:
            raise ConfigError(_NO_TRANSACTION)
        return await hook.atransaction(self)

    def parent_results(self) -> list[ParentResult]:
        """The job's parents (``depends_on``) and how each ended: state, result, last error.

        For a ``def`` task; a group's callback learns each member's outcome this way. Empty for
        a job without parents.

        Raises:
            ConfigError: called outside a task run by a skiplock worker, or from an ``async def``
                task (use :meth:`aparent_results`).
        """
        if self._reads is None:
            raise ConfigError("parent_results() needs a job run by a skiplock worker")
        return self._reads.parent_results(self.job.id)

    async def aparent_results(self) -> list[ParentResult]:
        """:meth:`parent_results` for an ``async def`` task."""
        if self._reads is None:
            raise ConfigError("aparent_results() needs a job run by a skiplock worker")
        return await self._reads.aparent_results(self.job.id)


_NO_TRANSACTION = "the job's transaction exists only while its task runs in a skiplock worker"


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
