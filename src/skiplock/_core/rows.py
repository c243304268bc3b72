"""Database rows → models."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING
from typing import Any

from skiplock._core.queries import ClaimRow
from skiplock.models import (
    Failure,
    GraphNode,
    HealthCheck,
    Job,
    JobState,
    ParentResult,
    QueueActivity,
    QueueLimits,
    QueueStat,
    Schedule,
    TaskStat,
)

__all__ = [
    "CLAIM_COLUMNS",
    "activity_from_row",
    "failure_from_row",
    "graph_node_from_row",
    "health_from_row",
    "job_from_claim",
    "job_from_row",
    "parent_result_from_row",
    "queue_limits_from_row",
    "queue_stat_from_row",
    "schedule_from_row",
    "task_stat_from_row",
]

_JOB_FIELDS = frozenset(Job.__dataclass_fields__)
_STATES = {s.value: s for s in JobState}

#: Column order of the ``claim`` named query: its ``-- returns:`` line (sql/queries/job.sql),
#: which tests/integration/test_named_queries.py compares with what the server returns.
CLAIM_COLUMNS = ClaimRow._fields


# Job is frozen: its __init__ sets each of its 24 fields through object.__setattr__, which is a
# quarter of the worker's own CPU per no-op job. A claimed job is built from its slots' setters
# instead (a unit test checks that both ways build equal Jobs).
_CLAIM_SETTERS = tuple(getattr(Job, name).__set__ for name in CLAIM_COLUMNS)
_UNCLAIMED = [f for name, f in Job.__dataclass_fields__.items() if name not in CLAIM_COLUMNS]
_DEFAULTS = tuple((getattr(Job, f.name).__set__, f.default) for f in _UNCLAIMED if f.default is not MISSING)
_FACTORIES: tuple[tuple[Callable[[Job, Any], None], Callable[[], Any]], ...] = tuple(
    (getattr(Job, f.name).__set__, f.default_factory) for f in _UNCLAIMED if f.default_factory is not MISSING
)
_STATE_AT = CLAIM_COLUMNS.index("state")


def job_from_claim(row: tuple[Any, ...]) -> Job:
    """Build a Job from a tuple row of the ``claim`` query: the worker's hot path, so no dict."""
    job = object.__new__(Job)
    for set_, value in zip(_CLAIM_SETTERS, row, strict=True):
        set_(job, value)
    _CLAIM_SETTERS[_STATE_AT](job, _STATES[row[_STATE_AT]])
    for set_, default in _DEFAULTS:
        set_(job, default)
    for set_, factory in _FACTORIES:
        set_(job, factory())
    return job


def job_from_row(row: Mapping[str, Any]) -> Job:
    """Build a Job from a ``skiplock.job``, ``job_history`` or ``jobs`` row (extra columns ignored)."""
    values = {k: v for k, v in row.items() if k in _JOB_FIELDS and v is not None}
    values["state"] = _STATES[row["state"]]
    return Job(**values)


_SCHEDULE_FIELDS = frozenset(Schedule.__dataclass_fields__)


def graph_node_from_row(row: Mapping[str, Any]) -> GraphNode:
    return GraphNode(
        id=int(row["id"]),
        queue=row["queue"],
        task=row["task"],
        state=_STATES[row["state"]],
        parents=[int(p) for p in row["parents"]],
        on_failure=list(row["on_failure"]),
        pending_parents=int(row["pending_parents"]),
        finished_at=row["finished_at"],
    )


def parent_result_from_row(row: Mapping[str, Any]) -> ParentResult:
    return ParentResult(
        parent_id=int(row["parent_id"]),
        task=row["task"],
        state=_STATES[row["state"]],
        result=row["result"],
        error=row["error"],
        on_failure=row["on_failure"],
    )


def schedule_from_row(row: Mapping[str, Any]) -> Schedule:
    """Build a Schedule from a ``skiplock.schedule`` row (extra columns ignored)."""
    return Schedule(**{k: v for k, v in row.items() if k in _SCHEDULE_FIELDS})


def queue_limits_from_row(row: Mapping[str, Any]) -> QueueLimits:
    """Build QueueLimits from a ``skiplock.queue`` row."""
    return QueueLimits(
        queue=row["name"],
        concurrency=row["concurrency_limit"],
        rate=row["rate_limit"],
        burst=row["rate_burst"],
        key_arg=row["key_arg"],
        per_key=row["key_concurrency_limit"],
        key_rate=row["key_rate_limit"],
        key_burst=row["key_rate_burst"],
    )


def queue_stat_from_row(row: Mapping[str, Any]) -> QueueStat:
    per_second = row["per_second"]
    return QueueStat(
        queue=row["queue"],
        state=JobState(row["state"]),
        jobs=int(row["jobs"]),
        oldest_age=row["oldest_age"],
        per_second=None if per_second is None else float(per_second),
        paused=bool(row["paused"]),
        concurrency_limit=row.get("concurrency_limit"),
        rate_limit=row.get("rate_limit"),
        key_arg=row.get("key_arg"),
        key_concurrency_limit=row.get("key_concurrency_limit"),
        key_rate_limit=row.get("key_rate_limit"),
    )


def activity_from_row(row: Mapping[str, Any]) -> QueueActivity:
    return QueueActivity(
        queue=row["queue"],
        enqueued_per_second=float(row["enqueued_per_second"]),
        started_per_second=float(row["started_per_second"]),
        completed_per_second=float(row["completed_per_second"]),
        failed_per_second=float(row["failed_per_second"]),
        pickup_p50=row["pickup_p50"],
        pickup_p95=row["pickup_p95"],
        pickup_p99=row["pickup_p99"],
    )


def task_stat_from_row(row: Mapping[str, Any]) -> TaskStat:
    return TaskStat(
        queue=row["queue"],
        task=row["task"],
        completed=int(row["completed"]),
        failed=int(row["failed"]),
        cancelled=int(row["cancelled"]),
        failure_rate=float(row["failure_rate"]),
        run_p50=row["run_p50"],
        run_p95=row["run_p95"],
        run_p99=row["run_p99"],
        retries=int(row["retries"]),
    )


def failure_from_row(row: Mapping[str, Any]) -> Failure:
    return Failure(**{k: row[k] for k in Failure.__dataclass_fields__})


def health_from_row(row: Mapping[str, Any]) -> HealthCheck:
    return HealthCheck(**{k: row[k] for k in HealthCheck.__dataclass_fields__})
