"""`skiplock jobs`: list, show, retry and cancel jobs."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from skiplock.cli._common import DsnOption, console, dsn_of, handle_errors, safe
from skiplock.client import Client
from skiplock.models import JobState

app = typer.Typer(help="Inspect and repair jobs.", no_args_is_help=True)


@app.command("list")
@handle_errors
def list_jobs(
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    state: Annotated[JobState | None, typer.Option(help="Only this state.")] = None,
    task: Annotated[str | None, typer.Option(help="Only this task.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Newest first, at most this many.")] = 50,
    dsn: DsnOption = None,
) -> None:
    """List the newest jobs."""
    with Client(dsn_of(dsn), max_size=1) as client:
        jobs = client.list_jobs(queue=queue, state=state, task=task, limit=limit)
    table = Table("id", "queue", "task", "state", "attempt", "run_at", "last error")
    for j in jobs:
        last = j.errors[-1].get("error", "") if j.errors else ""
        table.add_row(
            str(j.id), safe(j.queue), safe(j.task), safe(j.state), f"{j.attempt}/{j.max_attempts}",
            safe(j.run_at), safe(str(last)[:60]),
        )  # fmt: skip
    console.print(table)


@app.command("show")
@handle_errors
def show(job_id: Annotated[int, typer.Argument(help="Job id.")], dsn: DsnOption = None) -> None:
    """Show one job: args, result, attempts and errors."""
    with Client(dsn_of(dsn), max_size=1) as client:
        j = client.get_job(job_id)
    for name in ("id", "queue", "task", "state", "priority", "attempt", "max_attempts", "run_at", "created_at",
                 "attempted_at", "finished_at", "lease_expires_at", "worker_id", "dedupe_key", "cancel_requested"):  # fmt: skip
        console.print(f"[bold]{name}[/]: {safe(getattr(j, name))}")
    console.print(f"[bold]args[/]: {safe(json.dumps(j.args, ensure_ascii=False))}")
    console.print(f"[bold]result[/]: {safe(json.dumps(j.result, ensure_ascii=False))}")
    for e in j.errors:
        console.print(f"[bold]error[/] attempt {safe(e.get('attempt'))} at {safe(e.get('at'))}: "
                      f"{safe(e.get('type', ''))}: {safe(e.get('error', ''))}")  # fmt: skip


@app.command("retry")
@handle_errors
def retry(job_ids: Annotated[list[int], typer.Argument(help="Job ids.")], dsn: DsnOption = None) -> None:
    """Run failed, cancelled, scheduled or retryable jobs again now."""
    with Client(dsn_of(dsn), max_size=1) as client:
        done = client.retry(job_ids)
    console.print(f"retried {len(done)} of {len(job_ids)}: {done}")


@app.command("cancel")
@handle_errors
def cancel(job_ids: Annotated[list[int], typer.Argument(help="Job ids.")], dsn: DsnOption = None) -> None:
    """Cancel jobs (running ones finish their attempt and are not retried)."""
    with Client(dsn_of(dsn), max_size=1) as client:
        states = client.cancel(job_ids)
    for job_id in job_ids:
        console.print(f"{job_id} {safe(states.get(job_id, 'not found'))}")
