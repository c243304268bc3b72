"""`skiplock workers`: the registered workers and what they hold."""

from __future__ import annotations

import typer
from rich import box
from rich.table import Table

from skiplock.cli._common import DsnOption, console, dsn_of, handle_errors, safe
from skiplock.client import Client

app = typer.Typer(help="Inspect workers.", no_args_is_help=True)


@app.command("list")
@handle_errors
def list_workers(dsn: DsnOption = None) -> None:
    """One row per worker: host, pid, queues, jobs held and done, seconds since its heartbeat."""
    with Client(dsn_of(dsn), max_size=1) as client:
        rows = client.workers()
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column, justify in (("host", "left"), ("pid", "right"), ("queues", "left"), ("slots", "right"),
                            ("running", "right"), ("done", "right"), ("beat", "right"), ("", "left")):  # fmt: skip
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for w in rows:
        table.add_row(
            safe(w.host),
            str(w.pid),
            safe(",".join(w.queues)),
            str(w.concurrency),
            str(w.running),
            str(w.jobs_done),
            f"{w.heartbeat_age.total_seconds():.0f}s",
            "stale" if w.stale else "",
        )
    console.print(table)
    if not rows:
        console.print("no workers registered")
