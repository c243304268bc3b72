"""skiplock.set_progress(job_ids, lease_tokens, progress, messages): report how far jobs are.

The holder of a running job's lease sets its progress (a percentage, 0 to 100) and message (cut
to 1,000 characters; NULL clears it); nothing else about the job changes. A stale or unknown
token, or a job that is not running, is left alone and not returned. A progress outside 0-100,
NULL or NaN anywhere in the batch is refused (22023) before anything is written.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from jobrows import Conn, claim, live, running, where

SET_PROGRESS = "SELECT * FROM skiplock.set_progress(%s::bigint[], %s::uuid[], %s::float8[], %s::text[])"


def set_progress(
    conn: Conn,
    leases: dict[int, uuid.UUID],
    progress: list[float | None],
    messages: list[str | None] | None = None,
) -> list[int]:
    ids = list(leases)
    return sorted(
        r[0] for r in conn.execute(SET_PROGRESS, [ids, [leases[i] for i in ids], progress, messages])
    )


def test_the_holder_sets_progress_and_message_and_nothing_else(conn):
    job_id, token = running(conn)
    before = live(conn, job_id)
    assert (before["progress"], before["progress_message"]) == (None, None)
    assert set_progress(conn, {job_id: token}, [37.5], ["copying"]) == [job_id]
    row = live(conn, job_id)
    assert (row["progress"], row["progress_message"]) == (37.5, "copying")
    for column in ("state", "attempt", "lease_token", "lease_expires_at", "worker_id", "errors", "run_at"):
        assert row[column] == before[column], column


def test_a_later_report_replaces_the_earlier_one_and_no_message_clears_it(conn):
    job_id, token = running(conn)
    set_progress(conn, {job_id: token}, [10], ["start"])
    assert set_progress(conn, {job_id: token}, [100]) == [job_id]
    assert (live(conn, job_id)["progress"], live(conn, job_id)["progress_message"]) == (100, None)


def test_a_stale_token_reports_nothing(conn):
    job_id, token = running(conn)
    set_progress(conn, {job_id: token}, [10], ["mine"])
    assert set_progress(conn, {job_id: uuid.uuid4()}, [90], ["not mine"]) == []
    assert (live(conn, job_id)["progress"], live(conn, job_id)["progress_message"]) == (10, "mine")


def test_the_token_of_an_earlier_attempt_cannot_report_on_the_attempt_running_now(conn):
    job_id, old = running(conn)
    conn.execute("SELECT skiplock.release(ARRAY[%s::bigint], ARRAY[%s::uuid])", [job_id, old])
    _, new = claim(conn)
    assert set_progress(conn, {job_id: old}, [50]) == []
    assert live(conn, job_id)["progress"] is None
    assert set_progress(conn, {job_id: new}, [50]) == [job_id]


def test_a_job_that_is_not_running_is_left_alone(conn):
    job_id, token = running(conn)
    conn.execute("SELECT skiplock.fail(%s, %s, 'boom', retry_in => '1 hour')", [job_id, token])
    assert set_progress(conn, {job_id: token}, [50], ["late"]) == []
    assert where(conn, job_id) == ("job", "retryable")
    assert live(conn, job_id)["progress_message"] is None


def test_a_batch_reports_exactly_the_jobs_whose_token_matches(conn):
    jobs = [running(conn) for _ in range(3)]
    leases = dict(jobs)
    lost = jobs[1][0]
    leases[lost] = uuid.uuid4()
    assert set_progress(conn, leases, [10, 20, 30], ["a", "b", "c"]) == sorted(
        i for i, _ in jobs if i != lost
    )
    assert [(live(conn, i)["progress"], live(conn, i)["progress_message"]) for i, _ in jobs] == [
        (10, "a"),
        (None, None),
        (30, "c"),
    ]


def test_a_long_message_is_cut_to_1000_characters(conn):
    job_id, token = running(conn)
    set_progress(conn, {job_id: token}, [1], ["m" * 5000])
    assert live(conn, job_id)["progress_message"] == "m" * 1000


@pytest.mark.parametrize("bad", [-0.1, 100.5, None, float("nan")])
def test_a_progress_outside_0_to_100_is_refused_for_the_whole_batch(conn, bad):
    good, t1 = running(conn)
    other, t2 = running(conn)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="progress must be between 0 and 100"):
        set_progress(conn, {good: t1, other: t2}, [50.0, bad])
    assert (live(conn, good)["progress"], live(conn, other)["progress"]) == (None, None)


def test_the_bounds_themselves_are_accepted(conn):
    job_id, token = running(conn)
    assert set_progress(conn, {job_id: token}, [0]) == [job_id]
    assert set_progress(conn, {job_id: token}, [100]) == [job_id]
