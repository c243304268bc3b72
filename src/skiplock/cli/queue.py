"""`skiplock queues`: list, pause, resume and limit queues."""

from __future__ import annotations

import difflib
from collections import defaultdict
from datetime import datetime
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from skiplock.cli._common import DsnOption, console, dsn_of, fail, handle_errors, parse_time, safe
from skiplock.client import Client
from skiplock.models import JobState
from skiplock.monitor import describe_limits

app = typer.Typer(help="Inspect, pause, resume and limit queues.", no_args_is_help=True)
# Short state headers keep the table inside 80 columns.
# done and cancel count the last minute (see skiplock.queue_stats); fail is the dead-letter set.
_SHORT = {"scheduled": "sched", "available": "ready", "running": "run", "retryable": "retry",
          "completed": "done", "failed": "fail", "cancelled": "cancel"}  # fmt: skip


@app.command("list")
@handle_errors
def list_queues(dsn: DsnOption = None) -> None:
    """One row per queue: jobs per state (completed/cancelled: last minute), oldest wait, paused, limits."""
    with Client(dsn_of(dsn), max_size=1) as client:
        stats = client.queue_stats()
    by_queue: dict[str, dict[JobState, int]] = defaultdict(dict)
    oldest: dict[str, str] = {}
    paused: dict[str, bool] = {}
    limits: dict[str, str] = {}
    for s in stats:
        by_queue[s.queue][s.state] = s.jobs
        paused[s.queue] = s.paused
        limits[s.queue] = safe(
            describe_limits(
                s.concurrency_limit, s.rate_limit, s.key_arg, s.key_concurrency_limit, s.key_rate_limit
            )
        )
        if s.state is JobState.AVAILABLE and s.oldest_age is not None:
            oldest[s.queue] = _age(s.oldest_age.total_seconds())
    # Jobs waiting for parents are a workflow matter: their column shows only when there are some.
    states = [st for st in JobState if st is not JobState.WAITING or any(st in c for c in by_queue.values())]
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("queue", no_wrap=True)
    for st in states:
        table.add_column(_SHORT.get(st.value, st.value), justify="right")
    table.add_column("oldest", justify="right")
    table.add_column("notes")  # paused, limits
    for queue in sorted(by_queue):
        counts = [str(by_queue[queue].get(st, 0)) for st in states]
        notes = ", ".join(filter(None, ["paused" if paused[queue] else "", limits[queue]]))
        table.add_row(safe(queue), *counts, oldest.get(queue, "-"), notes)
    console.print(table)


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _check_known(client: Client, name: str, create: bool) -> None:
    """Refuse a queue nothing names (a typo would otherwise create it), unless ``create``."""
    if create or client.queue_known(name):
        return
    known = sorted({s.queue for s in client.queue_stats()} | {q for w in client.workers() for q in w.queues})
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise fail(
        f"no queue named {name!r}: no job, worker or setting names it; {hint}add --create to use it anyway"
    )


@app.command("pause")
@handle_errors
def pause(
    name: Annotated[str, typer.Argument(help="Queue name.")],
    until: Annotated[
        datetime | None,
        typer.Option(help="Resume by itself at this time (ISO 8601).", parser=parse_time),
    ] = None,
    create: Annotated[
        bool, typer.Option("--create", help="Pause it even though no job, worker or setting names it yet.")
    ] = False,
    dsn: DsnOption = None,
) -> None:
    """Stop every worker from claiming from a queue."""
    with Client(dsn_of(dsn), max_size=1) as client:
        _check_known(client, name, create)
        client.pause_queue(name, until=until)
    console.print(f"paused {safe(name)}" + (f" until {safe(until)}" if until else ""))


@app.command("resume")
@handle_errors
def resume(name: Annotated[str, typer.Argument(help="Queue name.")], dsn: DsnOption = None) -> None:
    """Let workers claim from a queue again."""
    with Client(dsn_of(dsn), max_size=1) as client:
        # A queue nothing names is not paused: resuming it would only hide a typo.
        _check_known(client, name, create=False)
        client.resume_queue(name)
    console.print(f"resumed {safe(name)}")


@app.command("limit")
@handle_errors
def limit(
    name: Annotated[str, typer.Argument(help="Queue name.")],
    concurrency: Annotated[
        int | None, typer.Option(help="At most this many of its jobs running at once, fleet-wide.")
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="At most this many jobs started per second on average.")
    ] = None,
    burst: Annotated[
        int | None, typer.Option(help="How many may start at once (default: one second's worth).")
    ] = None,
    key_arg: Annotated[
        str | None,
        typer.Option(
            help="The job argument whose value is the key for --per-key and --key-rate (a tenant id)."
        ),
    ] = None,
    per_key: Annotated[
        int | None, typer.Option(help="At most this many running at once per value of --key-arg.")
    ] = None,
    key_rate: Annotated[
        float | None, typer.Option(help="At most this many started per second per value of --key-arg.")
    ] = None,
    key_burst: Annotated[
        int | None, typer.Option(help="How many of one key may start at once (default: one second's worth).")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove every limit of the queue.")] = False,
    create: Annotated[
        bool, typer.Option("--create", help="Limit it even though no job, worker or setting names it yet.")
    ] = False,
    dsn: DsnOption = None,
) -> None:
    """Set a queue's fleet-wide limits (each call replaces them all); with no option, show them."""
    given = [concurrency, rate, burst, key_arg, per_key, key_rate, key_burst]
    if clear and any(v is not None for v in given):
        raise fail("--clear removes every limit: give it alone, or give the limits to set")
    with Client(dsn_of(dsn), max_size=1) as client:
        _check_known(client, name, create)
        if not clear and all(v is None for v in given):
            got = client.queue_limits(name)
        else:
            got = client.set_queue_limits(
                name,
                concurrency=concurrency,
                rate=rate,
                burst=burst,
                key_arg=key_arg,
                per_key=per_key,
                key_rate=key_rate,
                key_burst=key_burst,
            )
    described = safe(describe_limits(got.concurrency, got.rate, got.key_arg, got.per_key, got.key_rate))
    described += f" (burst {got.burst})" if got.burst is not None else ""
    described += f" (key burst {got.key_burst})" if got.key_burst is not None else ""
    console.print(f"{safe(name)}: {described or 'no limits'}")
