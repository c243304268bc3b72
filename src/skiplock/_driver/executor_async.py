"""Run bound statements on a pool, or on a caller's own connection (transactional enqueue)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from skiplock._core.statements import BoundStatement
from skiplock._driver.errors import translate

__all__ = ["AsyncExecutor", "Row"]

Row = dict[str, Any]


class AsyncExecutor:
    """Execute named statements.

    Without ``conn`` a statement runs on a pooled autocommit connection: each call is its own
    short transaction. With ``conn`` it runs on the caller's connection inside whatever
    transaction the caller has open, and nothing is committed here: the caller's commit or
    rollback decides.
    """

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def all(
        self, stmt: BoundStatement, *, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> list[Row]:
        """Run ``stmt`` and return every row as a dict."""
        try:
            if conn is not None:
                return await self._all_on(conn, stmt)
            async with self.pool.connection() as pooled:
                return await self._all_on(pooled, stmt)
        except psycopg.Error as exc:
            translated = translate(exc)
            if translated is None:
                raise
            raise translated from exc

    async def tuples(self, stmt: BoundStatement) -> list[tuple[Any, ...]]:
        """Run ``stmt`` on the pool and return plain tuples (the worker's hot path: no dicts)."""
        try:
            async with self.pool.connection() as pooled, pooled.cursor() as cur:
                await cur.execute(stmt.statement.text, stmt.params)
                return await cur.fetchall() if cur.description is not None else []
        except psycopg.Error as exc:
            translated = translate(exc)
            if translated is None:
                raise
            raise translated from exc

    async def one(
        self, stmt: BoundStatement, *, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> Row | None:
        """Run ``stmt`` and return its first row, or None."""
        rows = await self.all(stmt, conn=conn)
        return rows[0] if rows else None

    async def run(self, stmt: BoundStatement, *, conn: psycopg.AsyncConnection[Any] | None = None) -> None:
        """Run ``stmt`` for its effect."""
        await self.all(stmt, conn=conn)

    async def _all_on(self, conn: psycopg.AsyncConnection[Any], stmt: BoundStatement) -> list[Row]:
        # A plain server-binding cursor whatever the connection's cursor_factory: a caller's
        # connection may default to client-side binding (Django's does), which cannot send the
        # binary parameters some statements use.
        async with psycopg.AsyncCursor(conn, row_factory=dict_row) as cur:
            await cur.execute(stmt.statement.text, stmt.params)
            if cur.description is None:
                return []
            return await cur.fetchall()
