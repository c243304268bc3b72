"""`skiplock webhooks`: signed HTTP callbacks when jobs finish."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from skiplock.cli._common import DsnOption, console, dsn_of, handle_errors, safe
from skiplock.client import Client

app = typer.Typer(help="Manage webhooks (delivered by workers run with --webhooks).", no_args_is_help=True)


@app.command("add")
@handle_errors
def add(
    url: Annotated[str, typer.Argument(help="http(s) URL to POST to.")],
    secret: Annotated[
        str,
        typer.Option(envvar="SKIPLOCK_WEBHOOK_SECRET", help="Signing secret, 16+ bytes (or the env var)."),
    ],
    event: Annotated[
        list[str] | None,
        typer.Option(
            help="enqueued, started, retried, progress, completed, failed or cancelled (repeat; default: completed, failed)."
        ),
    ] = None,
    queue: Annotated[list[str] | None, typer.Option(help="Only jobs of this queue (repeat).")] = None,
    task: Annotated[list[str] | None, typer.Option(help="Only jobs of this task (repeat).")] = None,
    dsn: DsnOption = None,
) -> None:
    """Register a webhook; prints its id."""
    with Client(dsn_of(dsn), max_size=1) as client:
        webhook_id = client.add_webhook(
            url, secret, events=event or ("completed", "failed"), queues=queue or None, tasks=task or None
        )
    console.print(f"webhook {webhook_id}: {safe(url)}")


@app.command("list")
@handle_errors
def list_webhooks(dsn: DsnOption = None) -> None:
    """The registered webhooks (never their secrets)."""
    with Client(dsn_of(dsn), max_size=1) as client:
        rows = client.webhooks()
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("id", "url", "events", "queues", "tasks"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r["id"]),
            safe(r["url"]),
            ",".join(r["events"]),
            safe(",".join(r["queues"] or ["*"])),
            safe(",".join(r["tasks"] or ["*"])),
        )
    console.print(table)


@app.command("remove")
@handle_errors
def remove(webhook_id: Annotated[int, typer.Argument(help="Webhook id.")], dsn: DsnOption = None) -> None:
    """Delete a webhook."""
    with Client(dsn_of(dsn), max_size=1) as client:
        removed = client.remove_webhook(webhook_id)
    console.print(f"removed webhook {webhook_id}" if removed else f"no webhook {webhook_id}")
