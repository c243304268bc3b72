"""skiplock.release(job_ids, lease_tokens): give running jobs back without spending an attempt.

The holder of a running job's lease returns it to its queue as ``available``: the lease and the
worker are cleared and the attempt count goes back by the one its claim added, so a job released
by a worker shutting down does not use up its attempts. A job whose cancel was requested ends
``cancelled`` in history instead. A stale or unknown token, or a job that is not running, is left
alone and not returned. Returns the ids released or cancelled; each queue that got a job back is
woken once on ``skiplock_insert``. Refuses nothing with an error. It takes no ``as_of``.
"""

from __future__ import annotations

import uuid

from jobrows import Conn, claim, finished, listening, live, running, where

RELEASE = "SELECT * FROM skiplock.release(%s::bigint[], %s::uuid[])"


def release(conn: Conn, leases: dict[int, uuid.UUID]) -> list[int]:
    ids = list(leases)
    return sorted(r[0] for r in conn.execute(RELEASE, [ids, [leases[i] for i in ids]]))


def test_a_released_job_is_available_again_with_its_attempt_given_back(conn):
    job_id, token = running(conn)
    before = live(conn, job_id)
    assert release(conn, {job_id: token}) == [job_id]
    row = live(conn, job_id)
    assert row["state"] == "available"
    assert row["attempt"] == 0
    assert (row["lease_token"], row["lease_expires_at"], row["worker_id"]) == (None, None, None)
    assert (row["run_at"], row["errors"], row["attempted_at"]) == (
        before["run_at"],
        [],
        before["attempted_at"],
    )
    # and it can be claimed again at once, as attempt 1 once more
    _, again = claim(conn)
    assert again != token
    assert live(conn, job_id)["attempt"] == 1


def test_the_attempt_count_goes_back_by_one_only(conn):
    job_id, token = running(conn)
    conn.execute("SELECT skiplock.fail(%s, %s, 'boom', retry_in => '0 s')", [job_id, token])
    _, token = claim(conn)
    assert live(conn, job_id)["attempt"] == 2
    assert release(conn, {job_id: token}) == [job_id]
    assert live(conn, job_id)["attempt"] == 1


def test_a_stale_token_releases_nothing(conn):
    job_id, token = running(conn)
    assert release(conn, {job_id: uuid.uuid4()}) == []
    row = live(conn, job_id)
    assert (row["state"], row["lease_token"], row["attempt"]) == ("running", token, 1)


def test_the_token_of_an_earlier_attempt_cannot_release_the_attempt_running_now(conn):
    job_id, old = running(conn)
    assert release(conn, {job_id: old}) == [job_id]
    _, new = claim(conn)
    assert release(conn, {job_id: old}) == []
    row = live(conn, job_id)
    assert (row["state"], row["lease_token"], row["attempt"]) == ("running", new, 1)


def test_a_job_that_is_not_running_is_left_alone(conn):
    done, t1 = running(conn)
    conn.execute("SELECT skiplock.complete(ARRAY[%s::bigint], ARRAY[%s::uuid])", [done, t1])
    retryable, t2 = running(conn)
    conn.execute("SELECT skiplock.fail(%s, %s, 'boom', retry_in => '1 hour')", [retryable, t2])
    assert release(conn, {done: t1, retryable: t2}) == []
    assert where(conn, done) == ("history", "completed")
    row = live(conn, retryable)
    assert (row["state"], row["attempt"]) == ("retryable", 1)


def test_a_job_whose_cancel_was_requested_ends_cancelled(conn, dsn):
    job_id, token = running(conn)
    conn.execute("SELECT * FROM skiplock.cancel(ARRAY[%s::bigint])", [job_id])
    with listening(conn, dsn, "skiplock_insert") as woken:
        assert release(conn, {job_id: token}) == [job_id]
    assert woken == []  # nothing came back to the queue
    assert live(conn, job_id) is None
    row = finished(conn, job_id)
    assert (row["state"], row["attempt"]) == ("cancelled", 1)


def test_a_batch_releases_exactly_the_jobs_whose_token_matches_and_wakes_each_queue_once(conn, dsn):
    a1, ta1 = running(conn, queue="a")
    a2, ta2 = running(conn, queue="a")
    b, tb = running(conn, queue="b")
    stale, _ = running(conn, queue="c")
    with listening(conn, dsn, "skiplock_insert") as woken:
        assert release(conn, {b: tb, a2: ta2, stale: uuid.uuid4(), a1: ta1}) == sorted([a1, a2, b])
    assert sorted(woken) == ["a", "b"]
    assert where(conn, stale) == ("job", "running")


def test_null_and_empty_inputs_release_nothing(conn):
    job_id, _ = running(conn)
    assert conn.execute("SELECT count(*) FROM skiplock.release('{}', '{}')").fetchone() == (0,)
    assert conn.execute(
        "SELECT count(*) FROM skiplock.release(ARRAY[%s::bigint], NULL)", [job_id]
    ).fetchone() == (0,)
    assert where(conn, job_id) == ("job", "running")
