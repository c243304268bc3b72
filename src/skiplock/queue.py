"""A BullMQ-shaped layer: ``Queue(name).add(job_name, data)`` and ``QueueWorker(name, processor)``.

For teams coming from BullMQ (Node) or its Python client: the same nouns and verbs, in snake_case,
on skiplock's engine. A job's name is its skiplock task name and its data its args (a JSON
object); one processor function handles every name of a queue::

    queue = skiplock.Queue("emails")
    queue.add("welcome", {"user_id": 7}, attempts=5, backoff={"type": "exponential", "delay": 1000})

    def process(job: skiplock.QueueJob) -> str:
        if job.name == "welcome":
            return send_welcome(job.data["user_id"])
        raise skiplock.Fail(f"unknown job {job.name}")   # BullMQ's UnrecoverableError

    skiplock.QueueWorker("emails", process, concurrency=10).run()

Differences that matter are listed in docs/bullmq.md (delays are milliseconds here as in BullMQ;
``priority`` keeps BullMQ's meaning: 1 is the highest, and jobs without one come first).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from skiplock import backoff as _backoff
from skiplock._driver.protocols import CallerConnection
from skiplock.client import Client
from skiplock.context import current_job
from skiplock.defaults import get_client
from skiplock.errors import ConfigError
from skiplock.models import Job, JobSpec, JobState, Json
from skiplock.task import Task
from skiplock.worker import AsyncWorker

__all__ = ["Queue", "QueueJob", "QueueWorker"]

#: BullMQ's states, as get_job_counts reports them, and the skiplock states each one counts.
_COUNTED: dict[str, tuple[JobState, ...]] = {
    "waiting": (JobState.AVAILABLE,),
    "active": (JobState.RUNNING,),
    "delayed": (JobState.SCHEDULED, JobState.RETRYABLE),
    "waiting-children": (JobState.WAITING,),
    "completed": (JobState.COMPLETED,),
    "failed": (JobState.FAILED,),
    "cancelled": (JobState.CANCELLED,),  # not a BullMQ state: skiplock's cancel()
}
_OPTIONS = frozenset({"delay", "priority", "attempts", "backoff", "job_id"})


class Queue:
    """A queue, BullMQ style: ``add``, ``add_bulk``, ``pause``, ``resume``, ``get_job_counts``.

    Args:
        name: the queue (a skiplock queue name).
        client: the client to use; default: the process-default client (``SKIPLOCK_DSN``).
        default_job_options: options applied to every ``add`` unless given there.
    """

    def __init__(
        self, name: str, *, client: Client | None = None, default_job_options: Mapping[str, Any] | None = None
    ) -> None:
        self.name = name
        self._client = client
        self.default_job_options = dict(default_job_options or {})
        _check_options(self.default_job_options)

    def __repr__(self) -> str:
        return f"<skiplock.Queue {self.name!r}>"

    @property
    def client(self) -> Client:
        return self._client or get_client()

    def add(
        self,
        name: str,
        data: Mapping[str, Json] | None = None,
        *,
        conn: CallerConnection | None = None,
        **opts: Any,
    ) -> Job:
        """Add one job ``name`` with ``data`` (a JSON object). Options: ``delay`` (milliseconds or
        a timedelta), ``priority`` (1 is the highest; none comes first), ``attempts``,
        ``backoff`` (milliseconds, or ``{"type": "fixed"|"exponential", "delay": ms}``) and
        ``job_id`` (adding a job whose id a live job holds returns that job instead).
        ``conn``: add it inside your transaction."""
        spec = self._spec(name, data, opts)
        return self.client.enqueue(
            spec.task,
            spec.args,
            queue=spec.queue,
            priority=spec.priority,
            delay=spec.delay,
            max_attempts=spec.max_attempts,
            dedupe_key=spec.dedupe_key,
            retry_backoff=spec.retry_backoff,
            conn=conn,
        )

    def add_bulk(
        self, jobs: Iterable[Mapping[str, Any]], *, conn: CallerConnection | None = None
    ) -> list[int]:
        """Add many jobs in one round trip and one transaction: each a mapping with ``name``,
        optional ``data`` and ``opts``. Returns their ids in order."""
        specs = [self._spec(j["name"], j.get("data"), dict(j.get("opts") or {})) for j in jobs]
        return self.client.enqueue_many(specs, conn=conn)

    def pause(self) -> None:
        """Stop every worker from taking jobs of this queue (jobs being processed finish)."""
        self.client.pause_queue(self.name)

    def resume(self) -> None:
        self.client.resume_queue(self.name)

    def is_paused(self) -> bool:
        return any(s.paused for s in self.client.queue_stats() if s.queue == self.name)

    def get_job_counts(self, *types: str) -> dict[str, int]:
        """Jobs per BullMQ state (all of them when no type is given): ``waiting``, ``active``,
        ``delayed``, ``waiting-children``, ``completed``, ``failed``, plus ``cancelled`` and
        ``paused`` (the waiting jobs of a paused queue). Completed and failed count all retained
        history, so this scans it; ``skiplock.queue_stats`` is the cheap view for dashboards."""
        wanted = list(types) or [*_COUNTED, "paused"]
        unknown = [t for t in wanted if t not in _COUNTED and t != "paused"]
        if unknown:
            raise ConfigError(f"unknown job state(s) {unknown}; known: {[*_COUNTED, 'paused']}")
        by_state = self.client.job_counts(self.name)
        counts = {t: sum(by_state[s] for s in states) for t, states in _COUNTED.items()}
        paused = self.is_paused()
        counts["paused"] = counts["waiting"] if paused else 0
        if paused:
            counts["waiting"] = 0
        return {t: counts[t] for t in wanted}

    def get_job(self, job_id: int) -> Job:
        return self.client.get_job(job_id)

    def _spec(self, name: str, data: Mapping[str, Json] | None, opts: dict[str, Any]) -> JobSpec:
        merged = {**self.default_job_options, **opts}
        _check_options(merged)
        return JobSpec(
            task=name,
            args=dict(data or {}),
            queue=self.name,
            priority=_priority(merged.get("priority")),
            delay=_duration("delay", merged.get("delay")),
            max_attempts=merged.get("attempts"),
            dedupe_key=None if merged.get("job_id") is None else str(merged["job_id"]),
            retry_backoff=_retry(merged.get("backoff")),
        )


@dataclass(frozen=True, slots=True)
class QueueJob:
    """The job a QueueWorker's processor receives."""

    id: int
    name: str
    data: dict[str, Json]
    queue_name: str
    attempts_made: int  # attempts before this one (BullMQ counts from 0)
    timestamp: datetime | None  # when it was added

    def update_progress(self, percent: float, message: str | None = None) -> None:
        """Report progress (0-100), as ``current_job().set_progress``."""
        current_job().set_progress(percent, message)


class QueueWorker:
    """BullMQ's Worker: run ``processor(job)`` for every job of ``queue``, ``concurrency`` at a time.

    ``processor`` may be ``def`` (run in worker threads) or ``async def``; what it returns is the
    job's result, an exception fails the attempt (retried per the job's ``attempts`` and
    ``backoff``), ``skiplock.Fail`` fails it for good. Other keyword arguments go to
    :class:`skiplock.AsyncWorker` (``dsn``, ``lease``, ``burst``…). ``run()`` blocks;
    ``await arun()`` runs on your event loop.
    """

    def __init__(
        self,
        queue: str,
        processor: Callable[[QueueJob], Any] | Callable[[QueueJob], Awaitable[Any]],
        *,
        concurrency: int = 1,
        **options: Any,
    ) -> None:
        self.queue = queue
        self._worker = AsyncWorker(
            [], queues=[queue], concurrency=concurrency, default_task=_task(queue, processor), **options
        )

    def __repr__(self) -> str:
        return f"<skiplock.QueueWorker {self.queue!r}>"

    @property
    def stats(self) -> Any:
        return self._worker.stats

    def run(self) -> None:
        """Process jobs until stopped by a signal, ``close()`` from another thread, or burst mode."""
        asyncio.run(self.arun())

    async def arun(self) -> None:
        await self._worker.run()

    async def close(self, *, force: bool = False) -> None:
        """Stop: finish the jobs being processed (within the grace period), release the rest."""
        await self._worker.stop(force=force)


def _task(queue: str, processor: Callable[..., Any]) -> Task[Any]:
    def job() -> QueueJob:
        j = current_job().job
        return QueueJob(
            id=j.id,
            name=j.task,
            data=dict(j.args),
            queue_name=j.queue,
            attempts_made=j.attempt - 1,
            timestamp=j.created_at,
        )

    if inspect.iscoroutinefunction(processor):

        async def run_async(**_: Json) -> Any:
            return await processor(job())

        fn: Callable[..., Any] = run_async
    else:

        def run_sync(**_: Json) -> Any:
            return processor(job())

        fn = run_sync
    return Task(fn, name=f"skiplock.queue_worker:{queue}", queue=queue)


def _check_options(opts: Mapping[str, Any]) -> None:
    unknown = sorted(set(opts) - _OPTIONS)
    if unknown:
        raise ConfigError(f"unknown job option(s) {unknown}; skiplock.Queue takes {sorted(_OPTIONS)}")


def _priority(value: Any) -> int:
    if value is None or value == 0:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 32768:
        raise ConfigError(f"priority must be an int from 1 (highest) to 32768, got {value!r}")
    return -value  # skiplock runs higher first; BullMQ runs 1 first, and unprioritised before all


def _duration(what: str, value: Any) -> timedelta | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{what} must be milliseconds (a number >= 0) or a timedelta, got {value!r}")
    return timedelta(milliseconds=value)


def _retry(value: Any) -> _backoff.Backoff | None:
    if value is None:
        return None
    if isinstance(value, (int, float, timedelta)) and not isinstance(value, bool):
        return _backoff.fixed(_duration("backoff", value) or timedelta(0))
    if (
        isinstance(value, Mapping)
        and value.get("type") in ("fixed", "exponential")
        and set(value) <= {"type", "delay"}
    ):
        delay = _duration("backoff delay", value.get("delay", 0)) or timedelta(0)
        if value["type"] == "fixed":
            return _backoff.fixed(delay)
        return _backoff.exponential(delay, factor=2.0, jitter=False)
    raise ConfigError(
        f'backoff must be milliseconds or {{"type": "fixed"|"exponential", "delay": ms}}, got {value!r}'
    )
