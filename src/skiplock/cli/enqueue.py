"""`skiplock enqueue`: enqueue one job by task name."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated

import typer

from skiplock.cli._common import DsnOption, console, dsn_of, fail, handle_errors, safe
from skiplock.client import Client
from skiplock.settings import DEFAULT_QUEUE


@handle_errors
def enqueue(
    task: Annotated[str, typer.Argument(help="Task name.")],
    args: Annotated[
        str, typer.Option(help="Keyword arguments as a JSON object, e.g. '{\"user_id\": 7}'.")
    ] = "{}",
    queue: Annotated[str, typer.Option(help="Queue.")] = DEFAULT_QUEUE,
    priority: Annotated[int, typer.Option(help="Higher runs first.")] = 0,
    delay: Annotated[float | None, typer.Option(help="Run after this many seconds.")] = None,
    max_attempts: Annotated[
        int | None, typer.Option(help="Attempts before the job is dead-lettered.")
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
    """Enqueue one job and print its id and state."""
    payload = json.loads(args)
    if not isinstance(payload, dict):
        raise fail("--args must be a JSON object of keyword arguments")
    with Client(dsn_of(dsn), max_size=1) as client:
        job = client.enqueue(
            task,
            payload,
            queue=queue,
            priority=priority,
            delay=None if delay is None else timedelta(seconds=delay),
            max_attempts=max_attempts,
            dedupe_key=dedupe_key,
            depends_on=depends_on or (),
            on_parent_failure=on_parent_failure,
        )
    console.print(f"{job.id} {safe(job.state)}")
