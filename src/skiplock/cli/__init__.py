"""The `skiplock` command line. Commands parse arguments and call the library; no logic of their own."""

from __future__ import annotations

import typer

from skiplock.cli import job, queue, schedule, webhooks, workers
from skiplock.cli.demo import demo
from skiplock.cli.enqueue import enqueue
from skiplock.cli.events import events
from skiplock.cli.metrics import metrics
from skiplock.cli.migrate import migrate
from skiplock.cli.monitor import doctor, monitor
from skiplock.cli.web import web
from skiplock.cli.worker import worker

__all__ = ["app", "main"]

app = typer.Typer(
    name="skiplock",
    help="skiplock: a Postgres-native job queue.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(migrate)
app.command()(worker)
app.command()(enqueue)
app.command()(demo)
app.command()(monitor)
app.command()(doctor)
app.command()(metrics)
app.command()(events)
app.command()(web)
app.add_typer(job.app, name="jobs")
app.add_typer(queue.app, name="queues")
app.add_typer(schedule.app, name="schedules")
app.add_typer(workers.app, name="workers")
app.add_typer(webhooks.app, name="webhooks")


def main() -> None:
    """Entry point of the `skiplock` console script."""
    app()
