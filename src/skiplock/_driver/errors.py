"""SQLSTATE → skiplock errors. The only place database errors are translated."""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors

from skiplock.errors import DatabaseUnavailable, InvalidInput, SchemaMissing, SkiplockError

__all__ = ["translate"]


def translate(exc: psycopg.Error) -> SkiplockError | None:
    """Return the skiplock error for a database error, or None to let it propagate as is."""
    message = (exc.diag.message_primary or str(exc)).strip()
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
    if isinstance(exc, psycopg.OperationalError) and not isinstance(exc, pg_errors.QueryCanceled):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return DatabaseUnavailable(f"database unavailable: {first}")
    return None
