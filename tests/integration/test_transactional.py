"""Transactions both ways.

Enqueue inside the caller's transaction: commit means job, rollback means no job. And the job's
own transaction (``current_job().transaction()``): a task's writes commit together with its
completion, or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from datetime import timedelta

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import skiplock
from skiplock import JobState
from waiting import await_until


class Boom(Exception):
    pass


@pytest.fixture
def orders(conn):
    conn.execute("CREATE TABLE orders (id int PRIMARY KEY)")


@pytest.fixture
def send_receipt():
    @skiplock.task(queue="receipts")
    def send_receipt(order_id: int) -> None: ...

    return send_receipt


def sa_url(dsn: str, driver: str = "psycopg") -> str:
    p = conninfo_to_dict(dsn)
    if str(p["host"]).startswith("/"):  # a Unix socket directory (the embedded fallback)
        return f"postgresql+{driver}://{p['user']}@/{p['dbname']}?host={p['host']}&port={p['port']}"
    return f"postgresql+{driver}://{p['user']}@{p['host']}:{p['port']}/{p['dbname']}"


def counts(conn) -> tuple[int, int]:
    return (
        conn.execute("SELECT count(*) FROM orders").fetchone()[0],
        conn.execute("SELECT count(*) FROM skiplock.jobs WHERE task = 'send_receipt'").fetchone()[0],
    )


def test_psycopg_commit_and_rollback(dsn, conn, client, orders, send_receipt):
    with psycopg.connect(dsn) as tx_conn:
        with pytest.raises(Boom), tx_conn.transaction():
            tx_conn.execute("INSERT INTO orders VALUES (1)")
            job = send_receipt.using(conn=tx_conn, client=client).enqueue(order_id=1)
            assert job.id > 0
            assert counts(conn) == (0, 0)  # invisible to others until commit
            raise Boom
        assert counts(conn) == (0, 0)
        with tx_conn.transaction():
            tx_conn.execute("INSERT INTO orders VALUES (2)")
            send_receipt.using(conn=tx_conn, client=client).enqueue(order_id=2)
            send_receipt.using(conn=tx_conn, client=client).enqueue_many([{"order_id": 3}, {"order_id": 4}])
    assert counts(conn) == (1, 3)


async def test_psycopg_async_commit_and_rollback(dsn, conn, aclient, orders, send_receipt):
    async with await psycopg.AsyncConnection.connect(dsn) as tx_conn:
        with pytest.raises(Boom):
            async with tx_conn.transaction():
                await tx_conn.execute("INSERT INTO orders VALUES (1)")
                await send_receipt.using(conn=tx_conn, client=aclient).aenqueue(order_id=1)
                raise Boom
        assert counts(conn) == (0, 0)
        async with tx_conn.transaction():
            await tx_conn.execute("INSERT INTO orders VALUES (2)")
            await send_receipt.using(conn=tx_conn, client=aclient).aenqueue(order_id=2)
    assert counts(conn) == (1, 1)


def test_sqlalchemy_session_commit_and_rollback(dsn, conn, client, orders, send_receipt):
    engine = create_engine(sa_url(dsn))
    try:
        with Session(engine) as session:
            session.execute(text("INSERT INTO orders VALUES (1)"))
            send_receipt.using(conn=session, client=client).enqueue(order_id=1)
            session.rollback()
        assert counts(conn) == (0, 0)
        with Session(engine) as session, session.begin():
            session.execute(text("INSERT INTO orders VALUES (2)"))
            send_receipt.using(conn=session, client=client).enqueue(order_id=2)
        with engine.begin() as sa_conn:  # a Connection works too
            sa_conn.execute(text("INSERT INTO orders VALUES (3)"))
            send_receipt.using(conn=sa_conn, client=client).enqueue(order_id=3)
    finally:
        engine.dispose()
    assert counts(conn) == (2, 2)


async def test_sqlalchemy_async_session_commit_and_rollback(dsn, conn, aclient, orders, send_receipt):
    engine = create_async_engine(sa_url(dsn))
    try:
        async with AsyncSession(engine) as session:
            await session.execute(text("INSERT INTO orders VALUES (1)"))
            await send_receipt.using(conn=session, client=aclient).aenqueue(order_id=1)
            await session.rollback()
        assert counts(conn) == (0, 0)
        async with AsyncSession(engine) as session, session.begin():
            await session.execute(text("INSERT INTO orders VALUES (2)"))
            await send_receipt.using(conn=session, client=aclient).aenqueue(order_id=2)
    finally:
        await engine.dispose()
    assert counts(conn) == (1, 1)


def test_dedupe_inside_a_transaction_returns_the_existing_job_without_error(dsn, client, send_receipt):
    first = send_receipt.using(dedupe_key="receipt-9", client=client).enqueue(order_id=9)
    with psycopg.connect(dsn) as tx_conn, tx_conn.transaction():
        again = send_receipt.using(dedupe_key="receipt-9", conn=tx_conn, client=client).enqueue(order_id=9)
        tx_conn.execute("SELECT 1")  # the transaction is still usable: nothing was raised inside it
    assert again.id == first.id


def test_wrong_kind_of_connection_is_a_clear_config_error(dsn, aclient, send_receipt):
    with psycopg.connect(dsn) as sync_conn, pytest.raises(skiplock.ConfigError, match="sync connection"):
        import asyncio

        asyncio.run(send_receipt.using(conn=sync_conn, client=aclient).aenqueue(order_id=1))


def test_enqueue_from_a_trigger(conn):
    conn.execute(
        """
        CREATE TABLE signups (id int PRIMARY KEY, email text NOT NULL);
        CREATE FUNCTION signup_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM skiplock.enqueue('emails', 'send_welcome', jsonb_build_object('user_id', NEW.id));
            RETURN NEW;
        END $$;
        CREATE TRIGGER signup_welcome AFTER INSERT ON signups FOR EACH ROW EXECUTE FUNCTION signup_enqueue();
        """
    )
    conn.execute("INSERT INTO signups VALUES (7, 'a@example.com')")
    with pytest.raises(psycopg.errors.UniqueViolation), conn.transaction():
        conn.execute("INSERT INTO signups VALUES (8, 'b@example.com')")
        conn.execute("INSERT INTO signups VALUES (8, 'dup@example.com')")  # fails: the whole tx rolls back
    rows = conn.execute("SELECT queue, task, args FROM skiplock.jobs ORDER BY id").fetchall()
    assert rows == [("emails", "send_welcome", {"user_id": 7})]


# -- the job's transaction: exactly-once database effects ------------------------------------

FAST = {"poll_interval": timedelta(milliseconds=50), "reap_interval": timedelta(milliseconds=100)}


@pytest.fixture
def credits(conn):
    """The tasks' side effect: one row per execution that committed."""
    conn.execute("CREATE TABLE credits (job_id bigint NOT NULL, attempt int NOT NULL, amount int NOT NULL)")


def credited(conn) -> list[tuple[int, int, int]]:
    return conn.execute(
        "SELECT job_id, attempt, amount FROM credits ORDER BY job_id, attempt, amount"
    ).fetchall()


def job_row(conn, job_id: int) -> tuple[str, int] | None:
    return conn.execute("SELECT state::text, attempt FROM skiplock.jobs WHERE id = %s", [job_id]).fetchone()


def tx_backends(conn) -> int:
    """Connections of the job-transaction pools open to the test database."""
    return conn.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name = 'skiplock-task' AND datname = current_database()"
    ).fetchone()[0]


async def test_a_sync_task_commits_its_writes_with_its_completion(dsn, client, conn, credits):
    seen = {}

    @skiplock.task(queue="tx")
    def credit(amount: int) -> str:
        ctx = skiplock.current_job()
        tx = ctx.transaction()
        seen["status"] = tx.info.transaction_status  # already inside an open transaction
        tx.execute("INSERT INTO credits VALUES (%s, %s, %s)", [ctx.job.id, ctx.attempt, amount])
        with tx.transaction():  # a savepoint, never a commit of its own
            tx.execute("INSERT INTO credits VALUES (%s, %s, %s)", [ctx.job.id, ctx.attempt, -1])
        seen["same"] = ctx.transaction() is tx
        # Nothing is visible to others before the worker commits.
        with psycopg.connect(dsn, autocommit=True) as other:
            seen["outside"] = other.execute("SELECT count(*) FROM credits").fetchone()[0]
        return "credited"

    job = credit.using(client=client).enqueue(amount=10)
    worker = skiplock.AsyncWorker([credit], dsn=dsn, burst=True, **FAST)
    await worker.run()
    assert seen == {"status": TransactionStatus.INTRANS, "same": True, "outside": 0}
    assert credited(conn) == [(job.id, 1, -1), (job.id, 1, 10)]
    done = client.get_job(job.id)
    assert (done.state, done.attempt, done.result) == (JobState.COMPLETED, 1, "credited")
    assert (worker.stats.completed, worker.stats.lost) == (1, 0)
    assert tx_backends(conn) == 0  # the pools are closed with the worker


async def test_an_async_task_commits_its_writes_with_its_completion(dsn, client, conn, credits):
    same = []

    @skiplock.task(queue="tx")
    async def credit(amount: int) -> dict:
        ctx = skiplock.current_job()
        tx = await ctx.atransaction()
        assert tx.info.transaction_status == TransactionStatus.INTRANS
        await tx.execute("INSERT INTO credits VALUES (%s, %s, %s)", [ctx.job.id, ctx.attempt, amount])
        same.append(await ctx.atransaction() is tx)
        return {"amount": amount}

    jobs = credit.using(client=client).enqueue_many([{"amount": a} for a in (1, 2, 3)])
    worker = skiplock.AsyncWorker([credit], dsn=dsn, burst=True, concurrency=3, **FAST)
    await worker.run()
    assert sorted(credited(conn)) == [(jobs[0], 1, 1), (jobs[1], 1, 2), (jobs[2], 1, 3)]
    assert [client.get_job(j).result for j in jobs] == [{"amount": 1}, {"amount": 2}, {"amount": 3}]
    assert same == [True, True, True]
    assert worker.stats.completed == 3


def test_the_sync_worker_commits_the_job_transaction(dsn, client, conn, credits):
    @skiplock.task(queue="tx")
    def credit(amount: int) -> int:
        ctx = skiplock.current_job()
        ctx.transaction().execute(
            "INSERT INTO credits VALUES (%s, %s, %s)", [ctx.job.id, ctx.attempt, amount]
        )
        return amount

    job = credit.using(client=client).enqueue(amount=5)
    worker = skiplock.Worker([credit], dsn=dsn, burst=True, **FAST)
    worker.run()
    assert credited(conn) == [(job.id, 1, 5)]
    assert client.get_job(job.id).result == 5


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_task_that_raises_leaves_no_write_and_is_retried(dsn, client, conn, credits, kind):
    """Pass: attempt 1 writes then raises: its write is rolled back and the job retried as usual;
    attempt 2 writes and returns: exactly its write is committed."""

    if kind == "sync":

        @skiplock.task(queue="tx", max_attempts=3, retry_backoff=lambda attempt: timedelta(0))
        def credit() -> None:
            ctx = skiplock.current_job()
            ctx.transaction().execute("INSERT INTO credits VALUES (%s, %s, 1)", [ctx.job.id, ctx.attempt])
            if ctx.attempt == 1:
                raise ValueError("declined")

    else:

        @skiplock.task(queue="tx", max_attempts=3, retry_backoff=lambda attempt: timedelta(0))
        async def credit() -> None:
            ctx = skiplock.current_job()
            tx = await ctx.atransaction()
            await tx.execute("INSERT INTO credits VALUES (%s, %s, 1)", [ctx.job.id, ctx.attempt])
            if ctx.attempt == 1:
                raise ValueError("declined")

    job = credit.using(client=client).enqueue()
    worker = skiplock.AsyncWorker([credit], dsn=dsn, burst=True, **FAST)
    await worker.run()
    assert credited(conn) == [(job.id, 2, 1)]
    done = client.get_job(job.id)
    assert (done.state, done.attempt) == (JobState.COMPLETED, 2)
    assert [e["type"] for e in done.errors] == ["builtins.ValueError"]
    assert (worker.stats.retried, worker.stats.completed) == (1, 1)


async def test_a_task_that_fails_for_good_leaves_no_write(dsn, client, conn, credits):
    @skiplock.task(queue="tx", max_attempts=1)
    def credit() -> None:
        ctx = skiplock.current_job()
        ctx.transaction().execute("INSERT INTO credits VALUES (%s, %s, 1)", [ctx.job.id, ctx.attempt])
        raise skiplock.Fail("no such account")

    job = credit.using(client=client).enqueue()
    await skiplock.AsyncWorker([credit], dsn=dsn, burst=True, **FAST).run()
    assert credited(conn) == []
    assert job_row(conn, job.id) == ("failed", 1)


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_lease_lost_while_writing_rolls_the_writes_back(dsn, client, conn, credits, kind):
    """Pass: while the task holds uncommitted writes, its lease expires and another holder claims
    the job (real SQL: reap, then claim). Nothing locks the job's row during the task, so both
    go through at once; when the task returns, complete() on its transaction finds no job with
    its token: the writes are rolled back, the new holder's attempt is untouched."""
    started, go_on = threading.Event(), threading.Event()

    if kind == "sync":

        @skiplock.task(queue="tx")
        def credit() -> str:
            ctx = skiplock.current_job()
            ctx.transaction().execute("INSERT INTO credits VALUES (%s, %s, 1)", [ctx.job.id, ctx.attempt])
            started.set()
            go_on.wait(30)
            return "stale"

    else:

        @skiplock.task(queue="tx")
        async def credit() -> str:
            ctx = skiplock.current_job()
            tx = await ctx.atransaction()
            await tx.execute("INSERT INTO credits VALUES (%s, %s, 1)", [ctx.job.id, ctx.attempt])
            started.set()
            await asyncio.to_thread(go_on.wait, 30)
            return "stale"

    job = credit.using(client=client).enqueue()
    async with skiplock.AsyncWorker(
        [credit], dsn=dsn, lease=timedelta(seconds=30), concurrency=1, prefetch=0, **FAST
    ) as worker:
        await asyncio.to_thread(started.wait, 10)
        reaped = conn.execute(
            "SELECT job_id FROM skiplock.reap(as_of => now() + interval '1 hour')"
        ).fetchall()
        assert reaped == [(job.id,)]  # the row was not locked by the running task
        other = conn.execute(
            "SELECT lease_token FROM skiplock.claim('{tx}', gen_random_uuid(), 1, '1 hour',"
            " as_of => now() + interval '1 hour')"
        ).fetchone()
        assert other is not None
        go_on.set()
        await await_until(lambda: asyncio.sleep(0, worker.stats.lost == 1), what="stale completion rejected")
    assert credited(conn) == []
    row = conn.execute("SELECT state::text, attempt, lease_token FROM skiplock.job WHERE id = %s", [job.id])
    assert row.fetchone() == ("running", 2, other[0])
    assert worker.stats.completed == 0


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_task_past_its_timeout_leaves_no_write(dsn, client, conn, credits, kind):
    """Pass: the task writes, then overruns its timeout: the job fails as usual and nothing is
    committed. A def task's thread runs on and writes again after the job has failed: that write
    is rolled back too, once the thread ends (the connection is never shared with the worker
    while the thread may use it)."""
    release = threading.Event()

    if kind == "sync":

        @skiplock.task(queue="tx", timeout=timedelta(milliseconds=200), max_attempts=1)
        def credit() -> None:
            ctx = skiplock.current_job()
            tx = ctx.transaction()
            tx.execute("INSERT INTO credits VALUES (%s, %s, 1)", [ctx.job.id, ctx.attempt])
            release.wait(30)
            tx.execute("INSERT INTO credits VALUES (%s, %s, 2)", [ctx.job.id, ctx.attempt])

    else:

        @skiplock.task(queue="tx", timeout=timedelta(milliseconds=200), max_attempts=1)
        async def credit() -> None:
            ctx = skiplock.current_job()
            tx = await ctx.atransaction()
            await tx.execute("INSERT INTO credits VALUES (%s, %s, 1)", [ctx.job.id, ctx.attempt])
            await asyncio.Event().wait()

    job = credit.using(client=client).enqueue()
    worker = skiplock.AsyncWorker([credit], dsn=dsn, burst=True, **FAST)
    await worker.run()
    try:
        assert job_row(conn, job.id) == ("failed", 1)
        assert client.get_job(job.id).errors[-1]["type"] == "TimeoutError"
        assert credited(conn) == []
    finally:
        release.set()
    await await_until(lambda: asyncio.to_thread(lambda: tx_backends(conn) == 0), what="the transaction ends")
    await await_until(lambda: asyncio.sleep(0, not worker.has_stuck_threads), what="thread ends")
    assert credited(conn) == []


async def test_a_task_released_at_shutdown_leaves_no_write(dsn, client, conn, credits):
    started = asyncio.Event()

    @skiplock.task(queue="tx")
    async def credit() -> None:
        ctx = skiplock.current_job()
        tx = await ctx.atransaction()
        await tx.execute("INSERT INTO credits VALUES (%s, %s, 1)", [ctx.job.id, ctx.attempt])
        started.set()
        await asyncio.Event().wait()

    job = credit.using(client=client).enqueue()
    worker = skiplock.AsyncWorker([credit], dsn=dsn, grace_period=timedelta(milliseconds=200), **FAST)
    runner = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 10)
    await worker.stop()
    await asyncio.wait_for(runner, 20)
    assert job_row(conn, job.id) == ("available", 0)  # released: no attempt spent
    assert credited(conn) == []
    assert worker.stats.released == 1


async def test_a_failed_commit_keeps_nothing_and_leaves_the_job_to_its_lease(
    dsn, client, conn, credits, caplog
):
    """Pass: the commit itself fails (a deferred constraint of the task's table): nothing is
    committed, the error is logged, the job stays running until its lease expires, and the
    connection goes back to the pool clean: the next job (same single connection) commits."""
    conn.execute(
        """
        CREATE FUNCTION no_negative() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.amount < 0 THEN RAISE EXCEPTION 'negative credit'; END IF;
            RETURN NULL;
        END $$;
        CREATE CONSTRAINT TRIGGER no_negative AFTER INSERT ON credits
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION no_negative();
        """
    )

    @skiplock.task(queue="tx")
    def credit(amount: int) -> int:
        ctx = skiplock.current_job()
        ctx.transaction().execute(
            "INSERT INTO credits VALUES (%s, %s, %s)", [ctx.job.id, ctx.attempt, amount]
        )
        return amount

    bad = credit.using(client=client, priority=1).enqueue(amount=-5)
    good = credit.using(client=client).enqueue(amount=5)
    with caplog.at_level(logging.ERROR, logger="skiplock"):
        async with skiplock.AsyncWorker(
            [credit], dsn=dsn, concurrency=1, prefetch=0, lease=timedelta(seconds=30), **FAST
        ) as worker:
            await await_until(
                lambda: asyncio.to_thread(lambda: job_row(conn, good.id) == ("completed", 1)),
                what="the next job completes",
            )
            assert job_row(conn, bad.id) == ("running", 1)  # not completed, not reaped: its lease runs
            (task_connections,) = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = 'skiplock-task' AND datname = current_database()"
            ).fetchone()
            assert task_connections == 1  # both jobs' transactions ran on one pooled connection
    assert credited(conn) == [(good.id, 1, 5)]
    assert any("could not commit its transaction" in r.getMessage() for r in caplog.records)
    assert worker.stats.completed == 1


async def test_a_task_that_catches_a_failed_statement_is_retried(dsn, client, conn, credits):
    @skiplock.task(queue="tx", max_attempts=2, retry_backoff=lambda attempt: timedelta(0))
    def credit() -> None:
        ctx = skiplock.current_job()
        tx = ctx.transaction()
        tx.execute("INSERT INTO credits VALUES (%s, %s, 1)", [ctx.job.id, ctx.attempt])
        if ctx.attempt == 1:
            with contextlib.suppress(psycopg.errors.DivisionByZero):
                tx.execute("SELECT 1 / 0")  # caught, but the transaction is aborted all the same

    job = credit.using(client=client).enqueue()
    await skiplock.AsyncWorker([credit], dsn=dsn, burst=True, **FAST).run()
    assert credited(conn) == [(job.id, 2, 1)]
    assert [e["type"] for e in client.get_job(job.id).errors] == ["TransactionAborted"]


async def test_a_task_that_commits_by_itself_is_failed_not_rerun(dsn, client, conn, credits):
    @skiplock.task(queue="tx", max_attempts=5)
    def credit() -> None:
        ctx = skiplock.current_job()
        tx = ctx.transaction()
        tx.execute("INSERT INTO credits VALUES (%s, %s, 1)", [ctx.job.id, ctx.attempt])
        tx.commit()  # breaks the contract: the write is in, the completion is not

    job = credit.using(client=client).enqueue()
    await skiplock.AsyncWorker([credit], dsn=dsn, burst=True, **FAST).run()
    assert credited(conn) == [(job.id, 1, 1)]
    done = client.get_job(job.id)
    assert (done.state, done.attempt) == (JobState.FAILED, 1)
    assert done.errors[-1]["type"] == "TransactionEnded"


async def test_the_wrong_kind_of_transaction_or_none_is_a_clear_error(dsn, client):
    errors: dict[str, str] = {}

    @skiplock.task(queue="tx")
    async def from_async() -> None:
        with pytest.raises(skiplock.ConfigError) as info:
            skiplock.current_job().transaction()
        errors["async"] = str(info.value)

    @skiplock.task(queue="tx")
    def from_sync() -> None:
        with pytest.raises(skiplock.ConfigError) as info:
            asyncio.run(skiplock.current_job().atransaction())
        errors["sync"] = str(info.value)

    from_async.using(client=client).enqueue()
    from_sync.using(client=client).enqueue()
    await skiplock.AsyncWorker([from_async, from_sync], dsn=dsn, burst=True, **FAST).run()
    assert "an async task uses `await skiplock.current_job().atransaction()`" in errors["async"]
    assert "a def task uses `skiplock.current_job().transaction()`" in errors["sync"]
    job = client.get_job(from_sync.using(client=client).enqueue().id)
    with pytest.raises(skiplock.ConfigError, match="only while its task runs"):
        skiplock.JobContext(job=job, worker_id=uuid.uuid4()).transaction()


async def test_a_task_that_never_asks_pays_nothing_and_goes_through_the_acker(dsn, client, conn, credits):
    @skiplock.task(queue="tx")
    def plain(n: int) -> int:
        return n

    ids = plain.using(client=client).enqueue_many([{"n": n} for n in range(20)])
    worker = skiplock.AsyncWorker([plain], dsn=dsn, burst=True, concurrency=4, **FAST)
    await worker.run()
    assert [client.get_job(i).result for i in ids] == list(range(20))
    assert worker.stats.completed == 20
    assert worker.stats.transactions == 0  # no job transaction was opened, so no pool was made


async def test_the_job_transaction_is_read_committed_so_heartbeats_never_break_it(dsn, client, conn, credits):
    """Pass: with repeatable read as the database's default, a task whose transaction outlives
    several heartbeats (each updates the job's row) still completes: the job transaction is
    read committed, so the final complete() never meets a serialization failure."""
    conn.execute(f"ALTER DATABASE {conn.info.dbname} SET default_transaction_isolation = 'repeatable read'")
    extended = asyncio.Event()
    levels = []

    @skiplock.task(queue="tx")
    async def credit() -> None:
        ctx = skiplock.current_job()
        tx = await ctx.atransaction()
        await tx.execute("INSERT INTO credits VALUES (%s, %s, 1)", [ctx.job.id, ctx.attempt])
        levels.append((await (await tx.execute("SHOW transaction_isolation")).fetchone())[0])
        await asyncio.wait_for(extended.wait(), 10)

    job = credit.using(client=client).enqueue()
    async with skiplock.AsyncWorker([credit], dsn=dsn, lease=timedelta(milliseconds=600), **FAST) as worker:
        await await_until(lambda: asyncio.sleep(0, bool(levels)), what="the task wrote")
        first = conn.execute("SELECT lease_expires_at FROM skiplock.job WHERE id = %s", [job.id]).fetchone()[
            0
        ]

        def heartbeats_went_by() -> bool:
            row = conn.execute("SELECT lease_expires_at FROM skiplock.job WHERE id = %s", [job.id]).fetchone()
            return row is not None and row[0] > first

        await await_until(lambda: asyncio.to_thread(heartbeats_went_by), what="a heartbeat after the write")
        extended.set()
        await await_until(lambda: asyncio.sleep(0, worker.stats.completed == 1), what="completion")
    assert levels == ["read committed"]
    assert credited(conn) == [(job.id, 1, 1)]
