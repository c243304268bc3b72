"""The job transaction: a task's own writes, committed together with its job's completion.

A task asks for it with ``current_job().transaction()`` (``def`` tasks) or
``await current_job().atransaction()`` (``async def`` tasks) and gets a connection inside an
open transaction. The connections come from two pools of the driver's own
(``skiplock._driver.transaction``: a sync one and an async one, each created at first use, up
to ``concurrency`` connections), apart from the worker's pool, so a long task never holds a
connection the worker needs for claims, heartbeats and acknowledgements; a task that never asks
costs nothing.

When the task returns, the worker runs ``skiplock.complete`` on that connection and commits
only if it returned the job, that is if the lease is still ours: the writes and the completion
commit together or not at all. Nothing locks the job's row while the task runs (the heartbeat
extends the lease on the worker's pool as usual); ``complete`` locks it at the very end and the
commit right after releases it. Every other ending rolls the writes back.
"""

from __future__ import annotations

import asyncio
import threading

from skiplock._core.statements import BoundStatement
from skiplock._driver.protocols import AsyncJobConnection, JobConnection, TaskThread
from skiplock._driver.transaction import TxConnection, TxPools, Verdict, async_kind, sync_kind
from skiplock.context import JobContext
from skiplock.errors import ConfigError

__all__ = ["JobTransactions", "TxConnection", "Verdict"]

_OVER = "the job's attempt is over: its transaction can no longer be opened"


class JobTransactions:
    """One worker's job transactions: opened on a task's request (this is the hook that
    ``JobContext.transaction()`` calls), finished by the worker with ``commit_completion`` or
    ``abort``, after ``detach`` took the connection away from the attempt.

    A context's ``_tx_hook`` and ``_tx_conn`` are only read and written under ``_lock``: a
    ``def`` task opens its transaction from its thread while the event loop ends attempts.
    """

    def __init__(self, dsn: str, max_size: int, options: dict[str, object] | None = None) -> None:
        self._lock = threading.Lock()
        self._pools = TxPools(dsn, max_size, options)  # options: PgBouncer mode's
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def start(self) -> None:
        """Bind to the running event loop (the worker's)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    # -- the context's hook ------------------------------------------------------------------

    def transaction(self, ctx: JobContext) -> JobConnection:
        if threading.get_ident() == self._loop_thread:
            raise ConfigError(
                "transaction() would block the event loop: an async task uses"
                " `await skiplock.current_job().atransaction()`"
            )
        with self._lock:
            opened = self._opened(ctx)
        if opened is not None:
            return sync_kind(opened)
        conn = self._pools.begin()
        with self._lock:
            kept = self._keep(ctx, conn)
        if kept is not conn:  # the attempt ended meanwhile, or another thread of the task was first
            self._pools.rollback_and_put(conn)
        if kept is None:
            raise ConfigError(_OVER)
        return sync_kind(kept)

    async def atransaction(self, ctx: JobContext) -> AsyncJobConnection:
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
            return async_kind(opened)
        conn = await self._pools.abegin()
        with self._lock:
            kept = self._keep(ctx, conn)
        if kept is not conn:  # the attempt ended meanwhile, or another coroutine of the task was first
            await self._pools.arollback_and_put(conn)
        if kept is None:
            raise ConfigError(_OVER)
        return async_kind(kept)

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
            SkiplockError: the completion or the commit failed; nothing is committed unless
                the server committed before the connection was lost (then the job is
                completed and its writes with it).
        """
        return await self._pools.commit_completion(conn, stmt)

    async def abort(self, conn: TxConnection, thread: TaskThread | None) -> None:
        """Roll the attempt's writes back and give its connection back to the pool.

        ``thread``: the ``def`` task's thread, which may still run (past its timeout, or
        stopped at shutdown) and still use the connection. Its statement is then interrupted,
        and the rollback waits until the thread ends: a connection is never used by two threads
        at once, and the connection never goes back to the pool while the task holds it.
        """
        await self._pools.abort(conn, thread)

    async def close(self) -> None:
        """Close the pools (worker shutdown). Connections still held by a task's thread are
        closed when they are given back."""
        await self._pools.close()
