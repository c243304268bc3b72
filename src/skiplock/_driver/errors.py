"""psycopg errors → skiplock errors. The only place database errors are translated.

Every module that talks to the database does so through the driver, and the driver raises
:class:`~skiplock.errors.SkiplockError` subclasses only, with psycopg's exception kept as
``__cause__``. Callers that need to know more than the class ask :func:`is_transient` or
:func:`is_input_fault` rather than looking at psycopg's classes themselves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
from psycopg import errors as pg_errors

from skiplock.errors import DatabaseError, DatabaseUnavailable, InvalidInput, SchemaMissing, SkiplockError

__all__ = ["is_input_fault", "is_transient", "to_skiplock", "translated"]


def to_skiplock(exc: psycopg.Error) -> SkiplockError:
    """Return the skiplock error for a database error (raise it ``from exc``).

    ``InvalidInput`` for input the database refused (skiplock's own checks, values PostgreSQL
    cannot hold), ``SchemaMissing`` when the skiplock schema is not there, ``DatabaseUnavailable``
    when the server cannot be reached or the connection was lost, ``DatabaseError`` for anything
    else (with its SQLSTATE). libpq's connection messages never carry the password, and none is added here.
    """
    message = _message(exc)
    hint = exc.diag.message_hint
    if isinstance(exc, pg_errors.InvalidParameterValue) and message.startswith("skiplock:"):
        text = message.removeprefix("skiplock:").strip()
        return InvalidInput(f"{text} ({hint})" if hint else text)
    if isinstance(
        exc, (pg_errors.InvalidSchemaName, pg_errors.UndefinedTable, pg_errors.UndefinedFunction)
    ) and ("skiplock" in message):
        return SchemaMissing(
            f"the skiplock schema is missing or incomplete in this database ({message}); run `skiplock migrate`"
        )
    if isinstance(exc, psycopg.DataError):
        # Values PostgreSQL cannot hold: NUL bytes in text (refused before sending), a \u0000 in
        # JSON, numbers out of range. Nothing was written.
        detail = exc.diag.message_detail
        return InvalidInput(f"invalid value: {message}" + (f" ({detail.strip()})" if detail else ""))
    if isinstance(exc, pg_errors.StatementTooComplex):
        return InvalidInput(f"invalid value: nested too deeply for PostgreSQL ({message})")
    if isinstance(exc, psycopg.OperationalError) and _connection_lost(exc.sqlstate):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return DatabaseUnavailable(f"database unavailable: {first}")
    return DatabaseError(f"database error: {message}", sqlstate=exc.sqlstate)


#: SQLSTATEs that mean the session is gone or cannot start, besides class 08: the server shut
#: down, crashed, is starting, ended an idle session, or has no connection slot left.
_GONE = frozenset({"57P01", "57P02", "57P03", "57P05", "53300"})


def _connection_lost(sqlstate: str | None) -> bool:
    """Whether an OperationalError is about the connection, not the statement.

    No SQLSTATE: libpq or the pool failed before the server said anything (refused, timed
    out, lost). A lock or statement timeout, a full disk or a serialization failure is the
    statement's: ``DatabaseError``, which :func:`is_transient` still calls worth retrying.
    """
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in _GONE


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Raise the skiplock error of any psycopg error raised in the block (``from`` the original).

    A plain ``with`` block, so it wraps ``await`` expressions in async code just as well.
    """
    try:
        yield
    except psycopg.Error as exc:
        raise to_skiplock(exc) from exc


def is_transient(exc: BaseException) -> bool:
    """Whether trying the same statement again later may succeed (a lost connection, a timeout).

    Accepts a skiplock error raised by the driver (its ``__cause__`` is looked at) or a psycopg
    error; anything else is not transient.
    """
    if isinstance(exc, DatabaseUnavailable):
        return True
    cause = exc.__cause__ if isinstance(exc, DatabaseError) else exc
    return isinstance(cause, psycopg.OperationalError)


def is_input_fault(exc: BaseException) -> bool:
    """Whether the statement failed because of what was sent (a bad value, a bad query), not the server."""
    if isinstance(exc, InvalidInput):
        return True
    cause = exc.__cause__ if isinstance(exc, DatabaseError) else exc
    return isinstance(cause, (psycopg.DataError, psycopg.ProgrammingError))


def _message(exc: psycopg.Error) -> str:
    return (exc.diag.message_primary or str(exc)).strip() or type(exc).__name__
