"""skiplock.reap(max_jobs, worker_ttl, as_of): take back the jobs whose lease ran out.

A running job whose lease ended before ``as_of`` (strictly) has lost its worker. reap appends a
``LeaseExpired`` error for the attempt and, the attempt counting as spent:

* returns it to its queue as ``available`` now (``run_at = as_of``), lease and worker cleared,
  when attempts are left and no cancel was requested;
* ends it in history at ``as_of``: ``failed`` when its attempts are used up, ``cancelled`` when a
  cancel was requested.

At most ``max_jobs`` jobs, lowest ids first; a job another transaction holds locked is skipped,
never waited for. Returns each job it touched with its new state and wakes each queue that got a
job back on ``skiplock_insert``. It also forgets the workers whose heartbeat is older than
``as_of - worker_ttl``. A negative ``max_jobs`` is refused (2201W) and changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import psycopg
import pytest
from jobrows import WORKER, Conn, at, claim, finished, listening, live, running, where

REAP = "SELECT job_id, state::text FROM skiplock.reap(%s, %s::interval, %s)"


def reap(
    conn: Conn, as_of: datetime, max_jobs: int = 1000, worker_ttl: str = "10 minutes"
) -> list[tuple[int, str]]:
    return sorted(conn.execute(REAP, [max_jobs, worker_ttl, as_of]).fetchall())


def test_an_expired_lease_returns_the_job_to_its_queue_with_the_attempt_spent(conn, dsn):
    job_id, token = running(conn)  # lease until at(30)
    with listening(conn, dsn, "skiplock_insert") as woken:
        assert reap(conn, at(31)) == [(job_id, "available")]
    assert woken == ["q"]
    row = live(conn, job_id)
    assert (row["state"], row["run_at"], row["attempt"]) == ("available", at(31), 1)
    assert (row["lease_token"], row["lease_expires_at"], row["worker_id"]) == (None, None, None)
    [entry] = row["errors"]
    assert datetime.fromisoformat(entry.pop("at")) == at(31)
    assert entry.pop("error").startswith("lease expired at ")
    assert entry == {"attempt": 1, "worker_id": str(WORKER), "type": "LeaseExpired"}
    _, new = claim(conn, as_of=at(32))
    assert new != token
    assert live(conn, job_id)["attempt"] == 2


def test_a_lease_is_reaped_only_once_it_has_ended(conn):
    job_id, token = running(conn)  # lease until at(30)
    assert reap(conn, at(29)) == []
    assert reap(conn, at(30)) == []  # ends at 30: still held at 30
    row = live(conn, job_id)
    assert (row["state"], row["lease_token"]) == ("running", token)
    assert reap(conn, at(30.001)) == [(job_id, "available")]


def test_jobs_that_are_not_running_are_never_reaped(conn):
    scheduled = conn.execute(
        "SELECT id FROM skiplock.enqueue('q', 't', run_at => %s, as_of => %s)", [at(3600), at(0)]
    ).fetchone()[0]
    available = conn.execute(
        "SELECT id FROM skiplock.enqueue('other', 't', as_of => %s)", [at(0)]
    ).fetchone()[0]
    retryable, token = running(conn, queue="r")
    conn.execute(
        "SELECT skiplock.fail(%s, %s, 'boom', retry_in => '1 hour', as_of => %s)", [retryable, token, at(1)]
    )
    assert reap(conn, at(10**6)) == []
    assert [where(conn, i) for i in (scheduled, available, retryable)] == [
        ("job", "scheduled"),
        ("job", "available"),
        ("job", "retryable"),
    ]


def test_the_last_attempt_fails_for_good_at_as_of(conn, dsn):
    job_id, _ = running(conn, max_attempts=1)
    with listening(conn, dsn, "skiplock_insert") as woken:
        assert reap(conn, at(40)) == [(job_id, "failed")]
    assert woken == []
    assert live(conn, job_id) is None
    row = finished(conn, job_id)
    assert (row["state"], row["attempt"], row["finished_at"]) == ("failed", 1, at(40))
    assert row["errors"][-1]["type"] == "LeaseExpired"


def test_attempts_left_decide_between_retry_and_failure(conn):
    job_id, _ = running(conn, max_attempts=2)
    assert reap(conn, at(31)) == [(job_id, "available")]
    claim(conn, as_of=at(32))  # attempt 2 of 2, lease until at(62)
    assert reap(conn, at(63)) == [(job_id, "failed")]
    assert [e["attempt"] for e in finished(conn, job_id)["errors"]] == [1, 2]


def test_a_job_whose_cancel_was_requested_ends_cancelled(conn):
    job_id, _ = running(conn, max_attempts=10)
    conn.execute("SELECT * FROM skiplock.cancel(ARRAY[%s::bigint])", [job_id])
    assert reap(conn, at(31)) == [(job_id, "cancelled")]
    row = finished(conn, job_id)
    assert (row["state"], row["finished_at"]) == ("cancelled", at(31))


def test_max_jobs_takes_the_lowest_ids_first(conn):
    ids = [running(conn)[0] for _ in range(5)]
    assert reap(conn, at(31), max_jobs=2) == [(i, "available") for i in ids[:2]]
    assert [where(conn, i)[1] for i in ids] == ["available"] * 2 + ["running"] * 3
    assert reap(conn, at(31)) == [(i, "available") for i in ids[2:]]


def test_a_negative_max_jobs_is_refused_and_changes_nothing(conn):
    job_id, _ = running(conn)
    conn.execute("SELECT skiplock.register_worker(gen_random_uuid(), 'h', 1, '{q}', 1, %s)", [at(-3600)])
    with pytest.raises(psycopg.errors.InvalidRowCountInLimitClause):
        reap(conn, at(31), max_jobs=-1)
    assert where(conn, job_id) == ("job", "running")
    assert conn.execute("SELECT count(*) FROM skiplock.worker").fetchone() == (1,)


def test_a_job_locked_by_another_transaction_is_skipped_not_waited_for(conn, dsn):
    held, token = running(conn)
    free, _ = running(conn)
    with psycopg.connect(dsn) as holder:
        holder.execute(
            "SELECT * FROM skiplock.heartbeat(ARRAY[%s::bigint], ARRAY[%s::uuid], '1 hour', as_of => %s)",
            [held, token, at(10)],
        )  # the row is locked until holder commits
        conn.execute("SET lock_timeout = '5s'")
        assert reap(conn, at(31)) == [(free, "available")]
        holder.commit()
    assert where(conn, held) == ("job", "running")
    assert reap(conn, at(31)) == []  # the heartbeat committed: its lease now runs to at(3610)


def test_workers_silent_for_longer_than_worker_ttl_are_forgotten(conn):
    def register(seconds_before: float) -> uuid.UUID:
        worker = uuid.uuid4()
        conn.execute(
            "SELECT skiplock.register_worker(%s, 'host', 1, '{q}', 1, %s)",
            [worker, at(1000 - seconds_before)],
        )
        return worker

    old, edge, fresh = register(601), register(600), register(5)
    assert reap(conn, at(1000), worker_ttl="10 minutes") == []
    left = {r[0] for r in conn.execute("SELECT id FROM skiplock.worker")}
    assert left == {edge, fresh}
    assert old not in left
