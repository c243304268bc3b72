"""One dedicated connection of skiplock's own: LISTEN, migrations, scripts, test helpers.

Where the executor runs statements on a pool, a session holds one connection for as long as
its owner needs it: to hear notifications (``wait()``, ``events()``), to run a migration inside
one transaction under an advisory lock, or to drive a test. Every error it raises is a
:class:`~skiplock.errors.SkiplockError` (translated by :mod:`skiplock._driver.errors`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row, tuple_row

from skiplock._core.statements import BoundStatement
from skiplock._driver.errors import translated

__all__ = ["AsyncSession", "Notification", "Row", "ServerInfo"]

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Notification:
    """One NOTIFY heard: its channel and payload."""

    channel: str
    payload: str


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """Where a session is connected: as libpq reports it, password left out."""

    host: str  # a socket directory starts with "/"
    port: int
    dbname: str
    user: str
    server_version: str  # e.g. "15.20 (Debian 15.20-0+deb12u1)"


class AsyncSession:
    """A connection of skiplock's own, in autocommit mode unless a ``transaction()`` is open.

    Open one with :meth:`connect`; close it with :meth:`close` or by using it as a context
    manager. A session is used by one task or thread at a time.
    """

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn

    @classmethod
    async def connect(
        cls,
        conninfo: str,
        *,
        application_name: str | None = None,
        connect_timeout: int | None = None,
        options: dict[str, object] | None = None,
    ) -> AsyncSession:
        """Connect to ``conninfo``.

        Raises:
            DatabaseUnavailable: the server cannot be reached or refused the login.
        """
        params: dict[str, Any] = dict(options or {})
        if application_name is not None:
            params["application_name"] = application_name
        if connect_timeout is not None:
            params["connect_timeout"] = connect_timeout
        with translated():
            conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True, **params)
        return cls(conn)

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        """Whether the connection is closed (by :meth:`close`, or lost)."""
        return self._conn.closed

    async def all(self, stmt: BoundStatement) -> list[Row]:
        """Run ``stmt`` and return every row as a dict."""
        names = stmt.statement.column_names
        with translated():
            if names is not None:  # declared columns: tuples zipped with them, as the executor does
                async with self._conn.cursor(row_factory=tuple_row) as cur:
                    await cur.execute(stmt.statement.text, stmt.params or None)
                    if not names:
                        return []
                    return [dict(zip(names, row, strict=False)) for row in await cur.fetchall()]
            async with self._conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(stmt.statement.text, stmt.params or None)
                return await cur.fetchall() if cur.description is not None else []

    async def close(self) -> None:
        """Close the connection. Idempotent; an open transaction is rolled back by the server."""
        if not self._conn.closed:
            await self._conn.close()

    @property
    def info(self) -> ServerInfo:
        """Where this session is connected."""
        info = self._conn.info
        return ServerInfo(
            host=info.host,
            port=info.port,
            dbname=info.dbname,
            user=info.user,
            server_version=info.parameter_status("server_version") or "?",
        )

    async def create_database(self, name: str, *, template: str | None = None) -> None:
        """CREATE DATABASE ``name`` (a copy of ``template``, if given); names are quoted as identifiers."""
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
        with translated():
            await self._conn.execute(query)

    async def drop_database(self, name: str) -> None:
        """DROP DATABASE ``name`` if it exists, ending its sessions (``WITH (FORCE)``)."""
        with translated():
            await self._conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    async def listen(self, *channels: str) -> None:
        """LISTEN on each channel (names are quoted as identifiers)."""
        with translated():
            for channel in channels:
                await self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

    async def notifies(self, *, timeout: float | None = None) -> AsyncGenerator[Notification, None]:
        """Yield notifications as they arrive, for at most ``timeout`` seconds (None: forever).

        Close the iterator when stopping before it ends (``contextlib``'s closing helpers).

        Raises:
            DatabaseUnavailable: the connection was lost.
        """
        # Closed explicitly: stopping early must end psycopg's generator at once, or the
        # connection stays busy with it.
        with translated():
            async with aclosing(self._conn.notifies(timeout=timeout)) as notes:
                async for note in notes:
                    yield Notification(note.channel, note.payload)

    async def one(self, stmt: BoundStatement) -> Row | None:
        """Run ``stmt`` and return its first row, or None."""
        rows = await self.all(stmt)
        return rows[0] if rows else None

    async def ping(self) -> None:
        """Run ``SELECT 1``: a dead connection raises ``DatabaseUnavailable`` here."""
        with translated():
            await self._conn.execute("SELECT 1")

    async def run(self, stmt: BoundStatement) -> None:
        """Run ``stmt`` for its effect."""
        await self.all(stmt)

    async def script(self, text: str) -> None:
        """Run ``text``, one or more statements separated by semicolons, without parameters.

        Sent as bytes, so psycopg uses the simple query protocol and several statements (a
        migration, a function body with ``$$``) run as written.
        """
        with translated():
            async with self._conn.cursor() as cur:
                await cur.execute(text.encode())

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """Run the block in one transaction: committed when it ends, rolled back if it raises.

        Inside another ``transaction()`` it is a savepoint.
        """
        with translated():
            async with self._conn.transaction():
                yield
