"""Running one job's task: its arguments, its timeout, its cancellation, a ``def`` task's thread.

The worker awaits :func:`run`; ``skiplock.testing.drain`` calls :func:`run_inline`, which runs
the task in the caller's thread. Both bind arguments with :func:`bind` and classify the run with
``skiplock._core.outcome``, so a task behaves the same in a test as in a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from skiplock._core import outcome
from skiplock._core.outcome import Outcome
from skiplock.context import _CURRENT, JobContext, set_current
from skiplock.errors import ConfigError
from skiplock.models import Job, Json
from skiplock.task import Task
from skiplock.worker.threads import TaskThreads, ThreadRun

__all__ = ["Bound", "bind", "run", "run_inline"]


@dataclass(frozen=True, slots=True)
class Bound:
    """A job's task with the keyword arguments it will be called with."""

    task: Task[Any]
    kwargs: dict[str, Json]


def bind(tasks: Mapping[str, Task[Any]], default: Task[Any] | None, job: Job) -> Bound | Outcome:
    """The task that runs ``job`` and its arguments, or the failure that ends it unrun."""
    task = tasks.get(job.task) or default
    if task is None:
        return outcome.unknown_task(job.task)
    try:
        return Bound(task, task.bind_args(job.args))
    except ConfigError as exc:
        return outcome.bad_arguments(str(exc))


async def run(
    bound: Bound,
    ctx: JobContext,
    *,
    threads: TaskThreads,
    on_thread: Callable[[ThreadRun], None],
    cancelled: Callable[[], bool],
) -> Outcome:
    """Run the task in this task (``async def``) or in ``threads`` (``def``), within its timeout.

    ``on_thread`` receives a ``def`` task's run as soon as it is handed to a thread. A cancellation of
    the calling task (on request, or a shutdown past its grace period) is absorbed: it ends the
    job as cancelled when ``cancelled()`` says so, else releases it; the caller carries on.
    """
    task, job, limit = bound.task, ctx.job, bound.task.timeout
    deadline = asyncio.timeout(limit.total_seconds()) if limit is not None else None
    token = set_current(ctx)
    try:
        if task.is_async:
            call = task.fn(**bound.kwargs)
        else:
            run = threads.submit(functools.partial(task.fn, **bound.kwargs))
            on_thread(run)
            call = run.future
        if deadline is None:
            result = await call
        else:
            async with deadline:
                result = await call
    except asyncio.CancelledError:
        # Only the job is cancelled: take the cancellation back from the caller's task.
        me = asyncio.current_task()
        if me is not None:
            me.uncancel()
        ctx._cancel_requested = True
        return outcome.CANCELLED if cancelled() else outcome.RELEASE
    except Exception as exc:
        if (
            limit is not None
            and deadline is not None
            and deadline.expired()
            and isinstance(exc, TimeoutError)
        ):
            ctx._cancel_requested = True  # a def task that polls cancel_requested stops
            return outcome.timed_out(task.name, limit, task.retry_delay(job))
        return _failed(bound, job, exc)
    finally:
        with contextlib.suppress(ValueError):  # reset from another context
            _CURRENT.reset(token)
    return outcome.completed(task.name, result)


def run_inline(bound: Bound, ctx: JobContext) -> Outcome:
    """Run the task in this thread (an ``async def`` one in a fresh event loop), as :func:`run`
    would: a ``def`` task that outlives its timeout is recorded as timed out once it returns
    (a worker stops waiting for it at the timeout and records the same failure)."""
    task, job, limit = bound.task, ctx.job, bound.task.timeout
    token = set_current(ctx)
    started = time.monotonic()
    try:
        value = task.fn(**bound.kwargs)
        if inspect.isawaitable(value):
            value = asyncio.run(_awaited(value, limit))
        elif limit is not None and time.monotonic() - started > limit.total_seconds():
            return outcome.timed_out(task.name, limit, task.retry_delay(job))
    except _Expired:
        if limit is None:  # pragma: no cover - only an awaited task with a timeout expires
            raise
        return outcome.timed_out(task.name, limit, task.retry_delay(job))
    except Exception as exc:
        return _failed(bound, job, exc)
    finally:
        _CURRENT.reset(token)
    return outcome.completed(task.name, value)


def _failed(bound: Bound, job: Job, exc: Exception) -> Outcome:
    task = bound.task
    return outcome.from_exception(
        exc, no_retry_on=task.no_retry_on, retry_delay=functools.partial(task.retry_delay, job)
    )


class _Expired(Exception):
    """An awaited task outlived its timeout (never a task's own TimeoutError)."""


async def _awaited(value: Any, limit: timedelta | None) -> Any:
    if limit is None:
        return await value
    deadline = asyncio.timeout(limit.total_seconds())
    try:
        async with deadline:
            return await value
    except TimeoutError:
        if deadline.expired():
            raise _Expired from None
        raise
