"""Run bound statements on a pool, or on a caller's own connection (transactional enqueue)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import AsyncConnectionPool

from skiplock._core.copying import BoundCopy
from skiplock._core.statements import BoundStatement
from skiplock._driver.errors import translated

__all__ = ["AsyncExecutor", "Conn", "Row"]

Row = dict[str, Any]
#: A connection the executor hands out (``transaction()``) or accepts (``conn=``): the caller
#: passes it back to the executor and never uses it directly.
Conn: TypeAlias = "psycopg.AsyncConnection[Any]"


class AsyncExecutor:
    """Execute named statements.

    Without ``conn`` a statement runs on a pooled autocommit connection: each call is its own
    short transaction. With ``conn`` it runs on the caller's connection inside whatever
    transaction the caller has open, and nothing is committed here: the caller's commit or
    rollback decides. Every error raised is a ``SkiplockError``.
    """

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    @classmethod
    def create(
        cls,
        conninfo: str,
        *,
        min_size: int,
        max_size: int,
        application_name: str,
        options: dict[str, object] | None = None,
        timeout: float = 30.0,
        configure: Callable[[AsyncExecutor, Conn], Awaitable[None]] | None = None,
    ) -> AsyncExecutor:
        """An executor on a new pool of autocommit connections to ``conninfo``; call ``open()`` next.

        ``application_name`` also names the pool (psycopg_pool's logs and stats). ``configure``
        runs on each new connection before its first use, with this executor and the connection
        to pass as ``conn=`` (session settings such as ``SET ROLE``).
        """
        executor: AsyncExecutor

        async def configured(conn: Conn) -> None:
            if configure is not None:
                await configure(executor, conn)

        pool = AsyncConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            open=False,
            timeout=timeout,
            kwargs={"autocommit": True, "application_name": application_name, **(options or {})},
            configure=configured if configure is not None else None,
            name=application_name,
        )
        executor = cls(pool)
        return executor

    async def all(self, stmt: BoundStatement, *, conn: Conn | None = None) -> list[Row]:
        """Run ``stmt`` and return every row as a dict."""
        if conn is not None:
            return await self.all_on(conn, stmt)
        with translated():
            async with self.pool.connection() as pooled:
                return await self._all_on(pooled, stmt)

    @classmethod
    async def all_on(cls, conn: Conn, stmt: BoundStatement) -> list[Row]:
        """Run ``stmt`` on ``conn`` alone, no pool needed (a caller's connection: the Django
        admin's actions); return every row as a dict."""
        with translated():
            return await cls._all_on(conn, stmt)

    async def close(self) -> None:
        """Close the pool and its connections."""
        await self.pool.close()

    @staticmethod
    async def copy_rows(copy: BoundCopy, *, conn: Conn) -> None:
        """Run ``copy`` (a ``COPY … FROM STDIN``) on ``conn`` and send its rows, in text format.

        ``conn`` is one inside a transaction (``transaction()``): what the rows go into is the
        session's staging table, which the next statement of the same transaction reads.
        """
        with translated():
            async with psycopg.AsyncCursor(conn) as cur, cur.copy(copy.statement.text) as out:
                for row in copy.rows:
                    await out.write_row(row)

    async def one(self, stmt: BoundStatement, *, conn: Conn | None = None) -> Row | None:
        """Run ``stmt`` and return its first row, or None."""
        rows = await self.all(stmt, conn=conn)
        return rows[0] if rows else None

    async def open(self, *, timeout: float = 30.0) -> None:
        """Open the pool and wait until its ``min_size`` connections are ready.

        Raises:
            DatabaseUnavailable: not ready within ``timeout`` seconds.
        """
        with translated():
            await self.pool.open(wait=True, timeout=timeout)

    async def run(self, stmt: BoundStatement, *, conn: Conn | None = None) -> None:
        """Run ``stmt`` for its effect."""
        await self.all(stmt, conn=conn)

    @asynccontextmanager
    async def transaction(self, conn: Conn | None = None) -> AsyncIterator[Conn]:
        """Yield a connection inside a transaction, for several statements that succeed or fail together.

        Without ``conn``: a pooled connection in a new transaction, committed when the block ends
        and rolled back if it raises. With ``conn`` (a caller's): a savepoint inside the caller's
        open transaction, so a failure undoes only the block and the caller's commit decides; on
        an autocommit connection, a transaction of the block's own. A connection that is not in
        autocommit mode and has no transaction open yet gets none of skiplock's: its first
        statement opens the caller's (psycopg's implicit BEGIN), which the caller commits or
        rolls back (a block of psycopg's own there would commit when it ends).
        Pass the yielded connection as ``conn=`` to the other methods.
        """
        with translated():
            if conn is not None:
                if not conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
                    yield conn
                    return
                async with conn.transaction():
                    yield conn
                return
            async with self.pool.connection() as pooled, pooled.transaction():
                yield pooled

    async def tuples(self, stmt: BoundStatement) -> list[tuple[Any, ...]]:
        """Run ``stmt`` on the pool and return plain tuples (the worker's hot path: no dicts),
        in the order of its declared columns; ``Row._make`` of its generated row type reads one."""
        with translated():
            async with self.pool.connection() as pooled:
                return await self._tuples_on(pooled, stmt)

    @staticmethod
    async def _tuples_on(conn: Conn, stmt: BoundStatement) -> list[tuple[Any, ...]]:
        # A plain server-binding cursor whatever the connection's cursor_factory: a caller's
        # connection may default to client-side binding (Django's does), which cannot send the
        # binary parameters some statements use. Tuple rows whatever its row_factory.
        async with psycopg.AsyncCursor(conn, row_factory=tuple_row) as cur:
            await cur.execute(stmt.statement.text, stmt.params)
            names = stmt.statement.column_names
            if names is None:  # a statement built by hand: only the server knows
                return await cur.fetchall() if cur.description is not None else []
            # A parsed statement says whether it returns rows: cur.description would build a
            # Column object per result column on every call.
            return await cur.fetchall() if names else []

    @classmethod
    async def _all_on(cls, conn: Conn, stmt: BoundStatement) -> list[Row]:
        names = stmt.statement.column_names
        if names is not None:
            # Dicts keyed by the declared columns (tests/integration/test_named_queries.py keeps
            # them equal to what the server returns): no description read, no dict_row. Not
            # strict: a newer schema may append columns to a view or to skiplock.job (Postgres
            # only ever appends them), which this version does not read.
            return [dict(zip(names, row, strict=False)) for row in await cls._tuples_on(conn, stmt)]
        async with psycopg.AsyncCursor(conn, row_factory=dict_row) as cur:  # a statement built by hand
            await cur.execute(stmt.statement.text, stmt.params)
            if cur.description is None:
                return []
            return await cur.fetchall()
