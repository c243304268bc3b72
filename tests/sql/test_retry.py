"""skiplock.retry(job_ids, as_of): run jobs again now.

* ``scheduled`` and ``retryable`` jobs become ``available`` with ``run_at = as_of``; their
  attempt count and errors stay as they are.
* ``failed`` and ``cancelled`` jobs come back from history as ``available`` at ``as_of`` with
  a fresh set of attempts (attempt 0), their errors kept, and leave history; a job whose
  dedupe key another live job holds now stays in history.
* Anything else (available, running, waiting, completed, unknown) is ignored.

Takes no lease token (an operator's act). Returns the ids it brought back or made due, and wakes
each of their queues once on ``skiplock_insert``. Refuses nothing with an error.
"""

from __future__ import annotations

import pytest
from jobrows import Conn, at, claim, enqueue, finished, listening, live, running, where

RETRY = "SELECT * FROM skiplock.retry(%s::bigint[], as_of => %s)"


def retry(conn: Conn, ids: list[int], as_of=None) -> list[int]:
    return sorted(r[0] for r in conn.execute(RETRY, [ids, as_of or at(50)]))


def failed_for_good(conn: Conn, **options) -> int:
    job_id, token = running(conn, max_attempts=1, **options)
    assert conn.execute(
        "SELECT skiplock.fail(%s, %s, 'boom', as_of => %s)", [job_id, token, at(1)]
    ).fetchone() == ("failed",)
    return job_id


def test_a_failed_job_comes_back_from_history_with_fresh_attempts_and_its_errors(conn):
    job_id = failed_for_good(conn, dedupe_key="k")
    was = finished(conn, job_id)
    assert retry(conn, [job_id], as_of=at(50)) == [job_id]
    assert finished(conn, job_id) is None
    row = live(conn, job_id)
    assert (row["state"], row["attempt"], row["run_at"]) == ("available", 0, at(50))
    assert (row["lease_token"], row["worker_id"], row["attempted_at"], row["cancel_requested"]) == (
        None,
        None,
        None,
        False,
    )
    for column in ("queue", "task", "args", "priority", "max_attempts", "created_at", "dedupe_key", "errors"):
        assert row[column] == was[column], column
    assert len(row["errors"]) == 1
    _, _ = claim(conn, as_of=at(51))
    assert live(conn, job_id)["attempt"] == 1  # a whole attempt budget again (max_attempts 1)


def test_a_cancelled_job_comes_back_too(conn):
    job_id = enqueue(conn)
    conn.execute("SELECT * FROM skiplock.cancel(ARRAY[%s::bigint])", [job_id])
    assert retry(conn, [job_id]) == [job_id]
    assert where(conn, job_id) == ("job", "available")


def test_scheduled_and_retryable_jobs_become_due_at_as_of_keeping_their_attempts(conn):
    scheduled = enqueue(conn, run_at=at(3600))
    retryable, token = running(conn, queue="r")
    conn.execute(
        "SELECT skiplock.fail(%s, %s, 'boom', retry_in => '1 hour', as_of => %s)", [retryable, token, at(1)]
    )
    assert retry(conn, [scheduled, retryable], as_of=at(50)) == sorted([scheduled, retryable])
    s, r = live(conn, scheduled), live(conn, retryable)
    assert (s["state"], s["run_at"], s["attempt"]) == ("available", at(50), 0)
    assert (r["state"], r["run_at"], r["attempt"], len(r["errors"])) == ("available", at(50), 1, 1)


def test_available_running_waiting_completed_and_unknown_jobs_are_ignored(conn):
    available = enqueue(conn, queue="a")
    busy, token = running(conn, queue="b")
    done, t2 = running(conn, queue="c")
    conn.execute(
        "SELECT skiplock.complete(ARRAY[%s::bigint], ARRAY[%s::uuid], as_of => %s)", [done, t2, at(2)]
    )
    waiting = conn.execute(
        "SELECT id FROM skiplock.enqueue('a', 'child', depends_on => %s::jsonb)", [f"[{available}]"]
    ).fetchone()[0]
    before = {i: live(conn, i) for i in (available, busy, waiting)}
    assert retry(conn, [available, busy, done, waiting, 10**12], as_of=at(50)) == []
    assert {i: live(conn, i) for i in before} == before
    assert live(conn, busy)["lease_token"] == token
    assert finished(conn, done)["finished_at"] == at(2)


def test_a_failed_job_whose_dedupe_key_is_taken_again_stays_in_history(conn):
    job_id = failed_for_good(conn, dedupe_key="k")
    holder = enqueue(conn, dedupe_key="k")
    assert retry(conn, [job_id]) == []
    assert where(conn, job_id) == ("history", "failed")
    assert where(conn, holder) == ("job", "available")


def test_each_queue_that_got_jobs_is_woken_once(conn, dsn):
    a1 = failed_for_good(conn, queue="a")
    a2 = enqueue(conn, queue="a", run_at=at(3600))
    b = failed_for_good(conn, queue="b")
    with listening(conn, dsn, "skiplock_insert") as woken:
        assert retry(conn, [a1, a2, b]) == sorted([a1, a2, b])
    assert sorted(woken) == ["a", "b"]


def test_retrying_twice_brings_a_job_back_once(conn):
    job_id = failed_for_good(conn)
    assert retry(conn, [job_id, job_id]) == [job_id]
    assert retry(conn, [job_id]) == []  # available now: nothing to do
    assert where(conn, job_id) == ("job", "available")


@pytest.mark.xfail(
    strict=True,
    reason="job_history has no retry_policy column: a job's own retry policy is lost when it fails"
    " for good, so retry() brings it back with the default backoff",
)
def test_a_job_brought_back_keeps_its_own_retry_policy(conn):
    job_id, token = running(conn, max_attempts=3, retry_policy={"kind": "fixed", "delay": 7})
    conn.execute("SELECT skiplock.fail(%s, %s, 'boom', retryable => false)", [job_id, token])
    assert retry(conn, [job_id], as_of=at(50)) == [job_id]
    _, token = claim(conn, as_of=at(51))
    conn.execute("SELECT skiplock.fail(%s, %s, 'again', as_of => %s)", [job_id, token, at(60)])
    assert live(conn, job_id)["run_at"] == at(67)
