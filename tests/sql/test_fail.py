"""skiplock.fail(job_id, lease_token, error, error_type, traceback, retry_in, retryable, as_of).

Only the holder of a running job's lease can fail it; for anyone else (a stale or unknown token,
a job not running, an unknown id) fail returns NULL and changes nothing. The holder's failure is
appended to the job's errors, and the job becomes:

* ``retryable`` (still live, lease dropped, attempt count kept) when the failure is retryable,
  attempts are left and no cancel was requested. It runs again at ``as_of`` plus ``retry_in``,
  else the job's own retry policy, else ``skiplock.backoff(attempt)``;
* ``failed`` in history, at ``as_of``, when attempts are used up or ``retryable`` is false;
* ``cancelled`` in history when a cancel was requested.

It returns the new state. A negative ``retry_in`` is refused (22023) and changes nothing.
A job that ends tells its queue on ``skiplock_done``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import psycopg
import pytest
from jobrows import Conn, at, claim, finished, listening, live, running, where

FAIL = (
    "SELECT skiplock.fail(%(id)s, %(token)s, %(error)s, error_type => %(type)s, traceback => %(tb)s,"
    " retry_in => %(retry_in)s, retryable => %(retryable)s, as_of => %(as_of)s)"
)


def fail(
    conn: Conn,
    job_id: int,
    token: uuid.UUID,
    error: str = "boom",
    *,
    error_type: str | None = "ValueError",
    traceback: str | None = None,
    retry_in: timedelta | None = timedelta(minutes=1),
    retryable: bool = True,
    as_of=None,
) -> str | None:
    params = {
        "id": job_id,
        "token": token,
        "error": error,
        "type": error_type,
        "tb": traceback,
        "retry_in": retry_in,
        "retryable": retryable,
        "as_of": as_of or at(5),
    }
    return conn.execute(FAIL, params).fetchone()[0]


def test_a_retryable_failure_with_attempts_left_waits_for_retry_in(conn):
    job_id, token = running(conn, max_attempts=3)
    before = live(conn, job_id)
    assert fail(
        conn, job_id, token, "no route", traceback="Traceback ...", retry_in=timedelta(seconds=90)
    ) == ("retryable")
    row = live(conn, job_id)
    assert row["state"] == "retryable"
    assert row["run_at"] == at(5 + 90)
    assert (row["lease_token"], row["lease_expires_at"]) == (None, None)
    assert row["attempt"] == 1  # the attempt was spent when claimed; fail does not count again
    assert row["worker_id"] == before["worker_id"]  # who ran it last stays visible
    [entry] = row["errors"]
    assert datetime.fromisoformat(entry.pop("at")) == at(5)
    assert [entry] == [
        {
            "attempt": 1,
            "worker_id": str(before["worker_id"]),
            "type": "ValueError",
            "error": "no route",
            "traceback": "Traceback ...",
        }
    ]
    assert finished(conn, job_id) is None


def test_a_stale_token_fails_nothing(conn):
    job_id, token = running(conn)
    assert fail(conn, job_id, uuid.uuid4()) is None
    row = live(conn, job_id)
    assert (row["state"], row["lease_token"], row["errors"]) == ("running", token, [])


def test_the_token_of_an_earlier_attempt_cannot_fail_the_attempt_running_now(conn):
    job_id, old = running(conn)
    assert fail(conn, job_id, old, retry_in=timedelta(0), as_of=at(1)) == "retryable"
    _, new = claim(conn, as_of=at(2))
    assert fail(conn, job_id, old, retryable=False, as_of=at(3)) is None
    row = live(conn, job_id)
    assert (row["state"], row["lease_token"], row["attempt"], len(row["errors"])) == ("running", new, 2, 1)


def test_a_job_that_is_not_running_is_left_alone(conn):
    job_id, token = running(conn)
    assert fail(conn, job_id, token, retry_in=timedelta(hours=1)) == "retryable"
    assert fail(conn, job_id, token, retryable=False) is None  # retryable now: the old lease is gone
    assert where(conn, job_id) == ("job", "retryable")
    assert len(live(conn, job_id)["errors"]) == 1
    assert fail(conn, 10**12, uuid.uuid4()) is None


def test_the_last_attempt_fails_for_good_at_as_of(conn, dsn):
    job_id, token = running(conn, max_attempts=2)
    assert fail(conn, job_id, token, retry_in=timedelta(0), as_of=at(1)) == "retryable"
    _, token = claim(conn, as_of=at(2))
    with listening(conn, dsn, "skiplock_done") as told:
        assert fail(conn, job_id, token, "again", as_of=at(3)) == "failed"
    assert told == ["q"]
    assert live(conn, job_id) is None
    row = finished(conn, job_id)
    assert (row["state"], row["attempt"], row["finished_at"]) == ("failed", 2, at(3))
    assert [e["error"] for e in row["errors"]] == ["boom", "again"]
    assert [e["attempt"] for e in row["errors"]] == [1, 2]


def test_a_non_retryable_failure_ends_the_job_with_attempts_left(conn):
    job_id, token = running(conn, max_attempts=10)
    assert fail(conn, job_id, token, retryable=False, as_of=at(4)) == "failed"
    row = finished(conn, job_id)
    assert (row["state"], row["attempt"], row["finished_at"]) == ("failed", 1, at(4))


def test_a_job_whose_cancel_was_requested_ends_cancelled(conn):
    job_id, token = running(conn, max_attempts=10)
    assert conn.execute("SELECT * FROM skiplock.cancel(ARRAY[%s::bigint])", [job_id]).fetchall() == [
        (job_id, "running")
    ]
    assert fail(conn, job_id, token, as_of=at(6)) == "cancelled"
    row = finished(conn, job_id)
    assert (row["state"], row["finished_at"], row["errors"][-1]["error"]) == ("cancelled", at(6), "boom")


def test_the_retry_delay_is_retry_in_else_the_jobs_policy_else_the_default_backoff(conn):
    with_policy, t1 = running(conn, queue="a", retry_policy={"kind": "fixed", "delay": 7})
    assert fail(conn, with_policy, t1, retry_in=None, as_of=at(10)) == "retryable"
    assert live(conn, with_policy)["run_at"] == at(17)

    overridden, t2 = running(conn, queue="b", retry_policy={"kind": "fixed", "delay": 7})
    assert fail(conn, overridden, t2, retry_in=timedelta(seconds=30), as_of=at(10)) == "retryable"
    assert live(conn, overridden)["run_at"] == at(40)

    default, t3 = running(conn, queue="c")
    assert fail(conn, default, t3, retry_in=None, as_of=at(10)) == "retryable"
    delay = (live(conn, default)["run_at"] - at(10)).total_seconds()
    assert 2 * 0.75 <= delay <= 2 * 1.25  # backoff(1): 2 s, give or take a quarter


def test_a_negative_retry_in_is_refused_and_changes_nothing(conn):
    job_id, token = running(conn)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="retry_in must not be negative"):
        fail(conn, job_id, token, retry_in=timedelta(seconds=-1))
    row = live(conn, job_id)
    assert (row["state"], row["lease_token"], row["errors"]) == ("running", token, [])


def test_long_texts_are_cut_to_their_limits(conn):
    job_id, token = running(conn)
    fail(conn, job_id, token, "e" * 5000, error_type="T" * 300, traceback="a" * 10 + "b" * 16384)
    entry = live(conn, job_id)["errors"][-1]
    assert (len(entry["error"]), len(entry["type"]), entry["traceback"]) == (4096, 200, "b" * 16384)


def test_error_type_and_traceback_are_optional(conn):
    job_id, token = running(conn)
    fail(conn, job_id, token, error_type=None)
    entry = live(conn, job_id)["errors"][-1]
    assert set(entry) == {"attempt", "at", "worker_id", "error"}
