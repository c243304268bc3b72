"""skiplock.complete(job_ids, lease_tokens, results, as_of): the contract, as examples.

A running job whose lease token matches moves to history as completed, at ``as_of``, with its
result, its attempt count and its errors as they were. Anything else (a stale or unknown token,
a job that is not running, an unknown or finished id) is left alone and not returned: complete
refuses nothing with an error, it reports what it finished. The result is the set of ids it
finished, and each finished job's queue gets one ``skiplock_done`` notification.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from jobrows import T0, Conn, at, claim, enqueue, finished, listening, live, running, where
from psycopg.types.json import Jsonb

COMPLETE = "SELECT * FROM skiplock.complete(%s::bigint[], %s::uuid[], %s::jsonb[], as_of => %s)"


def complete(
    conn: Conn, leases: dict[int, uuid.UUID], results: list[object] | None = None, as_of=None
) -> list[int]:
    ids = list(leases)
    res = None if results is None else [Jsonb(r) for r in results]
    return sorted(r[0] for r in conn.execute(COMPLETE, [ids, [leases[i] for i in ids], res, as_of or at(5)]))


def test_a_running_job_with_its_token_moves_to_history_as_completed_at_as_of(conn):
    job_id, token = running(conn)
    before = live(conn, job_id)
    assert complete(conn, {job_id: token}, [{"answer": 42}], as_of=at(7)) == [job_id]
    assert live(conn, job_id) is None
    row = finished(conn, job_id)
    assert row is not None
    assert row["state"] == "completed"
    assert row["finished_at"] == at(7)
    assert row["result"] == {"answer": 42}
    # what the job was is kept as it was: the attempt claim counted, who ran it, when, its errors
    for column in (
        "queue",
        "task",
        "args",
        "priority",
        "attempt",
        "max_attempts",
        "run_at",
        "created_at",
        "attempted_at",
        "worker_id",
        "dedupe_key",
        "errors",
    ):
        assert row[column] == before[column], column
    assert row["attempt"] == 1


def test_a_stale_token_finalizes_nothing(conn):
    job_id, token = running(conn)
    assert complete(conn, {job_id: uuid.uuid4()}) == []
    row = live(conn, job_id)
    assert row is not None
    assert (row["state"], row["lease_token"]) == ("running", token)
    assert finished(conn, job_id) is None


def test_the_token_of_an_earlier_attempt_cannot_complete_the_attempt_running_now(conn):
    """A worker that lost its lease (reaped, then claimed by another) cannot finish the new attempt."""
    job_id, old = running(conn)
    assert conn.execute("SELECT * FROM skiplock.reap(as_of => %s)", [at(60)]).fetchall() == [
        (job_id, "available")
    ]
    _, new = claim(conn, as_of=at(61))
    assert new != old
    assert complete(conn, {job_id: old}, as_of=at(62)) == []
    assert where(conn, job_id) == ("job", "running")
    assert live(conn, job_id)["attempt"] == 2
    assert complete(conn, {job_id: new}, as_of=at(63)) == [job_id]
    assert finished(conn, job_id)["attempt"] == 2


def test_a_job_that_is_no_longer_running_is_left_alone(conn):
    """The token a job was claimed with stops working once it is retryable, released or finished."""
    retryable, t1 = running(conn, queue="a")
    conn.execute(
        "SELECT skiplock.fail(%s, %s, 'boom', retry_in => '1 hour', as_of => %s)", [retryable, t1, at(1)]
    )
    released, t2 = running(conn, queue="b")
    conn.execute("SELECT skiplock.release(ARRAY[%s::bigint], ARRAY[%s::uuid])", [released, t2])
    done, t3 = running(conn, queue="c")
    assert complete(conn, {done: t3}, [{"first": True}], as_of=at(2)) == [done]

    assert (
        complete(conn, {retryable: t1, released: t2, done: t3}, [{}, {}, {"second": True}], as_of=at(3)) == []
    )
    assert where(conn, retryable) == ("job", "retryable")
    assert where(conn, released) == ("job", "available")
    assert (finished(conn, done)["result"], finished(conn, done)["finished_at"]) == ({"first": True}, at(2))


def test_a_lease_token_only_exists_on_a_running_job(conn):
    """Why the token check covers the state: the table refuses a lease on any other state."""
    job_id = enqueue(conn)
    with pytest.raises(psycopg.errors.CheckViolation, match="job_lease_when_running"):
        conn.execute(
            "UPDATE skiplock.job SET lease_token = gen_random_uuid(), lease_expires_at = now() WHERE id = %s",
            [job_id],
        )


def test_a_batch_finishes_exactly_the_jobs_whose_token_matches(conn):
    jobs = [running(conn) for _ in range(4)]
    leases = dict(jobs)
    stale = jobs[1][0]
    leases[stale] = uuid.uuid4()
    missing = 10**12
    leases[missing] = uuid.uuid4()
    results = [{"n": i} for i in range(len(leases))]
    got = complete(conn, leases, results)
    assert got == sorted(i for i, _ in jobs if i != stale)
    assert where(conn, stale) == ("job", "running")
    # each result lands on its own job (the arrays are read by position)
    for n, job_id in enumerate(leases):
        if job_id in got:
            assert finished(conn, job_id)["result"] == {"n": n}


def test_results_default_to_null_and_oversized_results_are_replaced_by_a_marker(conn):
    plain, t1 = running(conn)
    assert complete(conn, {plain: t1}) == [plain]
    assert finished(conn, plain)["result"] is None

    conn.execute("SET skiplock.max_result_bytes = 100")
    big, t2 = running(conn)
    assert complete(conn, {big: t2}, [{"blob": "x" * 500}]) == [big]
    result = finished(conn, big)["result"]
    assert result["truncated"] is True
    assert result["bytes"] > 100


def test_completing_twice_returns_the_job_once(conn):
    job_id, token = running(conn)
    assert complete(conn, {job_id: token}, as_of=at(1)) == [job_id]
    assert complete(conn, {job_id: token}, as_of=at(2)) == []
    assert finished(conn, job_id)["finished_at"] == at(1)


def test_null_and_empty_inputs_finish_nothing(conn):
    job_id, _ = running(conn)
    assert conn.execute("SELECT count(*) FROM skiplock.complete('{}', '{}')").fetchone() == (0,)
    assert conn.execute(
        "SELECT count(*) FROM skiplock.complete(ARRAY[%s::bigint], NULL)", [job_id]
    ).fetchone() == (0,)
    assert where(conn, job_id) == ("job", "running")


def test_each_finished_queue_is_told_once_on_skiplock_done(conn, dsn):
    a1, ta1 = running(conn, queue="a")
    a2, ta2 = running(conn, queue="a")
    b, tb = running(conn, queue="b")
    stale, _ = running(conn, queue="c")
    with listening(conn, dsn, "skiplock_done") as told:
        complete(conn, {a1: ta1, a2: ta2, b: tb, stale: uuid.uuid4()})
    assert sorted(told) == ["a", "b"]


def test_as_of_defaults_to_the_transaction_time(conn):
    job_id, token = running(conn)
    with conn.transaction():
        now = conn.execute("SELECT now()").fetchone()[0]
        conn.execute("SELECT skiplock.complete(ARRAY[%s::bigint], ARRAY[%s::uuid])", [job_id, token])
    assert finished(conn, job_id)["finished_at"] == now
    assert now < T0  # T0 is in the future: the default really was used
