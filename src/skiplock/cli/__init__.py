"""The `skiplock` command line. Commands parse arguments and call the library; no logic of their own."""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from skiplock.cli import job, queue, schedule, webhooks, workers
from skiplock.cli._common import err_console, one_line, safe
from skiplock.cli.demo import demo
from skiplock.cli.enqueue import enqueue
from skiplock.cli.events import events
from skiplock.cli.metrics import metrics
from skiplock.cli.migrate import migrate
from skiplock.cli.monitor import doctor, monitor
from skiplock.cli.web import web
from skiplock.cli.worker import worker

__all__ = ["app", "main"]


def _is_click_error(exc: BaseException) -> bool:
    """Whether ``exc`` is click's ClickException (a usage error, a bad value). Matched by shape:
    newer typer releases raise the exceptions of their own copy of click, older ones click's."""
    return callable(getattr(exc, "format_message", None)) and isinstance(getattr(exc, "exit_code", None), int)


class _OneLineErrors(TyperGroup):
    """The root group: a usage error is one line on stderr (docs/cli.md), not click's usage
    block and rich's boxed panel."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("standalone_mode", True):
            return super().main(*args, **kwargs)
        kwargs["standalone_mode"] = False  # errors come back here instead of being printed
        try:
            code = super().main(*args, **kwargs)
        except typer.Abort:
            err_console.print("aborted")
            sys.exit(1)
        except Exception as exc:
            if not _is_click_error(exc):
                raise
            if type(exc).__name__ == "NoArgsIsHelpError":  # a group run bare: its help, on stdout
                typer.echo(exc.format_message())  # type: ignore[attr-defined]
                sys.exit(exc.exit_code)  # type: ignore[attr-defined]
            ctx = getattr(exc, "ctx", None)
            hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            err_console.print(f"[bold red]error:[/] {safe(one_line(exc.format_message()))}{hint}")  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        # Without standalone mode click returns the exit status (typer.Exit) or the command's value.
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="skiplock",
    help="skiplock: a Postgres-native job queue.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=_OneLineErrors,
    # Plain help: rich markup would take "skiplock[metrics]" in a help text for a tag and drop it.
    rich_markup_mode=None,
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
