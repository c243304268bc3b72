"""`skiplock monitor` and `skiplock doctor`: see the queue and the PostgreSQL under it."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape

from skiplock._core.text import oneline
from skiplock.cli._common import DsnOption, console, dsn_of, handle_errors
from skiplock.client import Client
from skiplock.migrate import Migrator
from skiplock.monitor import Monitor, schedule_checks


@handle_errors
def monitor(
    dsn: DsnOption = None,
    queue: Annotated[str | None, typer.Option(help="Show this queue only.")] = None,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between refreshes.")] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="Print one snapshot and exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one snapshot as JSON and exit.")] = False,
) -> None:
    """A live view of queues, workers, failures and PostgreSQL health. Read-only."""
    with Client(dsn_of(dsn), min_size=1, max_size=1) as client:
        mon = Monitor(client, queue=queue)
        if as_json:
            print(mon.snapshot().to_json())
            return
        if once:
            console.print(mon.render(mon.snapshot(), console.size.width))
            return
        # Follow the terminal's real size as it changes: an exported COLUMNS/LINES would pin it.
        for var in ("COLUMNS", "LINES"):
            os.environ.pop(var, None)
        screen = Console(highlight=False)
        # Ctrl-C leaves Live first (it restores the terminal), then ends the command quietly.
        with (
            contextlib.suppress(KeyboardInterrupt),
            Live(
                mon.render(mon.snapshot(), *screen.size), console=screen, screen=True, auto_refresh=False
            ) as live,
        ):
            while True:
                time.sleep(interval)  # the refresh period, not a wait for a condition
                live.update(mon.render(mon.snapshot(), *screen.size), refresh=True)


@handle_errors
def doctor(dsn: DsnOption = None) -> None:
    """Check the schema and the PostgreSQL under the queue; print a fix for each problem.

    Exits 1 when any check is not ok.
    """
    target = dsn_of(dsn)
    problems = 0
    status = Migrator(target).status()
    if status.is_current:
        newest = max(status.applied)
        applied = "migration 1" if newest == 1 else f"migrations 1-{newest}"
        console.print(f"[green]ok[/]       schema: {applied} applied, functions current")
    else:
        problems += 1
        detail = []
        detail += [f"pending {list(status.pending)}"] if status.pending else []
        detail += [f"unknown to this package {list(status.unknown)}"] if status.unknown else []
        detail += [f"changed since applied {list(status.mismatched)}"] if status.mismatched else []
        if status.routines_pending:
            detail += [f"functions to update in {', '.join(status.routines_pending)}"]
        console.print(f"[red]critical[/] schema: {', '.join(detail) or 'not installed'}")
        console.print("         fix: run `skiplock migrate` (or upgrade skiplock for unknown migrations)")
        if not status.applied:
            raise typer.Exit(1)
    with Client(target, min_size=1, max_size=1) as client:
        checks = client.health() + schedule_checks(client.schedules())
    for check in checks:
        colour = {"ok": "green", "warn": "yellow"}.get(check.status, "red")
        # One line per check, never wrapped (grep and scripts read it), and one line it stays:
        # the values name sessions, queries and transactions of other users, so newlines come
        # out escaped like every other control character.
        line = f"[{colour}]{_one(check.status):<8}[/] {_one(check.name)}: {_one(check.value)}"
        console.print(line, soft_wrap=True)
        if not check.ok:
            problems += 1
            console.print(f"         {_one(check.detail)}", soft_wrap=True)
            console.print(f"         fix: {_one(check.fix)}", soft_wrap=True)
    if problems:
        console.print(f"{problems} problem(s) found")
        raise typer.Exit(1)
    console.print("all checks passed")


def _one(value: object) -> str:
    """Database text for one doctor line: control, bidi and invisible characters and newlines
    escaped, rich markup shown as text."""
    return escape(oneline(value))
