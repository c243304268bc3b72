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
    DatabaseError,
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
from skiplock.models import (
    Dependency,
    GraphNode,
    Job,
    JobSpec,
    JobState,
    ParentResult,
    QueueLimits,
    QueueStat,
    Schedule,
    WorkerInfo,
)
from skiplock.queue import Queue, QueueJob, QueueWorker
from skiplock.task import Task, task
from skiplock.worker import AsyncWorker, Worker
from skiplock.workflow import chain, group

__version__ = "0.1.0"

# A library logs, the application decides where logs go (the CLI configures them).
logging.getLogger("skiplock").addHandler(logging.NullHandler())

__all__ = [
    "AsyncClient",
    "AsyncMigrator",
    "AsyncWorker",
    "Client",
    "ConfigError",
    "DatabaseError",
    "DatabaseUnavailable",
    "Dependency",
    "Fail",
    "GraphNode",
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
    "ParentResult",
    "Queue",
    "QueueJob",
    "QueueLimits",
    "QueueStat",
    "QueueWorker",
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
    "chain",
    "configure",
    "cron",
    "current_job",
    "group",
    "task",
]
