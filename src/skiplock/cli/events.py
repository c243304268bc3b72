"""`skiplock events`: follow job lifecycle events."""

from __future__ import annotations

from typing import Annotated

import typer

from skiplock.cli._common import DsnOption, console, dsn_of, fail, handle_errors, safe
from skiplock.client import Client


@handle_errors
def events(
    dsn: DsnOption = None,
    queue: Annotated[list[str] | None, typer.Option(help="Only this queue (repeat for more).")] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option(
            help="Only this event: enqueued, started, progress, retried, completed, failed, cancelled."
        ),
    ] = None,
    enable: Annotated[
        bool, typer.Option("--enable", help="Enable events first (the schema owner's call).")
    ] = False,
    disable: Annotated[bool, typer.Option("--disable", help="Disable events and exit.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
) -> None:
    """Print job lifecycle events as they happen: one line per event kind and queue per transaction."""
    with Client(dsn_of(dsn), min_size=1, max_size=1) as client:
        if disable:
            client.disable_events()
            console.print("events disabled")
            return
        if enable:
            client.enable_events()
            console.print("events enabled")
        elif not client.events_enabled():
            raise fail(
                "events are disabled in this database, so none would arrive: enable them with"
                " `skiplock events --enable` (the schema owner's call)"
            )
        try:
            for event in client.events(queues=queue, kinds=kind, timeout=timeout):
                console.print(f"{event.kind:<10} {safe(event.queue)}")
        except KeyboardInterrupt:
            pass
