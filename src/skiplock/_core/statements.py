"""Domain calls → bound named statements (a name from ``sql/queries`` plus its parameters)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from skiplock._core import graph
from skiplock._sql import QUERIES, Statement
from skiplock.backoff import Backoff
from skiplock.errors import ConfigError
from skiplock.models import JobSpec, JobState, Json

__all__ = ["BoundStatement", "dumps"]


@dataclass(frozen=True, slots=True)
class BoundStatement:
    """A named statement and the parameters to run it with."""

    statement: Statement
    params: dict[str, Any]

    @property
    def name(self) -> str:
        return self.statement.name


def _bind(statement: str, /, **params: Any) -> BoundStatement:
    return BoundStatement(QUERIES[statement], params)


#: One encoder for every call: ``json.dumps`` with options builds a new encoder each time.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def dumps(value: Json) -> str:
    """Encode a JSON value compactly; raise ConfigError for what JSON cannot hold."""
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"value is not JSON-serialisable: {exc}") from exc
    except RecursionError:
        raise ConfigError("value is nested too deeply to encode as JSON") from None


def _args(args: Json) -> str:
    if not isinstance(args, dict):
        raise ConfigError(f"job args must be a dict of keyword arguments, got {type(args).__name__}")
    return dumps(args)


def _policy(spec: JobSpec) -> str | None:
    policy = spec.retry_backoff
    if policy is None:
        return None
    if not isinstance(policy, Backoff):
        raise ConfigError(
            "a per-call retry_backoff is stored with the job, so it must be skiplock.backoff.fixed, "
            f"linear or exponential, got {policy!r}"
        )
    return dumps(policy.as_json())


def enqueue(spec: JobSpec) -> BoundStatement:
    return _bind(
        "enqueue",
        queue=spec.queue,
        task=spec.task,
        args=_args(spec.args),
        priority=spec.priority,
        run_at=spec.run_at,
        delay=spec.delay,
        max_attempts=spec.max_attempts,
        dedupe_key=spec.dedupe_key,
        dedupe_window=spec.dedupe_window,
        retry_policy=_policy(spec),
        depends_on=_parents(spec),
        on_parent_failure=spec.on_parent_failure,
    )


def _parents(spec: JobSpec) -> str | None:
    """A job enqueued alone: its parents exist already (ids, Jobs, Dependency)."""
    if not spec.depends_on:
        return None
    refs: list[Json] = []
    for ref in spec.depends_on:
        job_id, on_failure = graph.existing_parent(ref)
        refs.append(job_id if on_failure is None else {"job": job_id, "on_failure": on_failure})
    return graph.parent_json(refs)


def enqueue_many(specs: Sequence[JobSpec], depends_on: Sequence[str | None] | None = None) -> BoundStatement:
    """Bind one batch. Columns that are the same for every job are sent once (broadcast)."""

    def column(values: list[Any]) -> list[Any] | None:
        first = values[0]
        if all(v == first for v in values):
            return None if first is None else [first]
        return values

    return _bind(
        "enqueue_many",
        queues=column([s.queue for s in specs]),
        tasks=column([s.task for s in specs]),
        args=[_args(s.args) for s in specs],
        priorities=column([s.priority for s in specs]),
        run_ats=column([s.run_at for s in specs]),
        delays=column([s.delay for s in specs]),
        max_attempts=column([s.max_attempts for s in specs]),
        dedupe_keys=column([s.dedupe_key for s in specs]),
        dedupe_windows=column([s.dedupe_window for s in specs]),
        retry_policies=column([_policy(s) for s in specs]),
        depends_on=None if depends_on is None else list(depends_on),
        on_parent_failure=None if depends_on is None else column([s.on_parent_failure for s in specs]),
    )


# as_of (claim, complete, fail, reap, fire_schedule): the time the database acts at, for tests and
# skiplock.testing; None (the runtime) is the database's clock.


def claim(
    queues: Sequence[str], worker_id: UUID, max_jobs: int, lease: timedelta, as_of: datetime | None = None
) -> BoundStatement:
    return _bind(
        "claim", queues=list(queues), worker_id=worker_id, max_jobs=max_jobs, lease=lease, as_of=as_of
    )


def complete(
    job_ids: Sequence[int],
    lease_tokens: Sequence[UUID],
    results: Sequence[Json],
    as_of: datetime | None = None,
) -> BoundStatement:
    encoded = [None if r is None else dumps(r) for r in results]
    return _bind(
        "complete",
        job_ids=list(job_ids),
        lease_tokens=list(lease_tokens),
        results=None if all(r is None for r in encoded) else encoded,
        as_of=as_of,
    )


def fail(
    job_id: int,
    lease_token: UUID,
    *,
    error: str,
    error_type: str | None = None,
    traceback: str | None = None,
    retry_in: timedelta | None = None,
    retryable: bool = True,
    as_of: datetime | None = None,
) -> BoundStatement:
    return _bind(
        "fail",
        job_id=job_id,
        lease_token=lease_token,
        error=error,
        error_type=error_type,
        traceback=traceback,
        retry_in=retry_in,
        retryable=retryable,
        as_of=as_of,
    )


def heartbeat(job_ids: Sequence[int], lease_tokens: Sequence[UUID], lease: timedelta) -> BoundStatement:
    return _bind("heartbeat", job_ids=list(job_ids), lease_tokens=list(lease_tokens), lease=lease)


def set_progress(
    job_ids: Sequence[int],
    lease_tokens: Sequence[UUID],
    progress: Sequence[float],
    messages: Sequence[str | None],
) -> BoundStatement:
    return _bind(
        "set_progress",
        job_ids=list(job_ids),
        lease_tokens=list(lease_tokens),
        progress=list(progress),
        messages=list(messages),
    )


def cancel_requested(job_ids: Sequence[int]) -> BoundStatement:
    return _bind("cancel_requested", job_ids=list(job_ids))


def release(job_ids: Sequence[int], lease_tokens: Sequence[UUID]) -> BoundStatement:
    return _bind("release", job_ids=list(job_ids), lease_tokens=list(lease_tokens))


def reap(max_jobs: int = 1000, as_of: datetime | None = None) -> BoundStatement:
    return _bind("reap", max_jobs=max_jobs, as_of=as_of)


def retry_failed(
    queue: str | None, task: str | None, since: datetime | None, max_jobs: int
) -> BoundStatement:
    return _bind("retry_failed", queue=queue, task=task, since=since, max_jobs=max_jobs)


def purge(
    queue: str | None, task: str | None, before: datetime | None, states: Sequence[JobState], max_jobs: int
) -> BoundStatement:
    return _bind(
        "purge", queue=queue, task=task, before=before, states=[s.value for s in states], max_jobs=max_jobs
    )


def retry(job_ids: Sequence[int]) -> BoundStatement:
    return _bind("retry", job_ids=list(job_ids))


def cancel(job_ids: Sequence[int]) -> BoundStatement:
    return _bind("cancel", job_ids=list(job_ids))


def get_job(job_id: int) -> BoundStatement:
    return _bind("get_job", job_id=job_id)


def job_graph(job_id: int) -> BoundStatement:
    return _bind("job_graph", job_id=job_id)


def parent_results(job_id: int) -> BoundStatement:
    return _bind("parent_results", job_id=job_id)


def list_jobs(
    *,
    queue: str | None = None,
    state: JobState | None = None,
    task: str | None = None,
    since: datetime | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> BoundStatement:
    return _bind(
        "list_jobs",
        queue=queue,
        state=None if state is None else state.value,
        task=task,
        since=since,
        before_id=before_id,
        limit=limit,
    )


def pause_queue(queue: str, until: datetime | None = None) -> BoundStatement:
    return _bind("pause_queue", queue=queue, until=until)


def resume_queue(queue: str) -> BoundStatement:
    return _bind("resume_queue", queue=queue)


def set_queue_limits(
    queue: str,
    concurrency: int | None,
    rate: float | None,
    burst: int | None,
    key_arg: str | None = None,
    per_key: int | None = None,
    key_rate: float | None = None,
    key_burst: int | None = None,
) -> BoundStatement:
    return _bind(
        "set_queue_limits",
        queue=queue,
        concurrency=concurrency,
        rate=rate,
        burst=burst,
        key_arg=key_arg,
        per_key=per_key,
        key_rate=key_rate,
        key_burst=key_burst,
    )


def rate_limits(queues: Sequence[str]) -> BoundStatement:
    return _bind("rate_limits", queues=list(queues))


def upsert_schedule(
    name: str,
    cron: str,
    task: str,
    *,
    queue: str,
    args: Json,
    tz: str,
    priority: int,
    max_attempts: int | None,
    catch_up: timedelta,
) -> BoundStatement:
    return _bind(
        "upsert_schedule",
        name=name,
        cron=cron,
        task=task,
        queue=queue,
        args=_args(args),
        tz=tz,
        priority=priority,
        max_attempts=max_attempts,
        catch_up=catch_up,
    )


def fire_schedule(name: str, ticks: Sequence[datetime], as_of: datetime | None = None) -> BoundStatement:
    return _bind("fire_schedule", name=name, ticks=list(ticks), as_of=as_of)


def database_now() -> BoundStatement:
    return _bind("database_now")


def job_range_stats(lo: int, hi: int) -> BoundStatement:
    return _bind("job_range_stats", lo=lo, hi=hi)


def list_schedules() -> BoundStatement:
    return _bind("list_schedules")


def pause_schedule(name: str) -> BoundStatement:
    return _bind("pause_schedule", name=name)


def resume_schedule(name: str) -> BoundStatement:
    return _bind("resume_schedule", name=name)


def delete_schedule(name: str) -> BoundStatement:
    return _bind("delete_schedule", name=name)


def list_workers() -> BoundStatement:
    return _bind("list_workers")


def queue_stats() -> BoundStatement:
    return _bind("queue_stats")


def queue_known(queue: str) -> BoundStatement:
    return _bind("queue_known", queue=queue)


def queue_limits(queue: str) -> BoundStatement:
    return _bind("queue_limits", queue=queue)


def events_enabled() -> BoundStatement:
    return _bind("events_enabled")


def queue_job_counts(queue: str) -> BoundStatement:
    return _bind("queue_job_counts", queue=queue)


def register_worker(
    worker_id: UUID, host: str, pid: int, queues: Sequence[str], concurrency: int
) -> BoundStatement:
    return _bind(
        "register_worker",
        worker_id=worker_id,
        host=host,
        pid=pid,
        queues=list(queues),
        concurrency=concurrency,
    )


def worker_heartbeat(worker_id: UUID, jobs_done: int) -> BoundStatement:
    return _bind("worker_heartbeat", worker_id=worker_id, jobs_done=jobs_done)


def deregister_worker(worker_id: UUID) -> BoundStatement:
    return _bind("deregister_worker", worker_id=worker_id)


def ensure_partitions(days_ahead: int = 3, as_of: datetime | None = None) -> BoundStatement:
    return _bind("ensure_partitions", days_ahead=days_ahead, as_of=as_of)


def drop_partitions(retention: timedelta, as_of: datetime | None = None) -> BoundStatement:
    return _bind("drop_partitions", retention=retention, as_of=as_of)


def queue_activity() -> BoundStatement:
    return _bind("queue_activity")


def task_stats() -> BoundStatement:
    return _bind("task_stats")


def recent_failures(limit: int) -> BoundStatement:
    return _bind("recent_failures", limit=limit)


def health() -> BoundStatement:
    return _bind("health")


def finished_since(seconds: float) -> BoundStatement:
    return _bind("finished_since", seconds=seconds)


def database_info() -> BoundStatement:
    return _bind("database_info")


def enable_events() -> BoundStatement:
    return _bind("enable_events")


def disable_events() -> BoundStatement:
    return _bind("disable_events")


def add_webhook(
    url: str, secret: str, events: Sequence[str], queues: Sequence[str] | None, tasks: Sequence[str] | None
) -> BoundStatement:
    return _bind(
        "add_webhook",
        url=url,
        secret=secret,
        events=list(events),
        queues=None if queues is None else list(queues),
        tasks=None if tasks is None else list(tasks),
    )


def remove_webhook(webhook_id: int) -> BoundStatement:
    return _bind("remove_webhook", webhook_id=webhook_id)


def list_webhooks() -> BoundStatement:
    return _bind("list_webhooks")


def webhook_for_delivery(webhook_id: int) -> BoundStatement:
    return _bind("webhook_for_delivery", webhook_id=webhook_id)


def set_traceparent(traceparent: str) -> BoundStatement:
    return _bind("set_traceparent", traceparent=traceparent)
