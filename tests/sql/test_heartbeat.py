"""skiplock.heartbeat(job_ids, lease_tokens, lease, as_of): extend the leases one still holds.

For each running job whose lease token matches, the lease now ends at ``as_of + lease``; nothing
else about the job changes (state, attempt, token, worker). A lease that ran out but was not
reaped yet is still the holder's and is extended. A stale or unknown token, or a job that is not
running, is left alone and not returned: the ids missing from the result are the leases the
caller has lost. A NULL lease is refused by the table (23514) and changes nothing.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from jobrows import Conn, at, claim, live, running, where

HEARTBEAT = "SELECT * FROM skiplock.heartbeat(%s::bigint[], %s::uuid[], %s::interval, as_of => %s)"


def heartbeat(
    conn: Conn, leases: dict[int, uuid.UUID], lease: str | None = "1 minute", as_of=None
) -> list[int]:
    ids = list(leases)
    return sorted(
        r[0] for r in conn.execute(HEARTBEAT, [ids, [leases[i] for i in ids], lease, as_of or at(20)])
    )


def test_the_holder_extends_its_lease_to_as_of_plus_lease(conn):
    job_id, token = running(conn)
    before = live(conn, job_id)
    assert before["lease_expires_at"] == at(30)
    assert heartbeat(conn, {job_id: token}, "2 minutes", as_of=at(20)) == [job_id]
    row = live(conn, job_id)
    assert row["lease_expires_at"] == at(20 + 120)
    for column in ("state", "attempt", "lease_token", "worker_id", "attempted_at", "run_at", "errors"):
        assert row[column] == before[column], column


def test_a_shorter_lease_brings_the_end_closer(conn):
    job_id, token = running(conn)
    assert heartbeat(conn, {job_id: token}, "5 seconds", as_of=at(1)) == [job_id]
    assert live(conn, job_id)["lease_expires_at"] == at(6)


def test_a_stale_token_extends_nothing(conn):
    job_id, token = running(conn)
    assert heartbeat(conn, {job_id: uuid.uuid4()}) == []
    row = live(conn, job_id)
    assert (row["lease_token"], row["lease_expires_at"]) == (token, at(30))


def test_a_lease_that_ran_out_but_was_not_reaped_is_still_the_holders(conn):
    job_id, token = running(conn)
    assert heartbeat(conn, {job_id: token}, "1 minute", as_of=at(45)) == [job_id]
    assert live(conn, job_id)["lease_expires_at"] == at(105)
    assert conn.execute("SELECT count(*) FROM skiplock.reap(as_of => %s)", [at(100)]).fetchone() == (0,)


def test_a_reaped_lease_is_lost_for_good(conn):
    job_id, old = running(conn)
    conn.execute("SELECT * FROM skiplock.reap(as_of => %s)", [at(31)])
    assert heartbeat(conn, {job_id: old}, as_of=at(32)) == []
    assert where(conn, job_id) == ("job", "available")
    _, new = claim(conn, as_of=at(33))
    assert heartbeat(conn, {job_id: old}, as_of=at(34)) == []
    assert live(conn, job_id)["lease_expires_at"] == at(63)
    assert heartbeat(conn, {job_id: new}, as_of=at(34)) == [job_id]


def test_a_job_that_is_not_running_is_left_alone(conn):
    done, t1 = running(conn)
    conn.execute("SELECT skiplock.complete(ARRAY[%s::bigint], ARRAY[%s::uuid])", [done, t1])
    released, t2 = running(conn)
    conn.execute("SELECT skiplock.release(ARRAY[%s::bigint], ARRAY[%s::uuid])", [released, t2])
    assert heartbeat(conn, {done: t1, released: t2}) == []
    assert where(conn, done) == ("history", "completed")
    row = live(conn, released)
    assert (row["state"], row["lease_expires_at"]) == ("available", None)


def test_a_batch_reports_exactly_the_leases_still_held(conn):
    jobs = [running(conn) for _ in range(4)]
    leases = dict(jobs)
    lost = jobs[2][0]
    leases[lost] = uuid.uuid4()
    leases[10**12] = uuid.uuid4()
    assert heartbeat(conn, leases, as_of=at(10)) == sorted(i for i, _ in jobs if i != lost)
    assert live(conn, lost)["lease_expires_at"] == at(30)


def test_a_null_lease_is_refused_and_changes_nothing(conn):
    job_id, token = running(conn)
    with pytest.raises(psycopg.errors.CheckViolation, match="job_lease_when_running"):
        heartbeat(conn, {job_id: token}, None)
    assert live(conn, job_id)["lease_expires_at"] == at(30)


def test_null_and_empty_inputs_extend_nothing(conn):
    job_id, _ = running(conn)
    assert conn.execute("SELECT count(*) FROM skiplock.heartbeat('{}', '{}')").fetchone() == (0,)
    assert conn.execute(
        "SELECT count(*) FROM skiplock.heartbeat(ARRAY[%s::bigint], NULL)", [job_id]
    ).fetchone() == (0,)
    assert live(conn, job_id)["lease_expires_at"] == at(30)
