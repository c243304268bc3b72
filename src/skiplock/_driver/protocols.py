"""The shapes of connections that cross the driver boundary, as Protocols.

Outside ``skiplock._driver`` nothing imports psycopg: where the public API accepts a caller's
connection (``conn=``) or hands a task its job transaction, the type is one of these. They say
what skiplock relies on and no more; the objects themselves are the caller's psycopg 3,
SQLAlchemy or Django connections, and the job transaction is a psycopg connection. This module
imports nothing, so any layer may name these types (see the import contracts in pyproject.toml).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any, Protocol

__all__ = [
    "AsyncJobConnection",
    "AsyncJobCursor",
    "CallerConnection",
    "JobConnection",
    "JobCursor",
    "TaskThread",
]


class CallerConnection(Protocol):
    """A caller's connection or session whose open transaction a write joins (``conn=``).

    psycopg 3 ``Connection``/``AsyncConnection``, SQLAlchemy ``Session``/``Connection`` and their
    async twins, and Django's ``connection`` all have this shape; which of them is accepted by
    a given call (sync or async, which driver underneath) is checked when it runs, and a wrong
    one raises ``ConfigError``. The caller commits or rolls back; skiplock never does.
    """

    def commit(self) -> object: ...

    def rollback(self) -> object: ...


class JobCursor(Protocol):
    """What ``JobConnection.execute`` returns: a psycopg cursor."""

    @property
    def rowcount(self) -> int: ...

    def fetchall(self) -> list[Any]: ...

    def fetchone(self) -> Any: ...


class AsyncJobCursor(Protocol):
    """What ``AsyncJobConnection.execute`` returns: a psycopg async cursor."""

    @property
    def rowcount(self) -> int: ...

    async def fetchall(self) -> list[Any]: ...

    async def fetchone(self) -> Any: ...


class JobConnection(Protocol):
    """A ``def`` task's job transaction (``current_job().transaction()``): a psycopg ``Connection``."""

    @property
    def info(self) -> Any: ...

    def commit(self) -> None: ...

    def cursor(self, *args: Any, **kwargs: Any) -> Any: ...

    def execute(
        self, query: Any, params: Any = ..., *, prepare: bool | None = ..., binary: bool = ...
    ) -> JobCursor: ...

    def rollback(self) -> None: ...

    def transaction(
        self, savepoint_name: str | None = ..., force_rollback: bool = ...
    ) -> AbstractContextManager[Any]: ...


class AsyncJobConnection(Protocol):
    """An ``async def`` task's job transaction (``await current_job().atransaction()``): a psycopg
    ``AsyncConnection``."""

    @property
    def info(self) -> Any: ...

    async def commit(self) -> None: ...

    def cursor(self, *args: Any, **kwargs: Any) -> Any: ...

    async def execute(
        self, query: Any, params: Any = ..., *, prepare: bool | None = ..., binary: bool = ...
    ) -> AsyncJobCursor: ...

    async def rollback(self) -> None: ...

    def transaction(
        self, savepoint_name: str | None = ..., force_rollback: bool = ...
    ) -> AbstractAsyncContextManager[Any]: ...


class TaskThread(Protocol):
    """A ``def`` task's run in its thread, as the job transaction sees it: whether it is over, and
    a callback once it is (run at once, in the adding thread, if it already is)."""

    def done(self) -> bool: ...

    def add_done_callback(self, fn: Any, /) -> None: ...
