"""Pickup latency at a steady rate: the time from an enqueue statement's start to the job's start.

The parent (``measure``) starts a consumer child (``python -m benchmarks.latency SYSTEM DSN N``),
enqueues one warm-up job and waits until the child reports it ran, then enqueues N jobs at a
steady rate, one transaction each, recording when each enqueue was sent. The child records each
job's start time and prints them when all N have run; latency is start minus send, on one
machine's clock (the database's too: on loopback the statement starts within microseconds of
its send), so the enqueue's own round trip and commit count, as they do for the caller. Each system runs its consumer as its docs recommend for low latency
(LISTEN/NOTIFY wake-ups, default concurrency).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.common import ROOT, as_url, percentiles

Enqueue = Callable[[int], Awaitable[None]]

RAW_ENQUEUE = """
WITH i AS (INSERT INTO raw_job (queue, task, args) VALUES ('bench', 'noop', %s::jsonb) RETURNING queue)
SELECT pg_notify('raw_job', queue) FROM i
"""


# -- producers (parent) ------------------------------------------------------------------------


async def _producer(system: str, dsn: str) -> tuple[Enqueue, Callable[[], Awaitable[None]]]:
    """An enqueue-one-job function for ``system`` and a closer."""
    if system == "raw":
        import psycopg

        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)

        async def raw(i: int) -> None:
            await conn.execute(RAW_ENQUEUE, [json.dumps({"i": i})])

        return raw, conn.close
    if system == "skiplock":
        import skiplock

        client = skiplock.AsyncClient(dsn, max_size=1)
        await client.open()

        async def ours(i: int) -> None:
            await client.enqueue("noop", {"i": i}, queue="bench")

        return ours, client.close
    if system == "pgqueuer":
        import asyncpg
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        aconn = await asyncpg.connect(as_url(dsn))
        queries = Queries(AsyncpgDriver(aconn))

        async def pgq(i: int) -> None:
            await queries.enqueue("noop", json.dumps({"i": i}).encode(), 0)

        return pgq, aconn.close
    if system == "procrastinate":
        from benchmarks import procrastinate_system

        return await procrastinate_system.producer(dsn)
    raise ValueError(f"unknown system {system}")


async def _measure(system: str, dsn: str, rate: float, n: int) -> dict[str, Any]:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.latency", system, dsn, str(n),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert child.stdout is not None
    assert child.stderr is not None
    enqueue, close = await _producer(system, dsn)
    sent: dict[int, float] = {}
    try:
        await enqueue(-1)  # warm-up: the consumer says "ready" once it ran
        line = await asyncio.wait_for(child.stdout.readline(), timeout=120)
        if line.strip() != b"ready":
            raise RuntimeError(
                f"{system} consumer did not start: {(await child.stderr.read()).decode()[-800:]}"
            )
        start = time.perf_counter()
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent[i] = time.time()
            await enqueue(i)
        seconds = time.perf_counter() - start
        out, err = await asyncio.wait_for(child.communicate(), timeout=300)
    finally:
        await close()
        if child.returncode is None:
            child.kill()
            await child.wait()
    if child.returncode != 0:
        raise RuntimeError(f"{system} consumer failed: {err.decode()[-800:]}")
    started = json.loads(out.decode().strip().splitlines()[-1])
    latencies = [(started[str(i)] - sent[i]) * 1000 for i in range(n)]
    return percentiles(latencies) | {"offered_rate": round(n / seconds, 1)}


def measure(system: str, dsn: str, rate: float, n: int) -> dict[str, Any]:
    """Enqueue ``n`` jobs at ``rate``/s into ``system`` and return latency percentiles in ms."""
    return asyncio.run(_measure(system, dsn, rate, n))


# -- consumers (child) -------------------------------------------------------------------------


async def _consume(system: str, dsn: str, n: int) -> dict[int, float]:
    started: dict[int, float] = {}
    done = asyncio.Event()

    def record(i: int) -> None:
        if i < 0:
            print("ready", flush=True)
            return
        started[i] = time.time()
        if len(started) == n:
            done.set()

    if system == "raw":
        await _raw_consumer(dsn, record, done)
    elif system == "skiplock":
        import skiplock

        @skiplock.task(queue="bench")
        async def noop(i: int) -> None:
            record(i)

        worker = skiplock.AsyncWorker([noop], dsn=dsn, maintenance=False)
        run = asyncio.create_task(worker.run())
        await done.wait()
        await worker.stop()
        await run
    elif system == "pgqueuer":
        import asyncpg
        from pgqueuer import PgQueuer
        from pgqueuer.db import AsyncpgDriver

        conn = await asyncpg.connect(as_url(dsn))
        pgq = PgQueuer(AsyncpgDriver(conn))

        @pgq.entrypoint("noop")
        async def pgq_noop(job: Any) -> None:
            record(json.loads(job.payload)["i"])

        run = asyncio.create_task(pgq.run())
        await done.wait()
        pgq.shutdown.set()
        await run
        await conn.close()
    elif system == "procrastinate":
        from benchmarks import procrastinate_system

        await procrastinate_system.consume(dsn, record, done)
    else:
        raise SystemExit(f"unknown system {system}")
    return started


async def _raw_consumer(dsn: str, record: Callable[[int], None], done: asyncio.Event) -> None:
    """The least a consumer can do: LISTEN on one connection, claim and complete on another."""
    import psycopg

    from benchmarks.raw import CLAIM, COMPLETE

    woken = asyncio.Event()
    listener = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    await listener.execute("LISTEN raw_job")

    async def listen() -> None:
        async for _ in listener.notifies():
            woken.set()

    listening = asyncio.create_task(listen())
    try:
        while not done.is_set():
            woken.clear()
            rows = await (await conn.execute(CLAIM)).fetchall()
            if not rows:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), timeout=1)
                continue
            for _, args in rows:
                record(args["i"])
            await conn.execute(COMPLETE, [[r[0] for r in rows]])
    finally:
        listening.cancel()
        await listener.close()
        await conn.close()


if __name__ == "__main__":
    result = asyncio.run(_consume(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    print(json.dumps(result))
