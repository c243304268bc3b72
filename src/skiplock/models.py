"""Plain data types shared by every layer: jobs, job states, queue statistics."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from skiplock.backoff import Backoff

__all__ = [
    "FINAL_STATES",
    "Dependency",
    "GraphNode",
    "Job",
    "JobSpec",
    "JobState",
    "Json",
    "ParentResult",
    "QueueLimits",
    "QueueStat",
    "Schedule",
    "WorkerInfo",
]

#: A JSON value as psycopg decodes ``jsonb``.
Json = Any


class JobState(enum.StrEnum):
    """The states of a job; mirrors the ``skiplock.job_state`` enum (a test keeps them equal)."""

    WAITING = "waiting"  # for its parents (depends_on) to finish
    SCHEDULED = "scheduled"
    AVAILABLE = "available"
    RUNNING = "running"
    RETRYABLE = "retryable"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


FINAL_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """One job as stored in ``skiplock.job`` (live) or ``skiplock.job_history`` (finished)."""

    id: int
    queue: str
    task: str
    args: dict[str, Json]
    state: JobState
    priority: int = 0
    attempt: int = 0
    max_attempts: int = 10
    run_at: datetime | None = None
    created_at: datetime | None = None
    attempted_at: datetime | None = None
    lease_token: UUID | None = None
    lease_expires_at: datetime | None = None
    worker_id: UUID | None = None
    dedupe_key: str | None = None
    cancel_requested: bool = False
    errors: list[dict[str, Json]] = field(default_factory=list)
    finished_at: datetime | None = None
    result: Json = None
    progress: float | None = None  # 0-100, as the task last reported it (live jobs)
    progress_message: str | None = None
    retry_policy: dict[str, Json] | None = None  # the per-call retry backoff stored on a live job
    trace_parent: str | None = None  # the W3C traceparent of the span that enqueued it (live jobs)
    pending_parents: int = 0  # parents not finished yet (waiting jobs)

    @property
    def is_final(self) -> bool:
        """Whether the job reached a final state (completed, failed or cancelled)."""
        return self.state in FINAL_STATES


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """What to enqueue: a task name, its keyword arguments and per-job options."""

    task: str
    args: dict[str, Json] = field(default_factory=dict)
    queue: str = "default"
    priority: int = 0
    run_at: datetime | None = None
    delay: timedelta | None = None
    max_attempts: int | None = None
    dedupe_key: str | None = None
    #: with dedupe_key: the key also holds this long after a job holding it completed
    dedupe_window: timedelta | None = None
    #: stored on the job; used instead of the task's policy (skiplock.backoff.fixed/linear/exponential)
    retry_backoff: Backoff | None = None
    #: parents: job ids, Jobs, other JobSpecs of the same enqueue_many batch, or Dependency(...)
    depends_on: tuple[ParentRef, ...] = ()
    #: when a parent fails or is cancelled: "cancel" this job (default) or "run" it anyway
    on_parent_failure: str | None = None


@dataclass(frozen=True, slots=True)
class Dependency:
    """A parent with its own failure rule: ``Dependency(job, on_failure="run")`` in ``depends_on``."""

    job: int | Job | JobSpec
    on_failure: str = "cancel"  # or "run"


#: What ``depends_on`` accepts: a job id, a Job, a JobSpec of the same batch, or a Dependency.
ParentRef = int | Job | JobSpec | Dependency


@dataclass(frozen=True, slots=True, kw_only=True)
class ParentResult:
    """A parent's outcome as its child sees it (``current_job().parent_results()``)."""

    parent_id: int
    task: str
    state: JobState
    result: Json  # what the parent returned (completed parents)
    error: str | None  # its last error (failed or cancelled parents)
    on_failure: str  # the edge's rule: "cancel" or "run"


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphNode:
    """One job of a workflow (``skiplock.job_graph``): its state and direct parents."""

    id: int
    queue: str
    task: str
    state: JobState
    parents: list[int]
    on_failure: list[str]  # per parent, in the same order
    pending_parents: int
    finished_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueStat:
    """One row of ``skiplock.queue_stats``: a queue and state with its count."""

    queue: str
    state: JobState
    jobs: int
    oldest_age: timedelta | None
    per_second: float | None
    paused: bool
    concurrency_limit: int | None = None
    rate_limit: float | None = None
    key_arg: str | None = None
    key_concurrency_limit: int | None = None
    key_rate_limit: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """One row of ``skiplock.schedule``: a cron schedule and where it stands."""

    name: str
    cron: str
    tz: str
    task: str
    queue: str
    args: dict[str, Json]
    priority: int
    max_attempts: int
    catch_up: timedelta
    paused: bool
    last_tick: datetime  # every tick up to here has been enqueued (or skipped as too old)
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerInfo:
    """One row of ``skiplock.workers``: a registered worker and what it holds."""

    id: UUID
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age: timedelta
    running: int  # jobs it holds now (running, prefetched included)
    jobs_done: int
    stale: bool  # silent for over a minute: crashed or hanging


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueLimits:
    """A queue's fleet-wide limits (``skiplock.set_queue_limits``); None means unlimited."""

    queue: str
    concurrency: int | None
    rate: float | None
    burst: int | None
    key_arg: str | None = None  # the job argument whose value is the key (a tenant, an account)
    per_key: int | None = None  # at most this many running per key
    key_rate: float | None = None  # at most this many started per second per key
    key_burst: int | None = None  # each key's bucket size


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueActivity:
    """One row of ``skiplock.queue_activity``: a queue's last minute."""

    queue: str
    enqueued_per_second: float
    started_per_second: float
    completed_per_second: float
    failed_per_second: float
    pickup_p50: timedelta | None  # due -> started, first attempts started in the last minute
    pickup_p95: timedelta | None
    pickup_p99: timedelta | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStat:
    """One row of ``skiplock.task_stats``: a task's last five minutes."""

    queue: str
    task: str
    completed: int
    failed: int
    cancelled: int
    failure_rate: float
    run_p50: timedelta | None
    run_p95: timedelta | None
    run_p99: timedelta | None
    retries: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """One row of ``skiplock.recent_failures``: a job's latest failed attempt of the last hour."""

    id: int
    queue: str
    task: str
    final: bool  # the job is failed for good (else it waits to retry)
    attempt: int | None
    failed_at: datetime | None
    error_type: str | None
    error: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthCheck:
    """One row of ``skiplock.health``: a check of the PostgreSQL under the queue."""

    name: str
    status: str  # ok, warn or critical
    value: str
    detail: str
    fix: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


#: The lifecycle events on channel ``skiplock_event`` (see ``skiplock.enable_events``).
EVENT_KINDS = ("enqueued", "started", "progress", "retried", "completed", "failed", "cancelled")


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Jobs of ``queue`` went through ``kind`` in one transaction (coalesced: no job data)."""

    kind: str  # one of EVENT_KINDS
    queue: str
