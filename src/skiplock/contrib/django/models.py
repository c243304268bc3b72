"""Read-only models over skiplock's views, for the admin and for queries from Django.

They are unmanaged: Django never creates or changes them; skiplock's migrations own the schema.
Change jobs through skiplock's functions (the admin's retry and cancel actions do).
"""

from __future__ import annotations

from django.db import models


class Job(models.Model):
    """A row of ``skiplock.jobs``: live and finished jobs together."""

    id = models.BigIntegerField(primary_key=True)
    queue = models.TextField()
    task = models.TextField()
    args = models.JSONField()
    state = models.TextField()
    priority = models.SmallIntegerField()
    attempt = models.IntegerField()
    max_attempts = models.IntegerField()
    run_at = models.DateTimeField()
    created_at = models.DateTimeField()
    attempted_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)
    dedupe_key = models.TextField(null=True)
    errors = models.JSONField()
    result = models.JSONField(null=True)
    progress = models.FloatField(null=True)
    pending_parents = models.IntegerField()

    class Meta:
        managed = False
        db_table = 'skiplock"."jobs'
        ordering = ("-id",)
        verbose_name = "job"

    def __str__(self) -> str:
        return f"#{self.id} {self.task} ({self.state})"


class Worker(models.Model):
    """A row of ``skiplock.workers``: registered workers and what they hold."""

    id = models.UUIDField(primary_key=True)
    host = models.TextField()
    pid = models.IntegerField()
    queues = models.JSONField()
    concurrency = models.IntegerField()
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()
    running = models.IntegerField()
    jobs_done = models.BigIntegerField()
    stale = models.BooleanField()

    class Meta:
        managed = False
        db_table = 'skiplock"."workers'
        ordering = ("host", "pid")

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}"
