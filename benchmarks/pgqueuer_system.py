"""PGQueuer through its public API, with the settings its docs and our research found fastest:
one PgQueuer per process on asyncpg, batch_size=500, drain mode. Optional: reported, not required."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

BATCH_SIZE = 500


def available() -> str | None:
    """Return None when PGQueuer can run here, else why not."""
    try:
        import asyncpg  # noqa: F401
        import pgqueuer  # noqa: F401
    except ImportError as exc:
        return f"not installed ({exc.name}); pip install 'skiplock[bench]'"
    return None


async def _queries(dsn: str) -> tuple[Any, Any]:
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    from benchmarks.common import as_url

    conn = await asyncpg.connect(as_url(dsn))
    return conn, Queries(AsyncpgDriver(conn))


def setup(dsn: str) -> None:
    async def main() -> None:
        conn, queries = await _queries(dsn)
        try:
            await queries.install()
        finally:
            await conn.close()

    asyncio.run(main())


def reset(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")


def batch_enqueue(dsn: str, n: int, batch: int) -> None:
    async def main() -> None:
        conn, queries = await _queries(dsn)
        try:
            for start in range(0, n, batch):
                size = min(batch, n - start)
                await queries.enqueue(["noop"] * size, [b'{"i": %d}' % i for i in range(size)], [0] * size)
        finally:
            await conn.close()

    asyncio.run(main())


def single_enqueue(dsn: str, n: int) -> None:
    async def main() -> None:
        conn, queries = await _queries(dsn)
        try:
            for i in range(n):
                await queries.enqueue("noop", b'{"i": %d}' % i, 0)
        finally:
            await conn.close()

    asyncio.run(main())


async def drain(dsn: str, on_job: Callable[[], None] | None = None) -> None:
    import asyncpg
    from pgqueuer import PgQueuer
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.types import QueueExecutionMode

    from benchmarks.common import as_url

    conn = await asyncpg.connect(as_url(dsn))
    pgq = PgQueuer(AsyncpgDriver(conn))

    @pgq.entrypoint("noop")
    async def noop(job: Any) -> None:
        if on_job is not None:
            on_job()

    try:
        await pgq.run(batch_size=BATCH_SIZE, mode=QueueExecutionMode.drain)
    finally:
        await conn.close()
