"""Admin pages over the jobs and workers views (read-only), with retry and cancel actions."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import connections

from skiplock._core import queries
from skiplock._core.statements import BoundStatement
from skiplock._driver.connection import resolve_sync
from skiplock._driver.executor import Executor
from skiplock.contrib.django.models import Job, Worker


def _call(stmt: BoundStatement, using: str) -> int:
    """Run ``stmt`` on Django's connection ``using`` (inside its transaction, if one is open);
    return how many jobs it reported."""
    return len(Executor.all_on(resolve_sync(connections[using]), stmt))


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "task", "queue", "state", "priority", "attempt", "created_at", "finished_at")
    list_filter = ("state", "queue")
    search_fields = ("task", "dedupe_key")
    date_hierarchy = "created_at"
    actions = ("retry_jobs", "cancel_jobs")
    readonly_fields = tuple(f.name for f in Job._meta.get_fields())
    show_full_result_count = False  # counting every retained job is a scan; the pages need no total

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    @admin.action(description="Run the selected jobs again now (skiplock.retry)")
    def retry_jobs(self, request: Any, queryset: Any) -> None:
        done = _call(queries.retry(job_ids=list(queryset.values_list("id", flat=True))), queryset.db)
        self.message_user(request, f"{done} job(s) will run again", messages.SUCCESS)

    @admin.action(description="Cancel the selected jobs (skiplock.cancel)")
    def cancel_jobs(self, request: Any, queryset: Any) -> None:
        done = _call(queries.cancel(job_ids=list(queryset.values_list("id", flat=True))), queryset.db)
        self.message_user(request, f"cancel requested for {done} job(s)", messages.SUCCESS)


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ("host", "pid", "queues", "concurrency", "running", "jobs_done", "heartbeat_at", "stale")
    readonly_fields = tuple(f.name for f in Worker._meta.get_fields())

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False
