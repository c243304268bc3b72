"""``./manage.py skiplock …``: skiplock's command line on Django's database.

Everything after ``skiplock`` goes to the ``skiplock`` CLI (``worker``, ``monitor``, ``jobs``,
``queues``, ``migrate``, ``doctor``…) with ``SKIPLOCK_DSN`` set from ``DATABASES``. ``worker``
also runs Django tasks (``django.tasks`` / ``django_tasks``) and, without ``--queues``, serves the
queues of the skiplock backends in ``TASKS``.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from skiplock.contrib.django.conf import dsn_for

BACKEND = "skiplock.contrib.django.backend.SkiplockBackend"


class Command(BaseCommand):
    help = "skiplock's command line on Django's database: worker, monitor, jobs, queues, migrate, doctor…"

    def run_from_argv(self, argv: list[str]) -> None:
        # Every option belongs to skiplock's CLI, so Django's parser must not see them.
        self.run_skiplock(argv[2:])

    def handle(self, *args: Any, **options: Any) -> None:  # call_command("skiplock", "jobs", "list")
        self.run_skiplock(list(args))

    def run_skiplock(self, args: list[str]) -> None:
        from skiplock.cli import app

        backends = [b for b in getattr(settings, "TASKS", {}).values() if b.get("BACKEND") == BACKEND]
        database = next((b.get("OPTIONS", {}).get("DATABASE") for b in backends if b.get("OPTIONS")), None)
        os.environ.setdefault("SKIPLOCK_DSN", dsn_for(database or "default"))
        if args[:1] == ["worker"]:
            if "--default-task" not in args:
                args = [*args, "--default-task", "skiplock.contrib.django.runner:DJANGO_TASKS"]
            queues = sorted({q for b in backends for q in b.get("QUEUES", ["default"])})
            if "--queues" not in args and queues:
                args = [*args, "--queues", ",".join(queues)]
        app(args=args, prog_name="manage.py skiplock")
