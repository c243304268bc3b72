"""`skiplock schedules`: list, pause, resume and delete cron schedules."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from skiplock.cli._common import DsnOption, console, dsn_of, fail, handle_errors, safe
from skiplock.client import Client

app = typer.Typer(help="Inspect, pause, resume and delete cron schedules.", no_args_is_help=True)

NameArgument = Annotated[str, typer.Argument(help="Schedule name.")]


@app.command("list")
@handle_errors
def list_schedules(dsn: DsnOption = None) -> None:
    """One row per schedule: its cron expression, task, queue, last tick and whether it is paused."""
    with Client(dsn_of(dsn), max_size=1) as client:
        rows = client.schedules()
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("name", "cron", "tz", "task", "queue", "last tick (UTC)", "paused"):
        table.add_column(column, no_wrap=column in ("name", "cron"))
    for s in rows:
        last = s.last_tick.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(
            safe(s.name),
            safe(s.cron),
            safe(s.tz),
            safe(s.task),
            safe(s.queue),
            last,
            "yes" if s.paused else "",
        )
    console.print(table)


def _change(name: str, dsn: str | None, action: Callable[[Client, str], bool], done: str) -> None:
    with Client(dsn_of(dsn), max_size=1) as client:
        found = action(client, name)
    if not found:
        raise fail(f"no schedule named {name!r}")
    console.print(f"{done} {safe(name)}")


@app.command("pause")
@handle_errors
def pause(name: NameArgument, dsn: DsnOption = None) -> None:
    """Stop firing a schedule (on every worker)."""
    _change(name, dsn, Client.pause_schedule, "paused")


@app.command("resume")
@handle_errors
def resume(name: NameArgument, dsn: DsnOption = None) -> None:
    """Fire a schedule again; ticks missed meanwhile are made up only within its catch_up."""
    _change(name, dsn, Client.resume_schedule, "resumed")


@app.command("delete")
@handle_errors
def delete(name: NameArgument, dsn: DsnOption = None) -> None:
    """Remove a schedule. A worker whose code still declares it stores it again when it starts."""
    _change(name, dsn, Client.delete_schedule, "deleted")
