"""skiplock: a Postgres-native job queue. The database is the engine."""

from __future__ import annotations

import logging

from skiplock import backoff
from skiplock.client import Client
from skiplock.client_async import AsyncClient
from skiplock.context import JobContext, current_job
from skiplock.cron import cron
from skiplock.defaults import configure
from skiplock.errors import (
    ConfigError,
    DatabaseUnavailable,
    Fail,
    InvalidInput,
    JobFailed,
    JobNotFound,
    LeaseLost,
    Retry,
    SchemaAhead,
    SchemaMissing,
    SchemaOutdated,
    SkiplockError,
)
from skiplock.migrate import Migrator
from skiplock.migrate_async import AsyncMigrator, MigrationStatus
from skiplock.models import Job, JobSpec, JobState, QueueLimits, QueueStat, Schedule, WorkerInfo
from skiplock.task import Task, task
from skiplock.worker import AsyncWorker, Worker

__version__ = "0.1.0"

# A library logs, the application decides where logs go (the CLI configures them).
logging.getLogger("skiplock").addHandler(logging.NullHandler())

__all__ = [
    "AsyncClient",
    "AsyncMigrator",
    "AsyncWorker",
    "Client",
    "ConfigError",
    "DatabaseUnavailable",
    "Fail",
    "InvalidInput",
    "Job",
    "JobContext",
    "JobFailed",
    "JobNotFound",
    "JobSpec",
    "JobState",
    "LeaseLost",
    "MigrationStatus",
    "Migrator",
    "QueueLimits",
    "QueueStat",
    "Retry",
    "Schedule",
    "SchemaAhead",
    "SchemaMissing",
    "SchemaOutdated",
    "SkiplockError",
    "Task",
    "Worker",
    "WorkerInfo",
    "backoff",
    "configure",
    "cron",
    "current_job",
    "task",
]
