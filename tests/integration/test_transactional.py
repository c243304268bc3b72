"""Enqueue inside the caller's transaction: commit means job, rollback means no job."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import skiplock


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
    if str(p["host"]).startswith("/"):  # a Unix socket directory (the embedded pgserver fallback)
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
