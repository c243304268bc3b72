"""Resolve what a caller passes as ``conn=`` to a psycopg connection.

Accepted: a psycopg 3 ``Connection``/``AsyncConnection``; a SQLAlchemy ``Session`` or
``Connection`` (sync) or ``AsyncSession``/``AsyncConnection`` (async) on the ``psycopg`` dialect
(``postgresql+psycopg://``); a Django ``DatabaseWrapper`` (``django.db.connection``) on psycopg 3.
SQLAlchemy and Django are duck-typed so they stay optional dependencies. The
statement then runs inside the caller's open transaction: their rollback means no job.
"""

from __future__ import annotations

from typing import Any

import psycopg

from skiplock.errors import ConfigError

__all__ = ["resolve_async", "resolve_sync"]

_HINT = "pass a psycopg 3 connection, or a SQLAlchemy session/connection using postgresql+psycopg://"


def _module(obj: object) -> str:
    return type(obj).__module__


def resolve_sync(conn: Any) -> psycopg.Connection[Any]:
    """Return the psycopg connection behind a sync ``conn=`` argument."""
    if isinstance(conn, psycopg.Connection):
        return conn
    if _module(conn).startswith("django.db"):  # a Django DatabaseWrapper (connections["default"])
        conn.ensure_connection()
        driver = conn.connection
        if isinstance(driver, psycopg.Connection):
            return driver
        raise ConfigError("Django's database must use the psycopg (3) driver; install psycopg, not psycopg2")
    if isinstance(conn, psycopg.AsyncConnection):
        raise ConfigError("an async connection was passed to a sync call; use aenqueue()/AsyncClient")
    if _module(conn).startswith("sqlalchemy"):
        if _module(conn).startswith("sqlalchemy.ext.asyncio"):
            raise ConfigError(
                "an async SQLAlchemy session was passed to a sync call; use aenqueue()/AsyncClient"
            )
        sa_conn = conn.connection() if hasattr(conn, "get_bind") else conn  # Session → its Connection
        driver = sa_conn.connection.driver_connection
        if isinstance(driver, psycopg.Connection):
            return driver
        raise ConfigError(f"unsupported SQLAlchemy driver {type(driver).__module__}; {_HINT}")
    raise ConfigError(f"unsupported conn= object {type(conn).__name__}; {_HINT}")


async def resolve_async(conn: Any) -> psycopg.AsyncConnection[Any]:
    """Return the psycopg async connection behind an async ``conn=`` argument."""
    if isinstance(conn, psycopg.AsyncConnection):
        return conn
    if isinstance(conn, psycopg.Connection):
        raise ConfigError("a sync connection was passed to an async call; use enqueue()/Client")
    if _module(conn).startswith("sqlalchemy.ext.asyncio"):
        sa_conn = (
            await conn.connection() if hasattr(conn, "get_bind") else conn
        )  # AsyncSession → AsyncConnection
        raw = await sa_conn.get_raw_connection()
        driver = raw.driver_connection
        if isinstance(driver, psycopg.AsyncConnection):
            return driver
        raise ConfigError(f"unsupported SQLAlchemy driver {type(driver).__module__}; {_HINT}")
    if _module(conn).startswith("sqlalchemy"):
        raise ConfigError("a sync SQLAlchemy session was passed to an async call; use enqueue()/Client")
    raise ConfigError(f"unsupported conn= object {type(conn).__name__}; {_HINT}")
