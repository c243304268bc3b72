"""The worker builds claimed jobs from their slots' setters; they must equal what Job() builds."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from skiplock._core.queries import ClaimRow
from skiplock._core.rows import CLAIM_COLUMNS, job_from_claim
from skiplock.models import Job, JobState


def _row(**overrides: object) -> tuple[object, ...]:
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    values: dict[str, object] = {
        "id": 7, "queue": "q", "task": "t", "args": {"a": [1, 2]}, "state": "running", "priority": -3,
        "attempt": 2, "max_attempts": 5, "run_at": now, "created_at": now, "attempted_at": now,
        "lease_token": uuid.uuid4(), "lease_expires_at": now, "worker_id": uuid.uuid4(),
        "dedupe_key": "k", "cancel_requested": True, "retry_policy": {"kind": "fixed"},
        "trace_parent": "00-abc-def-01",
    }  # fmt: skip
    values.update(overrides)
    return tuple(values[c] for c in CLAIM_COLUMNS)


def test_a_claimed_job_equals_the_job_its_constructor_builds() -> None:
    row = _row()
    expected = Job(**{**dict(zip(CLAIM_COLUMNS, row, strict=True)), "state": JobState.RUNNING})  # type: ignore[arg-type]
    built = job_from_claim(row)
    assert built == expected
    assert built.state is JobState.RUNNING
    # Fields the claim does not return take their defaults, a fresh list each time.
    assert built.errors == []
    assert built.errors is not job_from_claim(row).errors
    assert (built.finished_at, built.result, built.progress, built.pending_parents) == (None, None, None, 0)


def test_a_claimed_job_is_as_frozen_as_any_other() -> None:
    job = job_from_claim(_row())
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.attempt = 3  # type: ignore[misc]


def test_the_claim_columns_are_job_fields() -> None:
    assert set(CLAIM_COLUMNS) <= {f.name for f in dataclasses.fields(Job)}


def test_job_from_claim_puts_each_column_on_the_job_field_of_its_name() -> None:
    values: dict[str, Any] = {name: f"<{name}>" for name in ClaimRow._fields}
    values["state"] = "running"
    job = job_from_claim(tuple(ClaimRow(**values)))
    assert ClaimRow._fields == CLAIM_COLUMNS
    for name in ClaimRow._fields:
        expected = JobState.RUNNING if name == "state" else values[name]
        assert getattr(job, name) == expected, name
