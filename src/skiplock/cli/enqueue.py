"""`skiplock enqueue`: enqueue one job by task name."""

from __future__ import annotations

import importlib
import json
import os
import sys
from datetime import timedelta
from typing import Annotated, Any

import typer

from skiplock.cli._common import DsnOption, console, dsn_of, fail, handle_errors, safe, warn
from skiplock.client import Client
from skiplock.errors import SkiplockError
from skiplock.settings import DEFAULT_QUEUE
from skiplock.task import REGISTRY, Task

#: The largest --delay a timedelta holds.
_MAX_DELAY_S = timedelta.max.total_seconds()


@handle_errors
def enqueue(
    task: Annotated[str, typer.Argument(help="Task name.")],
    args: Annotated[
        str, typer.Option(help="Keyword arguments as a JSON object, e.g. '{\"user_id\": 7}'.")
    ] = "{}",
    module: Annotated[
        list[str] | None,
        typer.Option(
            "--module",
            "-m",
            help="Import this module first (as `skiplock worker MODULE` does) and use the task it"
            " declares: its queue, priority and max attempts are the defaults, and --args must fit"
            " its signature. Repeat for several modules.",
            show_default=False,
        ),
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option(
            help=f"Queue (default: the task's with --module, else {DEFAULT_QUEUE!r}).", show_default=False
        ),
    ] = None,
    priority: Annotated[
        int | None,
        typer.Option(
            help="Higher runs first (default: the task's with --module, else 0).", show_default=False
        ),
    ] = None,
    delay: Annotated[float | None, typer.Option(help="Run after this many seconds.")] = None,
    max_attempts: Annotated[
        int | None,
        typer.Option(
            help="Attempts before the job is dead-lettered (default: the task's with --module).",
            show_default=False,
        ),
    ] = None,
    dedupe_key: Annotated[
        str | None, typer.Option(help="Return the live job holding this key instead.")
    ] = None,
    depends_on: Annotated[
        list[int] | None,
        typer.Option(
            help="Wait for this job to finish first (repeat for several parents).", show_default=False
        ),
    ] = None,
    on_parent_failure: Annotated[
        str | None,
        typer.Option(
            help="When a parent fails or is cancelled: cancel (default) or run.", show_default=False
        ),
    ] = None,
    dsn: DsnOption = None,
) -> None:
    """Enqueue one job and print its id and state.

    Warns (on stderr; the job is enqueued) when no live worker serves its queue.
    """
    payload = json.loads(args)
    if not isinstance(payload, dict):
        raise fail("--args must be a JSON object of keyword arguments")
    if delay is not None and not (0 <= delay <= _MAX_DELAY_S):  # NaN fails both comparisons
        raise fail(f"--delay must be a number of seconds from 0 up, got {delay}")
    declared = _declared_task(task, module) if module else None
    if declared is not None:
        payload = declared.bind_args(payload)  # ConfigError: one line, nothing enqueued
        queue = queue if queue is not None else declared.queue
        priority = priority if priority is not None else declared.priority
        max_attempts = max_attempts if max_attempts is not None else declared.max_attempts
    queue = queue if queue is not None else DEFAULT_QUEUE
    with Client(dsn_of(dsn), max_size=1) as client:
        job = client.enqueue(
            task,
            payload,
            queue=queue,
            priority=priority or 0,
            delay=None if delay is None else timedelta(seconds=delay),
            max_attempts=max_attempts,
            dedupe_key=dedupe_key,
            depends_on=depends_on or (),
            on_parent_failure=on_parent_failure,
        )
        console.print(f"{job.id} {safe(job.state)}")
        _warn_if_unserved(client, queue)


def _declared_task(name: str, modules: list[str]) -> Task[Any]:
    """Import ``modules`` (from the current directory too, as the worker does) and return the task
    they declare as ``name``; exit 2 when an import fails or none declares it."""
    sys.path.insert(0, os.getcwd())
    for module_name in modules:
        try:
            importlib.import_module(module_name)
        except Exception as exc:  # an import error in user code: say which module and why
            raise fail(f"cannot import {module_name}: {type(exc).__name__}: {exc}", code=2) from None
    found = REGISTRY.get(name)
    if found is None:
        declared = ", ".join(sorted(REGISTRY)) or "none"
        raise fail(f"no task named {name!r} in {', '.join(modules)} (tasks declared: {declared})", code=2)
    return found


def _warn_if_unserved(client: Client, queue: str) -> None:
    """Warn when no live worker serves ``queue``: the job would wait, silently, for one that does.

    A role that may not read skiplock.workers gets no warning rather than an error: the job is in.
    """
    try:
        workers = [w for w in client.workers() if not w.stale]
    except SkiplockError:
        return
    if any(queue in w.queues for w in workers):
        return
    served = sorted({q for w in workers for q in w.queues})
    now = f"live workers serve {', '.join(served)}" if served else "no worker is running"
    warn(f"no live worker serves queue {queue!r} ({now}): the job waits until one does")
