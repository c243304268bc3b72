"""The job transaction: a task's own writes, committed together with its job's completion.

A task asks for it with ``current_job().transaction()`` (``def`` tasks) or
``await current_job().atransaction()`` (``async def`` tasks) and gets a connection inside an
open transaction. The connections come from two pools of this module's own (a sync one and an
async one, each created at first use, up to ``concurrency`` connections), apart from the
worker's pool, so a long task never holds a connection the worker needs for claims, heartbeats
and acknowledgements; a task that never asks costs nothing.

When the task returns, the worker runs ``skiplock.complete`` on that connection and commits
only if it returned the job, that is if the lease is still ours: the writes and the completion
commit together or not at all. Nothing locks the job's row while the task runs (the heartbeat
extends the lease on the worker's pool as usual); ``complete`` locks it at the very end and the
commit right after releases it. Every other ending rolls the writes back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from typing import Any, Literal, TypeAlias, TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from skiplock._core.statements import BoundStatement
from skiplock._core.text import ESCAPE_ARGS
from skiplock.context import JobContext
from skiplock.errors import ConfigError

__all__ = ["JobTransactions", "TxConnection", "Verdict"]

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

_C = TypeVar("_C", psycopg.Connection[Any], psycopg.AsyncConnection[Any])

#: Read committed whatever the server's default: the heartbeat updates the job's row while the
#: task runs, and under repeatable read or serializable the final complete() would then fail
#: with a serialization error, every time.
_BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED"
_OVER = "the job's attempt is over: its transaction can no longer be opened"
_APPLICATION_NAME = "skiplock-task"


class JobTransactions:
    """One worker's job transactions: opened on a task's request (this is the hook that
    ``JobContext.transaction()`` calls), finished by the worker with ``commit_completion`` or
    ``abort``, after ``detach`` took the connection away from the attempt.

    A context's ``_tx_hook`` and ``_tx_conn`` are only read and written under ``_lock``: a
    ``def`` task opens its transaction from its thread while the event loop ends attempts.
    """

    def __init__(self, dsn: str, max_size: int, options: dict[str, object] | None = None) -> None:
        self._dsn = dsn
        self._max_size = max_size
        self._options = dict(options or {})  # more psycopg connection options (PgBouncer mode)
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._apool: AsyncConnectionPool | None = None
        self._apool_lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._closed = False

    def start(self) -> None:
        """Bind to the running event loop (the worker's)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    # -- the context's hook ------------------------------------------------------------------

    def transaction(self, ctx: JobContext) -> psycopg.Connection[Any]:
        if threading.get_ident() == self._loop_thread:
            raise ConfigError(
                "transaction() would block the event loop: an async task uses"
                " `await skiplock.current_job().atransaction()`"
            )
        with self._lock:
            opened = self._opened(ctx)
            if opened is not None:
                return _of_kind(opened, psycopg.Connection)
            pool = self._sync_pool()
        conn = _begin(pool)
        with self._lock:
            kept = self._keep(ctx, conn)
        if kept is not conn:  # the attempt ended meanwhile, or another thread of the task was first
            self._rollback_and_put(conn)
        if kept is None:
            raise ConfigError(_OVER)
        return _of_kind(kept, psycopg.Connection)

    async def atransaction(self, ctx: JobContext) -> psycopg.AsyncConnection[Any]:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or loop is not self._loop:
            raise ConfigError(
                "atransaction() runs on the worker's event loop: a def task uses"
                " `skiplock.current_job().transaction()`"
            )
        with self._lock:
            opened = self._opened(ctx)
        if opened is not None:
            return _of_kind(opened, psycopg.AsyncConnection)
        pool = await self._async_pool()
        conn = await _abegin(pool)
        with self._lock:
            kept = self._keep(ctx, conn)
        if kept is not conn:  # the attempt ended meanwhile, or another coroutine of the task was first
            await _arollback(conn)
            await self._aput(conn)
        if kept is None:
            raise ConfigError(_OVER)
        return _of_kind(kept, psycopg.AsyncConnection)

    def _opened(self, ctx: JobContext) -> TxConnection | None:
        if ctx._tx_hook is not self:
            raise ConfigError(_OVER)
        conn: TxConnection | None = ctx._tx_conn
        return conn

    def _keep(self, ctx: JobContext, conn: TxConnection) -> TxConnection | None:
        """Make ``conn`` the attempt's transaction unless it has one; return the one it has
        (None once the attempt is over)."""
        if ctx._tx_hook is not self:
            return None
        if ctx._tx_conn is None:
            ctx._tx_conn = conn
        kept: TxConnection = ctx._tx_conn
        return kept

    # -- the worker's side -------------------------------------------------------------------

    def detach(self, ctx: JobContext) -> TxConnection | None:
        """End the attempt's access to its transaction; return the connection it opened, if any.

        From now on ``transaction()`` raises in this attempt, and a connection still being
        opened for it goes back to the pool.
        """
        with self._lock:
            conn: TxConnection | None = ctx._tx_conn
            ctx._tx_hook = ctx._tx_conn = None
        return conn

    async def commit_completion(self, conn: TxConnection, stmt: BoundStatement) -> Verdict:
        """Run the job's ``complete`` on its transaction and commit if it returned the job.

        The connection goes back to its pool in a clean state, whatever happens. A sync
        connection is driven from a thread, never from the event loop.

        Raises:
            psycopg.Error: the completion or the commit failed; nothing is committed unless
                the server committed before the connection was lost (then the job is
                completed and its writes with it).
        """
        if isinstance(conn, psycopg.AsyncConnection):
            try:
                return await _acomplete(conn, stmt)
            finally:
                await self._aput(conn)
        return await asyncio.to_thread(self._complete_and_put, conn, stmt)

    async def abort(self, conn: TxConnection, thread: concurrent.futures.Future[Any] | None) -> None:
        """Roll the attempt's writes back and give its connection back to the pool.

        ``thread``: the ``def`` task's thread, which may still run (past its timeout, or
        stopped at shutdown) and still use the connection. Its statement is then interrupted,
        and the rollback waits until the thread ends: a connection is never used by two threads
        at once, and the connection never goes back to the pool while the task holds it.
        """
        if isinstance(conn, psycopg.AsyncConnection):
            await _arollback(conn)
            await self._aput(conn)
        elif thread is None or thread.done():
            await asyncio.to_thread(self._rollback_and_put, conn)
        else:
            await asyncio.to_thread(_interrupt, conn)
            # Added from a thread: a callback added to a future that is already done runs at
            # once, in the adding thread, and a rollback must not block the event loop.
            await asyncio.to_thread(thread.add_done_callback, lambda _: self._rollback_and_put(conn))

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

    # -- pools -------------------------------------------------------------------------------

    def _sync_pool(self) -> ConnectionPool:
        """The sync pool, created at first use (call with ``_lock`` held)."""
        if self._closed:
            raise ConfigError("the worker is stopping: no new job transaction")
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
                raise ConfigError("the worker is stopping: no new job transaction")
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

    def _complete_and_put(self, conn: psycopg.Connection[Any], stmt: BoundStatement) -> Verdict:
        try:
            return _complete(conn, stmt)
        finally:
            self._put(conn)

    def _rollback_and_put(self, conn: psycopg.Connection[Any]) -> None:
        _rollback(conn)
        self._put(conn)

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


def _of_kind(conn: TxConnection, kind: type[_C]) -> _C:
    if not isinstance(conn, kind):
        raise ConfigError(
            "this attempt opened its transaction with the other kind of connection: a def task"
            " uses transaction(), an async task atransaction()"
        )
    return conn


# -- one connection ----------------------------------------------------------------------------
# Sync and async twins, kept side by side. The pools' connections are in autocommit mode and the
# transaction is opened with an explicit BEGIN: the task's `with conn.transaction():` is then a
# savepoint (never a commit of its own), and a task that commits anyway is detected (the
# connection is idle again when the worker finishes it).


def _begin(pool: ConnectionPool) -> psycopg.Connection[Any]:
    """A pooled connection inside a fresh transaction (one broken pooled connection is replaced)."""
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


async def _abegin(pool: AsyncConnectionPool) -> psycopg.AsyncConnection[Any]:
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


def _interrupt(conn: psycopg.Connection[Any]) -> None:
    """Cancel the statement the connection runs, if any (safe from any thread)."""
    with contextlib.suppress(psycopg.Error):
        conn.cancel()
