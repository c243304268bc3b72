"""`skiplock demo`: jobs flowing in one command."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from skiplock.cli._common import DsnOption, console, dsn_of, handle_errors
from skiplock.demo import resolve_demo_dsn, run_demo


@handle_errors
def demo(
    dsn: DsnOption = None,
    jobs: Annotated[int, typer.Option(min=1, max=100_000, help="How many sample jobs to enqueue.")] = 3000,
    concurrency: Annotated[int, typer.Option(min=1, help="Worker concurrency.")] = 50,
) -> None:
    """Enqueue sample jobs and watch a worker run them (embedded PostgreSQL if none answers)."""
    url, server = resolve_demo_dsn(dsn_of(dsn), explicit=dsn is not None, console=console)
    try:
        result = asyncio.run(run_demo(url, jobs=jobs, concurrency=concurrency, console=console))
    finally:
        if server is not None:
            server.cleanup()
    states = ", ".join(f"{n} {s}" for s, n in sorted(result.by_state.items()))
    verb = "interrupted after" if result.interrupted else "finished in"
    console.print(
        f"\n[bold]{result.jobs} jobs {verb} {result.elapsed_s:.1f}s[/]: {states}; {result.retries} retries."
    )
    if not result.interrupted:
        console.print(
            "Failed jobs stay inspectable: [bold]SELECT id, task, errors FROM skiplock.jobs WHERE state = 'failed'[/]"
        )
