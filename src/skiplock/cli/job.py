"""`skiplock jobs`: list, show, retry and cancel jobs."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from skiplock.cli._common import DsnOption, console, dsn_of, fail, handle_errors, parse_time, safe
from skiplock.client import Client
from skiplock.errors import JobNotFound
from skiplock.models import GraphNode, Job, JobState

app = typer.Typer(help="Inspect and repair jobs.", no_args_is_help=True)


@app.command("list")
@handle_errors
def list_jobs(
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    state: Annotated[JobState | None, typer.Option(help="Only this state.")] = None,
    task: Annotated[str | None, typer.Option(help="Only this task.")] = None,
    since: Annotated[
        datetime | None,
        typer.Option(help="Only jobs created at or after this time (ISO 8601).", parser=parse_time),
    ] = None,
    before: Annotated[int | None, typer.Option(help="Only jobs with a smaller id (the next page).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Newest first, at most this many.")] = 50,
    dsn: DsnOption = None,
) -> None:
    """List the newest jobs, a page at a time."""
    with Client(dsn_of(dsn), max_size=1) as client:
        jobs = client.list_jobs(
            queue=queue, state=state, task=task, since=since, before_id=before, limit=limit
        )
    table = Table("id", "queue", "task", "state", "attempt", "run_at", "last error")
    for j in jobs:
        last = j.errors[-1].get("error", "") if j.errors else ""
        table.add_row(
            str(j.id), safe(j.queue), safe(j.task), safe(j.state), f"{j.attempt}/{j.max_attempts}",
            safe(j.run_at), safe(str(last)[:60]),
        )  # fmt: skip
    console.print(table)
    if len(jobs) == limit:
        console.print(f"next page: --before {jobs[-1].id}")


@app.command("show")
@handle_errors
def show(job_id: Annotated[int, typer.Argument(help="Job id.")], dsn: DsnOption = None) -> None:
    """Show one job: args, result, attempts and errors."""
    with Client(dsn_of(dsn), max_size=1) as client:
        j = client.get_job(job_id)
        nodes = {n.id: n for n in client.job_graph(job_id)}
    for name in ("id", "queue", "task", "state", "priority", "attempt", "max_attempts", "run_at", "created_at",
                 "attempted_at", "finished_at", "lease_expires_at", "worker_id", "dedupe_key", "cancel_requested"):  # fmt: skip
        console.print(f"[bold]{name}[/]: {safe(getattr(j, name))}")
    if j.progress is not None:
        message = f" {j.progress_message}" if j.progress_message else ""
        console.print(f"[bold]progress[/]: {j.progress:g}%{safe(message)}")
    console.print(f"[bold]args[/]: {safe(json.dumps(j.args, ensure_ascii=False))}")
    console.print(f"[bold]result[/]: {safe(json.dumps(j.result, ensure_ascii=False))}")
    me = nodes[job_id]
    children = [n for n in nodes.values() if job_id in n.parents]
    if me.parents:
        waiting = f" ({me.pending_parents} not finished)" if j.state is JobState.WAITING else ""
        console.print(f"[bold]parents[/]{waiting}:")
        _print_related([(nodes.get(p), p, rule) for p, rule in zip(me.parents, me.on_failure, strict=True)])
    if children:
        console.print("[bold]children[/]:")
        _print_related([(c, c.id, c.on_failure[c.parents.index(job_id)]) for c in children])
    console.print("[bold]timeline[/]:")
    for at, what in _timeline(j):
        console.print(f"  {safe(at)}  {safe(what)}")
    for e in j.errors:
        console.print(f"[bold]error[/] attempt {safe(e.get('attempt'))} at {safe(e.get('at'))}: "
                      f"{safe(e.get('type', ''))}: {safe(e.get('error', ''))}")  # fmt: skip
        # The stored traceback, one printed line per line of it: each escaped on its own, so
        # no line of it can pass for a field of this output.
        for line in str(e.get("traceback") or "").splitlines():
            console.print(f"    {safe(line)}", soft_wrap=True)


_RELATED_SHOWN = 20


def _print_related(related: list[tuple[GraphNode | None, int, str]]) -> None:
    """One line per parent or child (the first 20): id, task, state and the edge's failure rule."""
    for node, node_id, rule in related[:_RELATED_SHOWN]:
        what = f"{safe(node.task)} {node.state.value}" if node is not None else "(gone: past retention)"
        console.print(f"  {node_id}  {what}  on failure: {rule}")
    if len(related) > _RELATED_SHOWN:
        console.print(f"  … and {len(related) - _RELATED_SHOWN} more (SELECT * FROM skiplock.job_graph(id))")


def _timeline(j: Job) -> list[tuple[datetime, str]]:
    """The job's life in order: created, due, each failed attempt, the last start, the end."""
    events: list[tuple[datetime | None, str]] = [(j.created_at, "enqueued"), (j.run_at, "due")]
    for e in j.errors:
        at = e.get("at")
        events.append(
            (datetime.fromisoformat(at) if isinstance(at, str) else None,
             f"attempt {e.get('attempt')} failed: {e.get('type') or 'error'}")
        )  # fmt: skip
    if j.attempted_at is not None:
        events.append((j.attempted_at, f"attempt {j.attempt} started"))
    if j.finished_at is not None:
        events.append((j.finished_at, j.state.value))
    return sorted(((at, what) for at, what in events if at is not None), key=lambda e: e[0])


@app.command("retry")
@handle_errors
def retry(
    job_ids: Annotated[list[int] | None, typer.Argument(help="Job ids (or use the filters).")] = None,
    queue: Annotated[str | None, typer.Option(help="Redrive failed jobs of this queue.")] = None,
    task: Annotated[str | None, typer.Option(help="Redrive failed jobs of this task.")] = None,
    since: Annotated[
        datetime | None,
        typer.Option(
            help="Redrive jobs that failed at or after this time (ISO 8601).",
            parser=parse_time,
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many jobs per call.")] = 10000,
    dsn: DsnOption = None,
) -> None:
    """Run jobs again now: by id (failed, cancelled, scheduled or retryable), or redrive failed jobs by filter.

    By id, it prints what became of each one and exits 1 unless every one was retried.
    """
    filtered = queue is not None or task is not None or since is not None
    if not job_ids and not filtered:
        raise fail(
            "give the ids of the jobs to retry, or filters (--queue, --task, --since) to redrive failed jobs"
        )
    if job_ids and filtered:
        raise fail("give job ids or filters (--queue, --task, --since), not both")
    with Client(dsn_of(dsn), max_size=1) as client:
        if not job_ids:
            done = client.retry_failed(queue=queue, task=task, since=since, limit=limit)
            console.print(f"redrove {len(done)} failed job{'s' if len(done) != 1 else ''}")
            return
        wanted = list(dict.fromkeys(job_ids))
        retried = set(client.retry(wanted))
        looked_up = 0
        for job_id in wanted:
            if job_id in retried:
                console.print(f"{job_id} retried")
            elif looked_up < _REASONS_LOOKED_UP:
                looked_up += 1
                console.print(f"{job_id} {_why_not_retried(client, job_id)}", soft_wrap=True)
            else:
                console.print(f"{job_id} not retried")
    console.print(f"retried {len(retried)} of {len(wanted)}")
    if len(retried) < len(wanted):
        raise typer.Exit(1)


#: Ids not retried whose reason is looked up (one query each); past that, only the verdict.
_REASONS_LOOKED_UP = 100


def _why_not_retried(client: Client, job_id: int) -> str:
    try:
        state = client.get_job(job_id).state
    except JobNotFound:
        return "not found"
    return f"not retried: it is {state} (only failed, cancelled, scheduled or retryable jobs are)"


@app.command("purge")
@handle_errors
def purge(
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    task: Annotated[str | None, typer.Option(help="Only this task.")] = None,
    before: Annotated[
        datetime | None,
        typer.Option(
            help="Only jobs finished before this time (ISO 8601; default: now).",
            parser=parse_time,
        ),
    ] = None,
    state: Annotated[list[str] | None, typer.Option(help="States to purge (default: failed).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many jobs per call.")] = 10000,
    yes: Annotated[bool, typer.Option("--yes", help="Really delete them.")] = False,
    dsn: DsnOption = None,
) -> None:
    """Delete finished jobs for good (default: the dead-letter set of failed jobs)."""
    try:
        states = [JobState(s) for s in (state or ["failed"])]
    except ValueError as exc:
        raise fail(str(exc)) from None
    if not yes:
        raise fail("purge deletes jobs for good: add --yes to confirm")
    with Client(dsn_of(dsn), max_size=1) as client:
        n = client.purge(queue=queue, task=task, before=before, states=states, limit=limit)
    console.print(f"purged {n} job{'s' if n != 1 else ''}")


@app.command("cancel")
@handle_errors
def cancel(job_ids: Annotated[list[int], typer.Argument(help="Job ids.")], dsn: DsnOption = None) -> None:
    """Cancel jobs: queued ones never run; running ones are stopped by their worker, not retried.

    Exits 1 unless every job was cancelled or asked to stop.
    """
    with Client(dsn_of(dsn), max_size=1) as client:
        states = client.cancel(job_ids)
    missed = 0
    for job_id in dict.fromkeys(job_ids):
        state = states.get(job_id)
        if state is None:
            missed += 1
            console.print(f"{job_id} not found")
        elif state is JobState.RUNNING:
            console.print(f"{job_id} running: cancellation requested, its worker stops it", soft_wrap=True)
        elif state is JobState.CANCELLED:
            console.print(f"{job_id} cancelled")
        else:
            missed += 1
            console.print(f"{job_id} already {state}: nothing to cancel", soft_wrap=True)
    if missed:
        raise typer.Exit(1)
