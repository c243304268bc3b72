"""Row decoders: tuples of a generated row type → models."""

from __future__ import annotations

from typing import Any

from skiplock._core.queries import ClaimRow
from skiplock._core.rows import CLAIM_COLUMNS, job_from_claim
from skiplock.models import JobState


def test_job_from_claim_puts_each_column_on_the_job_field_of_its_name():
    values: dict[str, Any] = {name: f"<{name}>" for name in ClaimRow._fields}
    values["state"] = "running"
    job = job_from_claim(tuple(ClaimRow(**values)))
    assert ClaimRow._fields == CLAIM_COLUMNS
    for name in ClaimRow._fields:
        expected = JobState.RUNNING if name == "state" else values[name]
        assert getattr(job, name) == expected, name
