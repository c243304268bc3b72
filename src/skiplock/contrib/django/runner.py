"""Running Django tasks on a skiplock worker.

A job enqueued through the backend carries the Django task's import path as its skiplock task
name and ``{"args": [...], "kwargs": {...}}`` as its args. :data:`DJANGO_TASKS` is the skiplock
task a worker runs for every such job (``AsyncWorker(default_task=DJANGO_TASKS)``, which
``./manage.py skiplock worker`` sets up): it imports the Django task and calls it.
"""

from __future__ import annotations

from typing import Any

import django
from django.apps import apps
from django.db import close_old_connections
from django.utils.module_loading import import_string

from skiplock.context import current_job
from skiplock.contrib.django import compat
from skiplock.errors import Fail
from skiplock.task import Task

__all__ = ["DJANGO_TASKS", "run_django_task"]


def run_django_task(**payload: Any) -> Any:
    """Import the job's Django task and run it with the job's arguments; return its result."""
    job = current_job().job
    if not apps.ready:
        # A worker process of `--processes N` starts with `spawn`: it re-imports manage.py as a
        # module, which never reaches django.setup(). The settings module is in its environment.
        django.setup()
    try:
        task = import_string(job.task)
    except ImportError as exc:
        raise Fail(f"cannot import the Django task {job.task!r}: {exc}") from None
    if not isinstance(task, compat.Task):
        raise Fail(f"{job.task!r} is not a Django task (decorate it with @task)")
    args, kwargs = list(payload.get("args", [])), dict(payload.get("kwargs", {}))
    close_old_connections()  # the worker thread's Django connection: drop it if too old or broken
    try:
        if task.takes_context:
            from skiplock.contrib.django.backend import result_for

            value = task.call(compat.TaskContext(task_result=result_for(task, job)), *args, **kwargs)
        else:
            value = task.call(*args, **kwargs)
        return compat.normalize_json(value)
    finally:
        close_old_connections()


#: The skiplock task that runs Django tasks (its queue is replaced by the worker's --queues).
DJANGO_TASKS: Task[Any] = Task(
    run_django_task, name="skiplock.contrib.django:run", queue="default", max_attempts=1
)
