"""`skiplock demo`: jobs flowing in one command."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from typing import Annotated, Any

import typer

from skiplock.cli._common import DsnOption, console, dsn_of, fail, handle_errors
from skiplock.demo import explore_commands, resolve_demo_dsn, run_demo


@handle_errors
def demo(
    dsn: DsnOption = None,
    jobs: Annotated[int, typer.Option(min=1, max=100_000, help="How many sample jobs to enqueue.")] = 3000,
    concurrency: Annotated[int, typer.Option(min=1, help="Worker concurrency.")] = 50,
    embedded: Annotated[
        bool, typer.Option("--embedded", help="Run on a fresh embedded PostgreSQL even if a server answers.")
    ] = False,
) -> None:
    """Enqueue sample jobs and watch a worker run them (embedded PostgreSQL if none answers)."""
    if embedded and dsn is not None:
        raise fail("--embedded and --dsn exclude each other: pick one database")
    configured = dsn is not None or bool(os.environ.get("SKIPLOCK_DSN") or os.environ.get("DATABASE_URL"))
    db = resolve_demo_dsn(dsn_of(dsn), explicit=configured, embedded=embedded)
    try:
        console.print(f"Using {db.description}.", highlight=False, markup=False)
        result = asyncio.run(run_demo(db.dsn, jobs=jobs, concurrency=concurrency, console=console))
        states = ", ".join(f"{n} {s}" for s, n in sorted(result.by_state.items()))
        verb = "interrupted after" if result.interrupted else "finished in"
        console.print(
            f"\n[bold]{result.jobs} jobs {verb} {result.elapsed_s:.1f}s[/]: {states}; {result.retries} retries."
        )
        if db.server is None:
            _print_commands(db.dsn, "The jobs stay in that database; explore them with:")
        elif sys.stdin.isatty() and not result.interrupted:
            _print_commands(db.dsn, "The embedded server keeps running until you press Ctrl-C; meanwhile:")
            _wait_for_interrupt()
        else:
            console.print(
                "The embedded server is stopped and removed. To explore the jobs afterwards, run the demo"
                " in a terminal (it keeps the server until Ctrl-C) or on your own server with --dsn.",
                highlight=False,
            )
    finally:
        if db.server is not None:
            db.server.close()


def _print_commands(dsn: str, heading: str) -> None:
    console.print(heading, highlight=False)
    for command in explore_commands(dsn):
        console.print(f"  {command}", highlight=False, markup=False, soft_wrap=True)


def _wait_for_interrupt() -> None:
    done = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        done.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not done.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    console.print("Stopping the embedded server.", highlight=False)
