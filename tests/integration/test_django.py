"""The Django integration, in a real Django project (tests/django_project) run as subprocesses:
./manage.py migrate applies skiplock's schema, the django.tasks backend enqueues on Django's own
connection (atomic with the business writes), ./manage.py skiplock worker runs the tasks, results
come back through get_result, and the admin lists and cancels jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

import skiplock
from skiplock._sql import migrations

pytest.importorskip("django")
PROJECT = Path(__file__).resolve().parents[1] / "django_project"


@pytest.fixture
def django_dsn(dsn: str) -> Iterator[str]:
    """An empty database (no skiplock schema yet: Django's migrate installs it)."""
    name = f"skiplock_django_{uuid.uuid4().hex[:8]}"
    admin = make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(dsn, dbname=name)
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(django_dsn: str, *args: str, stdin: str = "") -> str:
    env = {**os.environ, "SKIPLOCK_DJANGO_DSN": django_dsn, "PYTHONPATH": str(PROJECT)}
    env.pop("SKIPLOCK_DSN", None)
    done = subprocess.run(
        [sys.executable, *args],
        cwd=PROJECT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


def test_django_project_end_to_end(django_dsn: str):
    """Pass: see the module docstring; every step asserts what a Django user relies on."""
    run(django_dsn, "manage.py", "migrate", "--no-input")
    with psycopg.connect(django_dsn) as c:
        assert (
            c.execute("SELECT max(version) FROM skiplock.migration").fetchone()[0] == migrations()[-1].version
        )
    assert skiplock.Migrator(django_dsn).status().is_current  # the functions too

    ids = json.loads(run(django_dsn, "scenario.py", "enqueue").splitlines()[-1])
    assert ids["states"] == [
        ["shop.tasks.send_receipt", "available", 0],
        ["shop.tasks.send_receipt", "scheduled", 0],  # run_after an hour from now
        ["shop.tasks.report", "available", 10],
        ["shop.tasks.explode", "available", 0],
        ["shop.tasks.add", "available", 0],
        ["shop.tasks.with_context", "available", 0],
    ]

    queues = run(django_dsn, "manage.py", "skiplock", "queues", "list")
    assert "default" in queues
    assert "reports" in queues
    worker = ("manage.py", "skiplock", "worker", "--burst", "--concurrency", "2", "--log-level", "WARNING")
    run(django_dsn, *worker)
    # explode failed its first attempt and waits for its backoff: make it due and run it again.
    assert run(django_dsn, "manage.py", "skiplock", "jobs", "retry", ids["explode"]).endswith(
        "\nretried 1 of 1\n"
    )
    run(django_dsn, *worker)

    results = json.loads(run(django_dsn, "scenario.py", "results", stdin=json.dumps(ids)).splitlines()[-1])
    assert results["receipt"] == {
        "status": "SUCCESSFUL",
        "value": "receipt for ada@example.com",
        "errors": [],
        "attempts": 1,
    }
    assert results["later"]["status"] == "READY"  # deferred an hour
    assert results["report"]["value"] == 42
    assert results["add"]["value"] == 5  # an async task
    assert results["context"]["value"] == "ctx attempt 1"
    assert results["explode"]["status"] == "FAILED"
    assert results["explode"]["errors"] == ["builtins.ValueError", "builtins.ValueError"]  # MAX_ATTEMPTS 2
    assert results["explode"]["attempts"] == 2

    seen = json.loads(run(django_dsn, "scenario.py", "admin", stdin=json.dumps(ids)).splitlines()[-1])
    assert seen == {
        "listing": 200, "lists_receipt": True, "workers": 200, "detail": 200, "cancel": 200,
        "later_state": "cancelled",
    }  # fmt: skip


@pytest.mark.subprocess
def test_django_worker_with_two_processes_runs_django_tasks(django_dsn: str):
    """Pass: `./manage.py skiplock worker --processes 2` runs Django tasks in both processes
    (each sets Django up itself before a task runs)."""
    run(django_dsn, "manage.py", "migrate", "--no-input")
    ids = json.loads(run(django_dsn, "scenario.py", "enqueue").splitlines()[-1])
    run(
        django_dsn, "manage.py", "skiplock", "worker", "--burst", "--processes", "2", "--log-level", "WARNING"
    )
    results = json.loads(run(django_dsn, "scenario.py", "results", stdin=json.dumps(ids)).splitlines()[-1])
    assert results["receipt"]["status"] == "SUCCESSFUL"
    assert results["report"]["value"] == 42
    assert results["add"]["value"] == 5
