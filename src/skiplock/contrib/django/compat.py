"""``django.tasks`` (Django 6) or, before it, the ``django_tasks`` backport: the same API."""

from __future__ import annotations

from typing import Any

try:  # Django 6
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
    from django.tasks.exceptions import TaskResultDoesNotExist
except ImportError:  # the backport (pip install django-tasks)
    from django_tasks.backends.base import BaseTaskBackend  # type: ignore[no-redef]
    from django_tasks.base import (  # type: ignore[no-redef]
        Task,
        TaskContext,
        TaskError,
        TaskResult,
        TaskResultStatus,
    )
    from django_tasks.exceptions import TaskResultDoesNotExist  # type: ignore[no-redef]

try:  # Django 6
    from django.utils.json import normalize_json as _normalize_json
except ImportError:
    from django_tasks.utils import normalize_json as _normalize_json  # type: ignore[no-redef]

__all__ = [
    "BaseTaskBackend",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "normalize_json",
]


def normalize_json(value: Any) -> Any:
    return _normalize_json(value)
