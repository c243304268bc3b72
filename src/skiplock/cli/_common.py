"""Shared CLI plumbing: the --dsn option, one-line errors, safe printing."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from skiplock._core.text import printable
from skiplock._driver.conninfo import resolve_dsn
from skiplock.errors import SkiplockError
from skiplock.settings import scrub

__all__ = [
    "DsnOption",
    "console",
    "dsn_of",
    "fail",
    "handle_errors",
    "one_line",
    "parse_time",
    "safe",
    "warn",
]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)  # one line, never wrapped

DsnOption = Annotated[
    str | None,
    typer.Option(
        "--dsn",
        help="PostgreSQL connection string or URL (default: SKIPLOCK_DSN, then DATABASE_URL, then libpq PG* variables).",
        show_default=False,
    ),
]

F = TypeVar("F", bound=Callable[..., Any])


#: What each line after the first of a multi-line value starts with: job data never starts a
#: terminal line of its own, so an error's newlines cannot forge a field line ("state: ...").
CONTINUATION = "    "


def safe(value: object, *, indent: str = CONTINUATION) -> str:
    """Render job data for a terminal: control characters (ANSI escapes too), bidi controls
    and invisible characters shown as escapes, never sent; rich markup shown as text; each line
    after the first indented by ``indent``."""
    return escape(printable(value)).replace("\n", "\n" + indent)


def dsn_of(dsn: str | None) -> str:
    return resolve_dsn(dsn)


def _dsn_or_none(dsn: str | None) -> str | None:
    try:
        return resolve_dsn(dsn)
    except SkiplockError:
        return None


def one_line(message: str) -> str:
    """``message`` on one line: libpq and click end theirs with newlines, some put details after one."""
    return " ".join(part.strip() for part in message.strip().splitlines() if part.strip())


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one clear line to stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {safe(one_line(message))}")
    return typer.Exit(code)


def warn(message: str) -> None:
    """Print one warning line to stderr (the command goes on)."""
    err_console.print(f"[yellow]warning:[/] {safe(one_line(message))}")


#: What a time option accepts, for its error message. Only absolute times: an age such as "2h"
#: would need this host's clock, and job times follow the database's.
TIME_FORMS = (
    "an ISO 8601 date or time, e.g. 2030-01-31, 2030-01-31T09:00, 2030-01-31T09:00:00Z or"
    " '2030-01-31 09:00:00+02:00' (without a zone: the database's time zone)"
)


def parse_time(value: str) -> datetime:
    """Parse a time option: ISO 8601 as written (no zone: the database session's).

    Raises:
        typer.BadParameter: not ISO 8601, with the forms accepted.
    """
    text = value.strip()
    try:
        # Python 3.10's fromisoformat does not read the "Z" suffix (UTC).
        return datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a time: give {TIME_FORMS}") from None


def handle_errors(fn: F) -> F:
    """Turn expected failures into one line on stderr and a non-zero exit (never a traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SkiplockError as exc:  # database errors too: the driver translated them
            message = str(exc)
        except json.JSONDecodeError as exc:
            message = f"invalid JSON: {exc}"
        # libpq quotes pieces of a malformed connection string back: never its password.
        raise fail(scrub(message, _dsn_or_none(kwargs.get("dsn")))) from None

    return wrapper  # type: ignore[return-value]
