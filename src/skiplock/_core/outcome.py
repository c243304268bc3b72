"""What became of one run of a task, decided without I/O.

The worker and ``skiplock.testing.drain`` both classify a run here, so a task's ``Retry``,
``Fail``, ``no_retry_on``, timeout and return value mean the same in a test as in production.
"""

from __future__ import annotations

import enum
import logging
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from skiplock._core import queries
from skiplock._core.statements import BoundStatement, dumps
from skiplock.errors import ConfigError, Fail, Retry
from skiplock.models import Json

__all__ = [
    "CANCELLED",
    "RELEASE",
    "TX_ABORTED",
    "TX_ENDED",
    "Outcome",
    "OutcomeKind",
    "bad_arguments",
    "completed",
    "fail_statement",
    "from_exception",
    "recorded",
    "timed_out",
    "unknown_task",
]

log = logging.getLogger("skiplock.worker")


class OutcomeKind(enum.Enum):
    """How a run ends in the database: ``complete``, ``fail`` (retried or dead-lettered by the
    job's attempts and the error's retryability) or ``release`` (given back unrun, no attempt spent)."""

    COMPLETE = "complete"
    FAIL = "fail"
    RELEASE = "release"


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    result: Json = None
    error: str = ""
    error_type: str | None = None
    traceback: str | None = None
    retry_in: timedelta | None = None
    retryable: bool = True


RELEASE = Outcome(OutcomeKind.RELEASE)
#: A job cancelled on request: recorded as a non-retryable failure, which the database ends as
#: `cancelled` because the job's cancel_requested flag is set.
CANCELLED = Outcome(OutcomeKind.FAIL, error="cancelled on request", error_type="Cancelled", retryable=False)
#: A task whose job transaction is in error (a statement failed and the task went on) or whose
#: connection was lost: nothing can be committed, so the attempt fails and is retried.
TX_ABORTED = Outcome(
    OutcomeKind.FAIL,
    error="the job's transaction was aborted (a failed statement that the task caught, or a lost"
    " connection); nothing was committed",
    error_type="TransactionAborted",
)
#: A task that committed or rolled back its job transaction itself: its writes may be committed
#: without the completion, so the job is not run again (a bug to fix in the task).
TX_ENDED = Outcome(
    OutcomeKind.FAIL,
    error="the task committed or rolled back its job transaction itself; it must leave that to the worker",
    error_type="TransactionEnded",
    retryable=False,
)


def unknown_task(name: str) -> Outcome:
    return Outcome(
        OutcomeKind.FAIL,
        error=f"unknown task {name!r}: no task of that name is registered in this worker",
        error_type="UnknownTask",
        retryable=False,
    )


def bad_arguments(message: str) -> Outcome:
    return Outcome(OutcomeKind.FAIL, error=message, error_type="BadArguments", retryable=False)


def timed_out(task_name: str, timeout: timedelta, retry_in: timedelta | None) -> Outcome:
    return Outcome(
        OutcomeKind.FAIL,
        error=f"task {task_name!r} exceeded its timeout of {timeout}",
        error_type="TimeoutError",
        retry_in=retry_in,
    )


def from_exception(
    exc: Exception,
    *,
    no_retry_on: tuple[type[BaseException], ...],
    retry_delay: Callable[[], timedelta | None],
) -> Outcome:
    """The outcome of a task that raised ``exc``: ``Retry`` retries (after its own delay, else the
    task's policy), ``Fail`` and ``no_retry_on`` fail at once, anything else is retried by policy.
    ``retry_delay`` is called only when a delay is needed (it may run a user's policy)."""
    if isinstance(exc, Retry):
        after = exc.after if exc.after is not None else retry_delay()
        return Outcome(OutcomeKind.FAIL, error=exc.reason, error_type="Retry", retry_in=after)
    retryable = not isinstance(exc, Fail) and not isinstance(exc, no_retry_on)
    return Outcome(
        OutcomeKind.FAIL,
        error=str(exc) or type(exc).__name__,
        error_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
        traceback="".join(traceback.format_exception(exc)),
        retry_in=retry_delay() if retryable else None,
        retryable=retryable,
    )


def completed(task_name: str, result: Any) -> Outcome:
    """The outcome of a task that returned ``result``; a value JSON cannot hold is stored as null."""
    if result is not None and not isinstance(result, (str, int, float, bool)):
        try:
            dumps(result)
        except ConfigError:
            log.warning("task %s returned a value that is not JSON; storing null", task_name)
            result = None
    return Outcome(OutcomeKind.COMPLETE, result=result)


def fail_statement(
    job_id: int, lease_token: uuid.UUID, outcome: Outcome, *, as_of: datetime | None = None
) -> BoundStatement:
    """The ``fail`` statement that records ``outcome`` (a failure) for the job's lease."""
    return queries.fail(
        job_id=job_id,
        lease_token=lease_token,
        error=outcome.error,
        error_type=outcome.error_type,
        traceback=outcome.traceback,
        retry_in=outcome.retry_in,
        retryable=outcome.retryable,
        as_of=as_of,
    )


def recorded(
    row: dict[str, Any] | None,
    attempt: int,
    worker_id: uuid.UUID,
    kind: OutcomeKind,
    error_type: str | None = None,
) -> str | None:
    """Decide from the job's row (``skiplock.jobs``) whether a worker's outcome of ``attempt``
    was recorded; return the job's state if so, else None.

    A completion: the job is completed at that attempt by that worker. A failure: the job's
    errors hold that attempt's entry from that worker with its error type (the reaper's own
    entry says LeaseExpired). A release: the job is waiting again with the attempt given back.
    """
    if row is None:
        return None
    state = str(row["state"])
    if kind is OutcomeKind.COMPLETE:
        done = state == "completed" and row["attempt"] == attempt and row["worker_id"] == worker_id
        return state if done else None
    if kind is OutcomeKind.RELEASE:
        released = state in ("available", "scheduled") and row["attempt"] == attempt - 1
        return state if released else None
    for entry in row["errors"] or []:
        if (
            entry.get("attempt") == attempt
            and entry.get("worker_id") == str(worker_id)
            and entry.get("type") == error_type
        ):
            # Retried and claimed again since: that retry was ours.
            return state if row["attempt"] == attempt else "retryable"
    return None
