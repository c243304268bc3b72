"""`skiplock worker`: run tasks from one or more modules."""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import os
import sys
from datetime import timedelta
from typing import Annotated, Any

import typer

from skiplock.cli._common import DsnOption, dsn_of, fail, handle_errors
from skiplock.metrics import WorkerCollector, serve
from skiplock.settings import DEFAULT_GRACE_PERIOD, DEFAULT_LEASE, DEFAULT_POLL_INTERVAL
from skiplock.task import Task
from skiplock.worker import AsyncWorker
from skiplock.worker.supervisor import resolve_processes, run_processes


def _processes(value: str | int) -> int:
    try:
        return resolve_processes(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _serve_metrics(port: int, runner: AsyncWorker, index: int) -> None:
    """In worker process ``index`` of a supervisor: serve its metrics on ``port + index``."""
    serve(WorkerCollector(runner), port + index)


@handle_errors
def worker(
    modules: Annotated[
        list[str] | None,
        typer.Argument(help="Modules that declare tasks, e.g. myapp.tasks.", show_default=False),
    ] = None,
    dsn: DsnOption = None,
    queues: Annotated[
        str | None, typer.Option(help="Comma-separated queues, earlier first (default: the tasks' queues).")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Jobs running at once.")] = 10,
    prefetch: Annotated[
        int | None, typer.Option(min=0, help="Extra jobs leased ahead (default: concurrency).")
    ] = None,
    burst: Annotated[bool, typer.Option(help="Exit when no job is due and none is running.")] = False,
    lease: Annotated[
        float, typer.Option(min=0.1, help="Lease in seconds, extended by heartbeats.")
    ] = DEFAULT_LEASE.total_seconds(),
    grace: Annotated[
        float, typer.Option(min=0, help="Seconds running jobs get to finish on SIGTERM.")
    ] = DEFAULT_GRACE_PERIOD.total_seconds(),
    poll_interval: Annotated[
        float,
        typer.Option(
            min=0.05, help="Seconds between claims when no NOTIFY wakes the worker (the pickup floor)."
        ),
    ] = DEFAULT_POLL_INTERVAL.total_seconds(),
    listen: Annotated[
        bool,
        typer.Option(
            "--listen/--no-listen", help="Use LISTEN/NOTIFY (off behind PgBouncer transaction pooling)."
        ),
    ] = True,
    pgbouncer: Annotated[
        bool | None,
        typer.Option(
            "--pgbouncer/--no-pgbouncer",
            help="The DSN goes through PgBouncer in transaction pooling: no prepared statements, and"
            " no LISTEN through it (default: SKIPLOCK_PGBOUNCER).",
            show_default=False,
        ),
    ] = None,
    listen_dsn: Annotated[
        str | None,
        typer.Option(
            help="A direct connection (not through PgBouncer) for LISTEN/NOTIFY wake-ups; without one a"
            " --pgbouncer worker polls every --poll-interval.",
            show_default=False,
        ),
    ] = None,
    default_task: Annotated[
        str | None,
        typer.Option(
            help="module:attribute of a skiplock Task that runs the jobs of every task name no module"
            " declared (framework integrations: ./manage.py skiplock worker sets it for Django tasks).",
            show_default=False,
        ),
    ] = None,
    schedules: Annotated[
        bool,
        typer.Option(
            "--schedules/--no-schedules",
            help="Run the cron scheduler (fires every due schedule, each tick once).",
        ),
    ] = True,
    webhooks: Annotated[
        bool,
        typer.Option("--webhooks/--no-webhooks", help="Also deliver webhooks (queue skiplock.webhooks)."),
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1, max=65535, help="Serve this worker's Prometheus metrics on this port (skiplock[metrics])."
        ),
    ] = None,
    processes: Annotated[
        int,
        typer.Option(
            parser=_processes,
            metavar="N|auto",
            help="Worker processes, each with its own connections, under one supervisor that passes"
            " SIGTERM/SIGINT on and restarts a process that dies; auto: one per CPU this process may"
            " use. With 1 this process is the worker.",
        ),
    ] = 1,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "INFO",
) -> None:
    """Run a worker: claim, run and acknowledge jobs until SIGTERM/SIGINT (twice: at once)."""
    logging.basicConfig(
        level=log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.path.insert(0, os.getcwd())
    for name in modules or []:
        try:
            importlib.import_module(name)
        except Exception as exc:  # an import error in user code: say which module and why
            raise fail(f"cannot import {name}: {type(exc).__name__}: {exc}", code=2) from None
    fallback = None
    if default_task is not None:
        module_name, _, attribute = default_task.partition(":")
        try:
            fallback = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise fail(
                f"cannot load --default-task {default_task}: {type(exc).__name__}: {exc}", code=2
            ) from None
        if not isinstance(fallback, Task):
            raise fail(f"--default-task {default_task} is not a skiplock Task", code=2)
    options: dict[str, Any] = {
        "dsn": dsn_of(dsn),
        "queues": [q.strip() for q in queues.split(",") if q.strip()] if queues else None,
        "concurrency": concurrency,
        "prefetch": prefetch,
        "burst": burst,
        "lease": timedelta(seconds=lease),
        "grace_period": timedelta(seconds=grace),
        "poll_interval": timedelta(seconds=poll_interval),
        "listen": listen,
        "pgbouncer": pgbouncer,
        "listen_dsn": listen_dsn,
        "schedules": schedules,
        "webhooks": webhooks,
    }
    if processes > 1:
        code = run_processes(
            processes,
            modules=modules or [],
            default_task=default_task,
            initializer=None if metrics_port is None else functools.partial(_serve_metrics, metrics_port),
            log_level=log_level.upper(),
            **options,
        )
        raise typer.Exit(code)
    runner = AsyncWorker(default_task=fallback, install_signal_handlers=True, **options)
    if metrics_port is not None:
        serve(WorkerCollector(runner), metrics_port)
    asyncio.run(runner.run())
    if runner.forced or runner.has_stuck_threads:
        # Task threads cannot be interrupted; their jobs are already released or failed.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1 if runner.forced else 0)
