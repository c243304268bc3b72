"""Exceptions raised by skiplock.

Every error skiplock raises on purpose subclasses :class:`SkiplockError`; errors from the
database are translated at the driver boundary and keep the original as ``__cause__``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

__all__ = [
    "ConfigError",
    "DatabaseError",
    "DatabaseUnavailable",
    "Fail",
    "InvalidInput",
    "JobFailed",
    "JobNotFound",
    "LeaseLost",
    "Retry",
    "SchemaAhead",
    "SchemaMissing",
    "SchemaOutdated",
    "SkiplockError",
]


class SkiplockError(Exception):
    """Base class of every skiplock error."""


class ConfigError(SkiplockError):
    """Settings, task registration or arguments that cannot work (raised before any I/O)."""


class InvalidInput(SkiplockError):
    """The database rejected a call's input (bad queue or task name, args, sizes); nothing was written."""


class DatabaseUnavailable(SkiplockError):
    """The server could not be reached or the connection was lost."""


class DatabaseError(SkiplockError):
    """The database refused a statement for a reason no narrower skiplock error names.

    For example a permission the role lacks, a statement or lock timeout, or a constraint.
    ``sqlstate`` holds the five-character SQLSTATE when the server sent one; the driver's
    exception is ``__cause__``.
    """

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class SchemaMissing(SkiplockError):
    """The ``skiplock`` schema is not installed in this database: run ``skiplock migrate``."""


class SchemaOutdated(SkiplockError):
    """The database schema is older than this version of skiplock: run ``skiplock migrate``."""


class SchemaAhead(SkiplockError):
    """The database schema is newer than this version of skiplock: upgrade the package."""


class JobNotFound(SkiplockError):
    """No live or retained job has that id."""


class JobFailed(SkiplockError):
    """The job waited for ended ``failed`` or ``cancelled``; ``job`` holds it, errors and all."""

    def __init__(self, message: str, job: Any) -> None:
        super().__init__(message)
        self.job = job


class LeaseLost(SkiplockError):
    """The worker no longer holds the job's lease (it was reaped or finalized elsewhere).

    Raised inside a task by ``current_job().set_progress()``, ``transaction()`` and
    ``atransaction()`` once the worker's heartbeat found the lease gone: the job may already run
    on another worker, and nothing this attempt does will be recorded, so the task should stop.
    The worker counts the attempt once as ``lost`` whatever the task does next.
    """


class Retry(Exception):
    """Raise inside a task to retry the job after ``after`` (default: the task's backoff).

    The retry counts as an attempt: when attempts are used up the job ends in ``failed``.
    """

    def __init__(self, after: timedelta | None = None, reason: str = "retry requested") -> None:
        super().__init__(reason)
        self.after = after
        self.reason = reason


class Fail(Exception):
    """Raise inside a task to fail the job now, without further retries (dead-letter it)."""
