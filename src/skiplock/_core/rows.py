"""Database rows → models."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from skiplock.models import Job, JobState, QueueStat

__all__ = ["job_from_row", "queue_stat_from_row"]

_JOB_FIELDS = frozenset(Job.__dataclass_fields__)


def job_from_row(row: Mapping[str, Any]) -> Job:
    """Build a Job from a ``skiplock.job``, ``job_history`` or ``jobs`` row (extra columns ignored)."""
    values = {k: v for k, v in row.items() if k in _JOB_FIELDS and v is not None}
    values["state"] = JobState(row["state"])
    return Job(**values)


def queue_stat_from_row(row: Mapping[str, Any]) -> QueueStat:
    per_second = row["per_second"]
    return QueueStat(
        queue=row["queue"],
        state=JobState(row["state"]),
        jobs=int(row["jobs"]),
        oldest_age=row["oldest_age"],
        per_second=None if per_second is None else float(per_second),
        paused=bool(row["paused"]),
    )
