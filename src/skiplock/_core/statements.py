"""Domain values → bound named statements, where binding is more than passing values on.

The binders of :mod:`skiplock._core.queries` (generated from ``sql/queries``) take each
statement's parameters as they are sent. The few here map domain objects onto them: a
``JobSpec`` onto ``enqueue``, a batch onto ``enqueue_many``'s column arrays, JSON values onto
their encoded text (validated: a job's args must be an object), states onto their labels.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from skiplock._core import graph, queries
from skiplock._sql import BoundStatement
from skiplock.backoff import Backoff
from skiplock.errors import ConfigError
from skiplock.models import JobSpec, JobState, Json

__all__ = [
    "BoundStatement",
    "complete",
    "dumps",
    "enqueue",
    "enqueue_many",
    "list_jobs",
    "purge",
    "upsert_schedule",
]


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
    """Bind one job: its args and retry policy encoded, its parents (existing jobs) resolved.

    Raises:
        ConfigError: the args are not a JSON object, the policy is not a stored kind, or a
            parent is not an existing job.
    """
    return queries.enqueue(
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

    return queries.enqueue_many(
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


# as_of (complete): the time the database acts at, for tests and skiplock.testing; None (the
# runtime) is the database's clock.


def complete(
    job_ids: Sequence[int],
    lease_tokens: Sequence[UUID],
    results: Sequence[Json],
    as_of: datetime | None = None,
) -> BoundStatement:
    """Bind a batch of completions; results are encoded, and sent as NULL when none has one."""
    encoded = [None if r is None else dumps(r) for r in results]
    return queries.complete(
        job_ids=job_ids,
        lease_tokens=lease_tokens,
        results=None if all(r is None for r in encoded) else encoded,
        as_of=as_of,
    )


def purge(
    queue: str | None, task: str | None, before: datetime | None, states: Sequence[JobState], max_jobs: int
) -> BoundStatement:
    return queries.purge(
        queue=queue, task=task, before=before, states=[s.value for s in states], max_jobs=max_jobs
    )


def list_jobs(
    *,
    queue: str | None = None,
    state: JobState | None = None,
    task: str | None = None,
    since: datetime | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> BoundStatement:
    return queries.list_jobs(
        queue=queue,
        state=None if state is None else state.value,
        task=task,
        since=since,
        before_id=before_id,
        limit=limit,
    )


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
    """Bind a schedule; its args are validated and encoded like a job's."""
    return queries.upsert_schedule(
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


def copy_row(spec: JobSpec, position: int) -> tuple[Any, ...]:
    """One job as a row of the ``copy_jobs`` COPY (its columns, in order), at 1-based ``position``."""
    return (
        position,
        spec.queue,
        spec.task,
        _args(spec.args),
        spec.priority,
        spec.run_at,
        spec.delay,
        spec.max_attempts,
        spec.dedupe_key,
        spec.dedupe_window,
        _policy(spec),
    )
