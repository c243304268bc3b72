"""A ``django.tasks`` backend on skiplock.

    TASKS = {
        "default": {
            "BACKEND": "skiplock.contrib.django.backend.SkiplockBackend",
            "QUEUES": ["default", "emails"],
            "OPTIONS": {"DATABASE": "default", "MAX_ATTEMPTS": 3},
        }
    }

``task.enqueue(...)`` inserts the job on Django's own connection, so inside
``transaction.atomic()`` it commits or rolls back with your writes. Deferral (``run_after``),
priorities (-100..100, higher first), results and ``async def`` tasks are supported; workers
run them with ``./manage.py skiplock worker``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import connections
from django.utils import timezone
from django.utils.module_loading import import_string

from skiplock.client import Client
from skiplock.contrib.django import compat
from skiplock.contrib.django.conf import dsn_for
from skiplock.errors import ConfigError, JobNotFound
from skiplock.models import Job, JobSpec, JobState

__all__ = ["SkiplockBackend", "result_for"]

_STATUS = {
    JobState.WAITING: compat.TaskResultStatus.READY,
    JobState.SCHEDULED: compat.TaskResultStatus.READY,
    JobState.AVAILABLE: compat.TaskResultStatus.READY,
    JobState.RETRYABLE: compat.TaskResultStatus.READY,
    JobState.RUNNING: compat.TaskResultStatus.RUNNING,
    JobState.COMPLETED: compat.TaskResultStatus.SUCCESSFUL,
    JobState.FAILED: compat.TaskResultStatus.FAILED,
    JobState.CANCELLED: compat.TaskResultStatus.FAILED,
}


class SkiplockBackend(compat.BaseTaskBackend):
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.database: str = self.options.get("DATABASE", "default")
        #: Runs per job: Django's tasks fail on an exception; raise it for retries with backoff.
        self.max_attempts: int = int(self.options.get("MAX_ATTEMPTS", 1))
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        """A skiplock client on the backend's database (for results; enqueue uses Django's connection)."""
        if self._client is None:
            self._client = Client(dsn_for(self.database), max_size=2)
        return self._client

    def enqueue(self, task: Any, args: Iterable[Any], kwargs: dict[str, Any]) -> Any:
        self.validate_task(task)
        args, kwargs = list(args), dict(kwargs)
        spec = JobSpec(
            task=task.module_path,
            args={"args": compat.normalize_json(args), "kwargs": compat.normalize_json(kwargs)},
            queue=task.queue_name,
            priority=task.priority,
            run_at=task.run_after,
            max_attempts=self.max_attempts,
        )
        (job_id,) = self.client.enqueue_many([spec], conn=connections[self.database])
        return _result(
            task, self.alias, job_id, compat.TaskResultStatus.READY, args, kwargs, enqueued_at=timezone.now()
        )

    def get_result(self, result_id: str) -> Any:
        try:
            job = self.client.get_job(int(result_id))
        except (JobNotFound, ValueError):
            raise compat.TaskResultDoesNotExist(result_id) from None
        try:
            task = import_string(job.task)
        except ImportError:
            raise compat.TaskResultDoesNotExist(
                f"{result_id}: its task {job.task!r} cannot be imported"
            ) from None
        return result_for(task, job, backend=self.alias)

    def check(self, **kwargs: Any) -> Iterable[Any]:
        from django.core import checks

        if connections[self.database].vendor != "postgresql":
            yield checks.Error(
                f"skiplock needs PostgreSQL; TASKS database {self.database!r} is not",
                id="skiplock.E001",
            )


def result_for(task: Any, job: Job, *, backend: str = "default") -> Any:
    """The ``TaskResult`` of a job enqueued through the backend."""
    payload = job.args if isinstance(job.args, dict) else {}
    result = _result(
        task,
        backend,
        job.id,
        _STATUS[job.state],
        list(payload.get("args", [])),
        dict(payload.get("kwargs", {})),
        enqueued_at=job.created_at,
        started_at=job.attempted_at,
        finished_at=job.finished_at,
        errors=[
            compat.TaskError(
                exception_class_path=str(e.get("type") or "Exception"),
                traceback=str(e.get("traceback") or e.get("error") or ""),
            )
            for e in job.errors
        ],
        worker_ids=[str(job.worker_id or "")] * job.attempt,
    )
    if job.state is JobState.COMPLETED:
        object.__setattr__(result, "_return_value", job.result)
    return result


def _result(
    task: Any,
    backend: str,
    job_id: int,
    status: Any,
    args: list[Any],
    kwargs: dict[str, Any],
    *,
    enqueued_at: datetime | None = None,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    errors: list[Any] | None = None,
    worker_ids: list[str] | None = None,
) -> Any:
    if not isinstance(task, compat.Task):
        raise ConfigError(f"{task!r} is not a Django task")
    return compat.TaskResult(
        task=task,
        id=str(job_id),
        status=status,
        enqueued_at=enqueued_at,
        started_at=started_at,
        last_attempted_at=started_at,
        finished_at=finished_at,
        args=args,
        kwargs=kwargs,
        backend=backend,
        errors=errors or [],
        worker_ids=worker_ids or [],
    )
