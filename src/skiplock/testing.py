"""Helpers for testing code that uses skiplock, on a real database, without workers or sleeps.

- :class:`Clock`: the database clock plus an offset you control, so retries, delays, cron ticks and
  lease expiry come due when the test says so.
- :func:`drain`: run every due job in-process (the test's own thread), as a worker would, at the
  clock's time; jobs their run makes due (retries, children of a workflow) run too.
- :func:`assert_enqueued` / :func:`enqueued`: what is in the queue.
- :func:`abandon`: claim due jobs like a worker that then dies, to test what lease expiry does.

The pytest plugin (``skiplock.pytest_plugin``, loaded automatically once skiplock is installed)
gives fixtures for a migrated database, a client and a clock on top of these.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from skiplock._core import queries, statements
from skiplock._core.cron import due_ticks
from skiplock._core.outcome import Outcome, OutcomeKind, fail_statement
from skiplock._core.rows import job_from_row, parent_result_from_row
from skiplock._driver.session import Session
from skiplock.client import Client
from skiplock.context import JobContext
from skiplock.errors import ConfigError
from skiplock.models import Job, JobState, Json, ParentResult
from skiplock.task import REGISTRY, Task
from skiplock.worker import executor

__all__ = ["Clock", "Drained", "abandon", "assert_enqueued", "drain", "enqueued"]

#: A lease long enough that nothing expires while drain() runs a job.
_LEASE = timedelta(minutes=5)


class Clock:
    """The database clock shifted by an offset the test controls (``now() + offset``).

    ``drain``, ``abandon`` and the ``as_of`` of your own SQL calls use ``clock.now(client)``:
    jobs enqueued "now" are due, and a retry scheduled 30 s ahead is due after
    ``clock.advance(seconds=30)``. Nothing sleeps, and the database's own rules (backoff, run_at,
    leases, cron catch-up) decide what is due.
    """

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def advance(self, delta: timedelta | None = None, **parts: float) -> timedelta:
        """Move the clock forward by ``delta`` or by ``timedelta(**parts)``; return the offset."""
        step = delta if delta is not None else timedelta(**parts)
        if step < timedelta(0):
            raise ConfigError("the clock only moves forward")
        self.offset += step
        return self.offset

    def now(self, client: Client) -> datetime:
        """The database's ``now()`` plus the offset."""
        with _connect(client) as conn:
            return _now(conn) + self.offset


@dataclass
class Drained:
    """What :func:`drain` ran: job ids by how their attempt ended, in the order they ran."""

    completed: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)  # failed an attempt; will run again
    failed: list[int] = field(default_factory=list)  # failed for good (dead-lettered)
    cancelled: list[int] = field(default_factory=list)
    results: dict[int, Json] = field(default_factory=dict)  # completed job id -> its result
    errors: dict[int, str] = field(default_factory=dict)  # failed attempt's job id -> the error

    @property
    def ran(self) -> int:
        return len(self.completed) + len(self.retried) + len(self.failed) + len(self.cancelled)


def drain(
    client: Client,
    tasks: Iterable[Task[Any]] | None = None,
    *,
    clock: Clock | None = None,
    queues: Sequence[str] | None = None,
    limit: int = 10_000,
    schedules: bool = True,
) -> Drained:
    """Run every job that is due at the clock's time, in this thread, until none is left.

    Like a worker: expired leases are reaped first, due cron ticks are enqueued (``schedules``),
    jobs are claimed in priority order, and a task's ``Retry``/``Fail``/exceptions, ``timeout``
    and retry policy decide the outcome by the worker's own code (a ``def`` task that outlives
    its timeout is recorded as timed out when it returns). ``current_job()`` works inside the
    task (``parent_results()`` too;
    the job transaction needs a real worker). Jobs that become due meanwhile (workflow
    children, retries with no delay) run in the same call. Async tasks run in a fresh event loop,
    so call ``drain`` from synchronous tests (or from ``asyncio.to_thread``).

    Raises:
        ConfigError: more than ``limit`` job runs (a job retrying forever without delay).
    """
    registry = {t.name: t for t in (tasks if tasks is not None else REGISTRY.values())}
    served = list(queues) if queues else sorted({t.queue for t in registry.values()})
    if not served:
        raise ConfigError("no queues to drain: declare tasks or pass queues=")
    offset = clock.offset if clock is not None else timedelta(0)
    out = Drained()
    worker_id = uuid.uuid4()
    with _connect(client) as conn:
        at = _now(conn) + offset
        _run(conn, queries.reap(max_jobs=10_000, as_of=at))
        if schedules:
            _fire_schedules(conn, at)
        while True:
            rows = _run(
                conn, queries.claim(queues=served, worker_id=worker_id, max_jobs=100, lease=_LEASE, as_of=at)
            )
            if not rows:
                return out
            for row in rows:
                if out.ran >= limit:
                    raise ConfigError(
                        f"drain ran {limit} jobs and more are due; raise limit= if that is expected"
                    )
                _run_one(conn, registry, job_from_row(row), at, out)


def abandon(
    client: Client, *, clock: Clock | None = None, queues: Sequence[str], lease: timedelta = _LEASE
) -> list[int]:
    """Claim every job due in ``queues`` like a worker that then dies: they stay ``running`` until
    their lease expires (advance the clock past ``lease``; the next :func:`drain` reaps them)."""
    offset = clock.offset if clock is not None else timedelta(0)
    with _connect(client) as conn:
        rows = _run(
            conn,
            queries.claim(
                queues=queues, worker_id=uuid.uuid4(), max_jobs=10_000, lease=lease, as_of=_now(conn) + offset
            ),
        )
    return [int(r["id"]) for r in rows]


def enqueued(
    client: Client,
    task: str | Task[Any] | None = None,
    *,
    queue: str | None = None,
    states: Iterable[JobState] = (
        JobState.WAITING,
        JobState.SCHEDULED,
        JobState.AVAILABLE,
        JobState.RETRYABLE,
    ),
    **args: Json,
) -> list[Job]:
    """Live jobs not yet run to the end (by default: waiting, scheduled, available, retryable) of
    ``task`` and ``queue`` whose args include ``args``, oldest first."""
    name = task.name if isinstance(task, Task) else task
    wanted = set(states)
    jobs = client.list_jobs(queue=queue, task=name, limit=10_000)
    return sorted(
        (
            j
            for j in jobs
            if j.state in wanted and all(k in j.args and j.args[k] == v for k, v in args.items())
        ),
        key=lambda j: j.id,
    )


def assert_enqueued(
    client: Client,
    task: str | Task[Any],
    *,
    count: int | None = None,
    queue: str | None = None,
    **args: Json,
) -> list[Job]:
    """Assert that ``task`` has a job waiting to run (exactly ``count`` with ``count``) whose args
    include ``args``; return the jobs. The failure message lists what is enqueued instead."""
    found = enqueued(client, task, queue=queue, **args)
    if (count is None and found) or (count is not None and len(found) == count):
        return found
    name = task.name if isinstance(task, Task) else task
    others = enqueued(client, name, queue=queue)
    shown = "\n  ".join(f"#{j.id} {j.queue} {j.state.value} {j.args}" for j in others[:20]) or "(none)"
    wanted = "a job" if count is None else f"{count} job(s)"
    raise AssertionError(
        f"expected {wanted} of task {name!r} with args including {args}, found {len(found)}; "
        f"its enqueued jobs:\n  {shown}"
    )


# -- internals ---------------------------------------------------------------------------


class _Reads:
    """current_job().parent_results() inside drain: on drain's own connection."""

    def __init__(self, conn: Session) -> None:
        self._conn = conn

    def parent_results(self, job_id: int) -> list[ParentResult]:
        rows = self._conn.all(queries.parent_results(job_id=job_id))
        return [parent_result_from_row(r) for r in rows]

    async def aparent_results(self, job_id: int) -> list[ParentResult]:
        return self.parent_results(job_id)


def _run_one(
    conn: Session,
    registry: dict[str, Task[Any]],
    job: Job,
    at: datetime,
    out: Drained,
) -> None:
    bound = executor.bind(registry, None, job)
    if isinstance(bound, Outcome):
        ran = bound
    else:
        ctx = JobContext(job=job, worker_id=job.worker_id or uuid.uuid4(), _reads=_Reads(conn))
        ran = executor.run_inline(bound, ctx)
    if ran.kind is OutcomeKind.COMPLETE:
        _run(conn, statements.complete([job.id], [_lease(job)], [ran.result], as_of=at))
        out.completed.append(job.id)
        out.results[job.id] = ran.result
        return
    (row,) = _run(conn, fail_statement(job.id, _lease(job), ran, as_of=at))
    out.errors[job.id] = ran.error
    {"retryable": out.retried, "failed": out.failed, "cancelled": out.cancelled}.get(
        row["state"], out.failed
    ).append(job.id)


def _fire_schedules(conn: Session, at: datetime) -> None:
    for row in _run(conn, queries.list_schedules()):
        if row["paused"]:
            continue
        ticks = due_ticks(row["cron"], row["tz"], max(row["last_tick"], at - row["catch_up"]), at)
        if ticks:
            _run(conn, queries.fire_schedule(name=row["name"], ticks=ticks, as_of=at))


def _connect(client: Client) -> Session:
    return Session.connect(client.dsn)


def _now(conn: Session) -> datetime:
    (row,) = _run(conn, queries.database_now())
    now: datetime = row["now"]
    return now


def _lease(job: Job) -> uuid.UUID:
    if job.lease_token is None:  # claim always sets one
        raise ConfigError(f"job {job.id} was claimed without a lease token")
    return job.lease_token


def _run(conn: Session, bound: statements.BoundStatement) -> list[dict[str, Any]]:
    return conn.all(bound)
