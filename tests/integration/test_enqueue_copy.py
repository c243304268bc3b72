"""enqueue_many through COPY (Client and AsyncClient): the array path's promises, kept.

With ``COPY_MIN_BATCH`` set (the ``copied`` fixture sets it to ``N``; by default the path is off),
batches of that many jobs or more go through the session's staging table; every test checks
that the COPY path really ran, so none passes on the array path by accident.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

import skiplock
import skiplock.client as sync_client
from skiplock import JobSpec
from skiplock._core import copying
from skiplock._driver.executor import Executor
from skiplock._driver.executor_async import AsyncExecutor
from skiplock.backoff import fixed

N = 100


@pytest.fixture
def copied(monkeypatch) -> list[int]:
    """Batches of N jobs or more go through COPY; the number of rows of each COPY the executors
    ran, sync and async alike."""
    monkeypatch.setattr(copying, "COPY_MIN_BATCH", N)
    seen: list[int] = []
    sync_copy, async_copy = Executor.copy_rows, AsyncExecutor.copy_rows

    def spy(copy: copying.BoundCopy, *, conn: Any) -> None:
        seen.append(len(copy.rows))
        sync_copy(copy, conn=conn)

    async def aspy(copy: copying.BoundCopy, *, conn: Any) -> None:
        seen.append(len(copy.rows))
        await async_copy(copy, conn=conn)

    monkeypatch.setattr(Executor, "copy_rows", staticmethod(spy))
    monkeypatch.setattr(AsyncExecutor, "copy_rows", staticmethod(aspy))
    return seen


def specs(n: int = N, **options: Any) -> list[JobSpec]:
    return [JobSpec(task="copy_me", args={"pos": i}, queue="copy", **options) for i in range(n)]


def sa_url(dsn: str) -> str:
    p = psycopg.conninfo.conninfo_to_dict(dsn)
    return f"postgresql+psycopg://{p['user']}@{p['host']}:{p['port']}/{p['dbname']}"


def positions(conn: psycopg.Connection[Any], ids: list[int]) -> list[int]:
    found = dict(conn.execute("SELECT id, (args ->> 'pos')::int FROM skiplock.jobs").fetchall())
    return [found[i] for i in ids]


def count(conn: psycopg.Connection[Any]) -> int:
    return conn.execute("SELECT count(*) FROM skiplock.jobs WHERE task = 'copy_me'").fetchone()[0]


def test_a_small_batch_stays_on_the_array_path(client, copied, monkeypatch):
    assert len(client.enqueue_many(specs(N - 1))) == N - 1
    monkeypatch.setattr(copying, "COPY_MIN_BATCH", None)  # the default: off
    assert len(client.enqueue_many(specs(2 * N))) == 2 * N
    assert copied == []


def test_ids_come_back_in_input_order_with_each_jobs_options(client, conn, copied):
    batch = specs()
    batch[1] = JobSpec(task="copy_me", args={"pos": 1}, queue="copy", priority=7, max_attempts=3,
                       delay=timedelta(hours=1), retry_backoff=fixed(timedelta(seconds=5)))  # fmt: skip
    ids = client.enqueue_many(batch)
    assert copied == [N]
    assert positions(conn, ids) == list(range(N))
    assert ids == sorted(ids)
    row = conn.execute(
        "SELECT state::text, priority, max_attempts, retry_policy ->> 'kind' FROM skiplock.job WHERE id = %s",
        [ids[1]],
    ).fetchone()
    assert row == ("scheduled", 7, 3, "fixed")


async def test_async_ids_come_back_in_input_order(aclient, conn, copied):
    ids = await aclient.enqueue_many(specs())
    assert copied == [N]
    assert positions(conn, ids) == list(range(N))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"queue": "bad queue"}, "invalid queue name"),
        ({"task": "no;way"}, "invalid task name"),
        ({"priority": 70000}, "priority 70000 out of range"),
        ({"max_attempts": 0}, "max_attempts 0 out of range"),
        ({"delay": timedelta(seconds=-5)}, "delay must not be negative"),
    ],
)
def test_a_bad_job_is_named_by_its_position_and_nothing_is_written(client, conn, copied, bad, message):
    batch = specs(N + 50)
    batch[N + 7] = JobSpec(**{"task": "copy_me", "queue": "copy", **bad})
    with pytest.raises(skiplock.InvalidInput, match=rf"{message}.*\(batch position {N + 8}\)( \(|$)"):
        client.enqueue_many(batch)
    assert copied == [N + 50]
    assert count(conn) == 0


def test_a_bad_job_in_a_later_chunk_leaves_the_earlier_chunks_unwritten(client, conn, copied, monkeypatch):
    monkeypatch.setattr(sync_client, "ENQUEUE_CHUNK", N)
    batch = specs(3 * N)
    batch[2 * N + 1] = JobSpec(task="copy_me", queue="copy", priority=-40000)
    with pytest.raises(skiplock.InvalidInput, match=r"\(batch position 2\)"):  # its position in its chunk
        client.enqueue_many(batch)
    assert copied == [N, N, N]
    assert count(conn) == 0
    ids = client.enqueue_many(specs(3 * N))
    assert positions(conn, ids) == list(range(3 * N))


def test_dedupe_keys_within_the_batch_and_against_live_jobs(client, conn, copied):
    live = client.enqueue("copy_me", {"pos": -1}, queue="copy", dedupe_key="live")
    batch = [
        JobSpec(task="copy_me", args={"pos": i}, queue="copy", dedupe_key=f"k{i % 10}") for i in range(N)
    ]
    batch[5] = JobSpec(task="copy_me", args={"pos": 5}, queue="copy", dedupe_key="live")
    ids = client.enqueue_many(batch)
    assert copied == [N]
    assert ids[5] == live.id
    assert ids[15] == ids[25] != ids[5]  # both k5: one job
    assert len(set(ids)) == 11
    assert count(conn) == 11
    # A window: a completed holder still answers for its key.
    claimed, token = conn.execute(
        "SELECT id, lease_token FROM skiplock.claim(ARRAY['copy'], gen_random_uuid()) WHERE dedupe_key = 'live'"
    ).fetchone()
    conn.execute("SELECT skiplock.complete(ARRAY[%s]::bigint[], ARRAY[%s]::uuid[])", [claimed, token])
    windowed = JobSpec(task="copy_me", queue="copy", dedupe_key="live", dedupe_window=timedelta(hours=1))
    again = client.enqueue_many([*specs(N - 1), windowed])
    assert again[-1] == live.id


def test_one_notify_per_queue(dsn, client, copied):
    batch = [JobSpec(task="copy_me", queue=("a", "b")[i % 2]) for i in range(N)]
    batch.append(JobSpec(task="copy_me", queue="later", delay=timedelta(hours=1)))
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN skiplock_insert")
        client.enqueue_many(batch)
        got = [n.payload for n in listener.notifies(timeout=1.0)]
    assert copied == [N + 1]
    assert sorted(got) == ["a", "b"]


def test_inside_a_caller_transaction_commit_and_rollback(dsn, conn, client, copied):
    with psycopg.connect(dsn) as tx_conn:
        with tx_conn.transaction():  # commit
            client.enqueue_many(specs(), conn=tx_conn)
            assert count(conn) == 0  # invisible to others until commit
        assert count(conn) == N
        client.enqueue_many(specs(), conn=tx_conn)  # no transaction open yet: psycopg opens the caller's
        tx_conn.rollback()
        assert count(conn) == N
        tx_conn.execute("SELECT 1")
        client.enqueue_many(specs(), conn=tx_conn)  # inside the caller's implicit transaction
        client.enqueue_many(specs(), conn=tx_conn)  # twice: the staging table is reused
        tx_conn.rollback()
        assert count(conn) == N
    with psycopg.connect(dsn, autocommit=True) as auto:  # an autocommit connection: committed at once
        client.enqueue_many(specs(), conn=auto)
    assert count(conn) == 2 * N
    assert copied == [N] * 5


async def test_async_inside_a_caller_transaction_commit_and_rollback(dsn, conn, aclient, copied):
    async with await psycopg.AsyncConnection.connect(dsn) as tx_conn:
        async with tx_conn.transaction():
            await aclient.enqueue_many(specs(), conn=tx_conn)
        await aclient.enqueue_many(specs(), conn=tx_conn)
        await tx_conn.rollback()
    assert count(conn) == N
    assert copied == [N, N]


def test_a_sqlalchemy_session(dsn, conn, client, copied):
    engine = create_engine(sa_url(dsn))
    try:
        with Session(engine) as session:
            session.execute(text("SELECT 1"))
            client.enqueue_many(specs(), conn=session)
            session.rollback()
        assert count(conn) == 0
        with Session(engine) as session, session.begin():
            client.enqueue_many(specs(), conn=session)
    finally:
        engine.dispose()
    assert count(conn) == N
    assert copied == [N, N]
