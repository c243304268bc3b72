"""Job transactions at the connection level: pools, BEGIN, complete-and-commit, rollback.

The worker's ``skiplock.worker.transactional`` decides which attempt owns which transaction;
this module does what needs psycopg. Two pools of its own (a sync one and an async one, each
created at first use, up to ``max_size`` connections), apart from the worker's pool, so a long
task never holds a connection the worker needs for claims, heartbeats and acknowledgements.

The pools' connections are in autocommit mode and the transaction is opened with an explicit
BEGIN: the task's ``with conn.transaction():`` is then a savepoint (never a commit of its own),
and a task that commits anyway is detected (the connection is idle again when the worker
finishes it). Errors leave as skiplock errors (``skiplock._driver.errors``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any, Literal, TypeAlias

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from skiplock._core.statements import BoundStatement
from skiplock._core.text import ESCAPE_ARGS
from skiplock._driver.errors import translated
from skiplock._driver.protocols import TaskThread
from skiplock.errors import ConfigError

__all__ = ["TxConnection", "TxPools", "Verdict", "async_kind", "sync_kind"]

log = logging.getLogger("skiplock.worker")
log.addFilter(ESCAPE_ARGS)  # job errors and names are logged escaped, on one line

TxConnection: TypeAlias = "psycopg.Connection[Any] | psycopg.AsyncConnection[Any]"

#: How a completion on the job's transaction ended:
#: ``committed``: the writes and the completion are committed;
#: ``lost``: ``complete`` found no job with our lease token: rolled back;
#: ``aborted``: a statement of the task failed and the task went on, or the connection was
#: lost: nothing is committed;
#: ``ended``: the task committed or rolled back the transaction itself: nothing left to commit.
Verdict = Literal["committed", "lost", "aborted", "ended"]

#: Read committed whatever the server's default: the heartbeat updates the job's row while the
#: task runs, and under repeatable read or serializable the final complete() would then fail
#: with a serialization error, every time.
_BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED"
_APPLICATION_NAME = "skiplock-task"
_STOPPING = "the worker is stopping: no new job transaction"


_OTHER_KIND = (
    "this attempt opened its transaction with the other kind of connection: a def task"
    " uses transaction(), an async task atransaction()"
)


def sync_kind(conn: TxConnection) -> psycopg.Connection[Any]:
    """``conn`` as a sync job transaction.

    Raises:
        ConfigError: it is an async one.
    """
    if not isinstance(conn, psycopg.Connection):
        raise ConfigError(_OTHER_KIND)
    return conn


def async_kind(conn: TxConnection) -> psycopg.AsyncConnection[Any]:
    """``conn`` as an async job transaction.

    Raises:
        ConfigError: it is a sync one.
    """
    if not isinstance(conn, psycopg.AsyncConnection):
        raise ConfigError(_OTHER_KIND)
    return conn


class TxPools:
    """The sync and async pools of one worker's job transactions, and what is done on them.

    ``begin``/``abegin`` hand out a connection inside a fresh transaction; every other method
    takes one of those and gives it back to its pool in a clean state, whatever happens.
    """

    def __init__(self, dsn: str, max_size: int, options: dict[str, object] | None = None) -> None:
        self._dsn = dsn
        self._max_size = max_size
        self._options = dict(options or {})  # more psycopg connection options (PgBouncer mode)
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._apool: AsyncConnectionPool | None = None
        self._apool_lock = asyncio.Lock()
        self._closed = False

    # -- sync --------------------------------------------------------------------------------

    def begin(self) -> psycopg.Connection[Any]:
        """A pooled connection inside a fresh transaction (one broken pooled connection is replaced).

        Raises:
            ConfigError: the pools are closed (the worker is stopping).
            DatabaseUnavailable: no connection could be had.
        """
        pool = self._sync_pool()
        with translated():
            for attempt in (1, 2):
                conn = pool.getconn()
                try:
                    conn.execute(_BEGIN)
                    return conn
                except psycopg.OperationalError:
                    pool.putconn(conn)  # closed: the pool discards it
                    if attempt == 2:
                        raise
                except BaseException:
                    pool.putconn(conn)
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def complete_and_put(self, conn: psycopg.Connection[Any], stmt: BoundStatement) -> Verdict:
        """Run ``stmt`` (the job's ``complete``) and commit if it returned the job; put ``conn`` back.

        Raises:
            SkiplockError: the completion or the commit failed; nothing is committed unless the
                server committed before the connection was lost (then the job is completed and
                its writes with it).
        """
        try:
            with translated():
                return _complete(conn, stmt)
        finally:
            self._put(conn)

    def interrupt(self, conn: psycopg.Connection[Any]) -> None:
        """Cancel the statement ``conn`` runs, if any (safe from any thread)."""
        with contextlib.suppress(psycopg.Error):
            conn.cancel()

    def rollback_and_put(self, conn: psycopg.Connection[Any]) -> None:
        """Roll back and put ``conn`` back (a connection that cannot roll back is closed)."""
        _rollback(conn)
        self._put(conn)

    # -- async -------------------------------------------------------------------------------

    async def abegin(self) -> psycopg.AsyncConnection[Any]:
        """``begin`` for async tasks."""
        pool = await self._async_pool()
        with translated():
            for attempt in (1, 2):
                conn = await pool.getconn()
                try:
                    await conn.execute(_BEGIN)
                    return conn
                except psycopg.OperationalError:
                    await pool.putconn(conn)
                    if attempt == 2:
                        raise
                except BaseException:
                    await pool.putconn(conn)
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def acomplete_and_put(self, conn: psycopg.AsyncConnection[Any], stmt: BoundStatement) -> Verdict:
        """``complete_and_put`` for async tasks."""
        try:
            with translated():
                return await _acomplete(conn, stmt)
        finally:
            await self._aput(conn)

    async def arollback_and_put(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """``rollback_and_put`` for async tasks."""
        await _arollback(conn)
        await self._aput(conn)

    # -- both --------------------------------------------------------------------------------

    async def abort(self, conn: TxConnection, thread: TaskThread | None) -> None:
        """Roll back ``conn`` and put it back; a sync one is driven from a thread.

        ``thread``: the ``def`` task's thread, which may still use the connection. Its statement
        is then interrupted, and the rollback waits until the thread ends: a connection is never
        used by two threads at once, and never goes back to the pool while the task holds it.
        """
        if isinstance(conn, psycopg.AsyncConnection):
            await self.arollback_and_put(conn)
        elif thread is None or thread.done():
            await asyncio.to_thread(self.rollback_and_put, conn)
        else:
            await asyncio.to_thread(self.interrupt, conn)
            # Added from a thread: a callback added to a future that is already done runs at
            # once, in the adding thread, and a rollback must not block the event loop.
            await asyncio.to_thread(thread.add_done_callback, lambda _: self.rollback_and_put(conn))

    async def commit_completion(self, conn: TxConnection, stmt: BoundStatement) -> Verdict:
        """``complete_and_put`` or ``acomplete_and_put``, as ``conn`` is; a sync one from a thread."""
        if isinstance(conn, psycopg.AsyncConnection):
            return await self.acomplete_and_put(conn, stmt)
        return await asyncio.to_thread(self.complete_and_put, conn, stmt)

    async def close(self) -> None:
        """Close both pools (worker shutdown). Connections still held by a task's thread are
        closed when they are given back."""
        with self._lock:
            self._closed = True
            pool = self._pool
        async with self._apool_lock:  # not while it is being created
            apool = self._apool
        if apool is not None:
            await apool.close()
        if pool is not None:
            await asyncio.to_thread(pool.close)

    def _sync_pool(self) -> ConnectionPool:
        with self._lock:
            if self._closed:
                raise ConfigError(_STOPPING)
            if self._pool is None:
                pool = ConnectionPool(
                    self._dsn,
                    min_size=0,
                    max_size=self._max_size,
                    open=False,
                    kwargs={"autocommit": True, "application_name": _APPLICATION_NAME, **self._options},
                    name="skiplock-tx",
                )
                pool.open()
                self._pool = pool
            return self._pool

    async def _async_pool(self) -> AsyncConnectionPool:
        pool = self._apool
        if pool is not None:
            return pool
        async with self._apool_lock:
            if self._closed:
                raise ConfigError(_STOPPING)
            if self._apool is None:
                created = AsyncConnectionPool(
                    self._dsn,
                    min_size=0,
                    max_size=self._max_size,
                    open=False,
                    kwargs={"autocommit": True, "application_name": _APPLICATION_NAME, **self._options},
                    name="skiplock-atx",
                )
                await created.open()
                self._apool = created
            return self._apool

    def _put(self, conn: psycopg.Connection[Any]) -> None:
        if self._pool is None:  # pragma: no cover - the connection came from it
            conn.close()
        else:
            self._pool.putconn(conn)  # once the pool is closed, this closes the connection

    async def _aput(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if self._apool is None:  # pragma: no cover - the connection came from it
            await conn.close()
        else:
            await self._apool.putconn(conn)


# -- one connection ----------------------------------------------------------------------------
# Sync and async twins, kept side by side.


def _complete(conn: psycopg.Connection[Any], stmt: BoundStatement) -> Verdict:
    status = conn.info.transaction_status
    if status == TransactionStatus.IDLE:
        return "ended"
    if status != TransactionStatus.INTRANS:  # in error, or the connection is gone
        _rollback(conn)
        return "aborted"
    try:
        with conn.cursor() as cur:
            cur.execute(stmt.statement.text, stmt.params)
            done = cur.fetchall()
        if not done:
            conn.rollback()
            return "lost"
        conn.commit()
        return "committed"
    except BaseException:
        _rollback(conn)
        raise


async def _acomplete(conn: psycopg.AsyncConnection[Any], stmt: BoundStatement) -> Verdict:
    status = conn.info.transaction_status
    if status == TransactionStatus.IDLE:
        return "ended"
    if status != TransactionStatus.INTRANS:  # in error, or the connection is gone
        await _arollback(conn)
        return "aborted"
    try:
        async with conn.cursor() as cur:
            await cur.execute(stmt.statement.text, stmt.params)
            done = await cur.fetchall()
        if not done:
            await conn.rollback()
            return "lost"
        await conn.commit()
        return "committed"
    except BaseException:
        await _arollback(conn)
        raise


def _rollback(conn: psycopg.Connection[Any]) -> None:
    """Roll back; a connection that cannot is closed (the server rolls back when it goes)."""
    try:
        conn.rollback()
    except psycopg.Error as exc:
        log.warning("could not roll back a job transaction (%s); closing its connection", exc)
        conn.close()


async def _arollback(conn: psycopg.AsyncConnection[Any]) -> None:
    try:
        await conn.rollback()
    except psycopg.Error as exc:
        log.warning("could not roll back a job transaction (%s); closing its connection", exc)
        await conn.close()
