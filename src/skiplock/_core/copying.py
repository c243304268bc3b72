"""Batch enqueue through COPY: when it pays, and the statements it runs (sql/queries/copy.sql).

A batch goes ``stage_jobs`` → ``copy_jobs`` (a COPY of one row per job into the session's
staging table) → ``enqueue_staged``, in one transaction; the first and last are the generated
binders of ``skiplock._core.queries``, the COPY is bound here. It costs more round trips than one
``enqueue_many`` call and, measured, more work too, so it is off unless ``COPY_MIN_BATCH`` is set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from skiplock._core.statements import copy_row
from skiplock._sql import QUERIES, Statement
from skiplock.models import JobSpec

__all__ = ["COPY_MIN_BATCH", "BoundCopy", "copy_jobs", "is_copy_worth_it"]

#: The smallest batch sent through COPY, or None: never. None, because the array path measured
#: cheaper at every batch size from 10 to 5,000 jobs (10-15% less CPU in the client and in the
#: server at 1,000 and 5,000; see docs/performance.md): staging is a second pass over the rows
#: that binary arrays do not need. Tests and measurements set it to exercise the path.
COPY_MIN_BATCH: int | None = None


@dataclass(frozen=True, slots=True)
class BoundCopy:
    """A named ``COPY … FROM STDIN`` statement and the rows to send it."""

    statement: Statement
    rows: list[tuple[Any, ...]]

    @property
    def name(self) -> str:
        return self.statement.name


def is_copy_worth_it(batch: Sequence[JobSpec]) -> bool:
    """Whether ``batch`` (jobs without parents) goes through COPY rather than one array call."""
    return COPY_MIN_BATCH is not None and len(batch) >= COPY_MIN_BATCH


def copy_jobs(specs: Sequence[JobSpec]) -> BoundCopy:
    """Bind one chunk: row ``k`` (1-based) is ``specs[k - 1]``, so errors name the same position."""
    return BoundCopy(QUERIES["copy_jobs"], [copy_row(s, k) for k, s in enumerate(specs, start=1)])
