"""The driver's one translation of psycopg errors (skiplock._driver.errors), without a database."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors as pg_errors

import skiplock
from skiplock._driver.errors import is_input_fault, is_transient, to_skiplock, translated


@pytest.mark.parametrize(
    ("exc", "kind", "transient", "input_fault"),
    [
        (psycopg.OperationalError("connection to server lost"), skiplock.DatabaseUnavailable, True, False),
        (
            pg_errors.QueryCanceled("canceling statement due to statement timeout"),
            skiplock.DatabaseError,
            True,
            False,
        ),
        (
            pg_errors.InsufficientPrivilege("permission denied for table job"),
            skiplock.DatabaseError,
            False,
            True,
        ),
        (
            pg_errors.AdminShutdown("terminating connection due to administrator command"),
            skiplock.DatabaseUnavailable,
            True,
            False,
        ),
        (pg_errors.LockNotAvailable("could not obtain lock"), skiplock.DatabaseError, True, False),
        (pg_errors.UniqueViolation("duplicate key value"), skiplock.DatabaseError, False, False),
        (pg_errors.NumericValueOutOfRange("integer out of range"), skiplock.InvalidInput, False, True),
        (pg_errors.InvalidParameterValue("skiplock: invalid queue name"), skiplock.InvalidInput, False, True),
        (
            pg_errors.UndefinedFunction("function skiplock.claim does not exist"),
            skiplock.SchemaMissing,
            False,
            False,
        ),
    ],
)
def test_every_database_error_becomes_a_skiplock_error(exc, kind, transient, input_fault):
    translated_exc = to_skiplock(exc)
    assert type(translated_exc) is kind
    assert isinstance(translated_exc, skiplock.SkiplockError)
    translated_exc.__cause__ = exc  # as `raise ... from exc` sets it
    assert is_transient(translated_exc) is transient
    assert is_input_fault(translated_exc) is input_fault


def test_database_error_keeps_the_sqlstate_and_the_servers_words():
    err = to_skiplock(pg_errors.InsufficientPrivilege("permission denied for table job"))
    assert isinstance(err, skiplock.DatabaseError)
    assert err.sqlstate == "42501"
    assert str(err) == "database error: permission denied for table job"


def test_translated_raises_from_the_original():
    original = pg_errors.LockNotAvailable("could not obtain lock")
    with pytest.raises(skiplock.DatabaseError) as caught, translated():
        raise original
    assert caught.value.__cause__ is original
    assert caught.value.sqlstate == "55P03"


def test_translated_lets_other_errors_through():
    with pytest.raises(KeyError), translated():
        raise KeyError("not a database error")


def test_database_error_is_public():
    assert issubclass(skiplock.DatabaseError, skiplock.SkiplockError)
    assert "DatabaseError" in skiplock.__all__
