"""skiplock.cancel(job_ids, as_of): stop jobs, now or after their current attempt.

A job that is not running (scheduled, available, retryable, waiting) moves to history as
``cancelled`` at ``as_of`` and never runs. A running job is only marked ``cancel_requested``: its
attempt goes on, the worker holding it is told on ``skiplock_cancel`` (payload: the job id), and
whatever ends that attempt ends the job as cancelled (see the fail, release and reap contracts).
Takes no lease token: cancelling is the operator's act, not the worker's.

Returns each known id with its state after the call: ``cancelled``, ``running`` (requested), or
the state of a job that had already finished, which is left as it was. Unknown ids are left out.
Refuses nothing with an error.
"""

from __future__ import annotations

from jobrows import Conn, at, enqueue, finished, listening, live, running, where

CANCEL = "SELECT job_id, state::text FROM skiplock.cancel(%s::bigint[], as_of => %s)"


def cancel(conn: Conn, ids: list[int], as_of=None) -> list[tuple[int, str]]:
    return sorted(conn.execute(CANCEL, [ids, as_of or at(9)]).fetchall())


def test_jobs_not_yet_running_move_to_history_as_cancelled_at_as_of(conn):
    available = enqueue(conn)
    scheduled = enqueue(conn, run_at=at(3600))
    retryable, token = running(conn, queue="r")
    conn.execute("SELECT skiplock.fail(%s, %s, 'boom', retry_in => '1 hour')", [retryable, token])
    before = {i: live(conn, i) for i in (available, scheduled, retryable)}
    assert cancel(conn, [available, scheduled, retryable], as_of=at(9)) == [
        (available, "cancelled"),
        (scheduled, "cancelled"),
        (retryable, "cancelled"),
    ]
    for job_id, was in before.items():
        assert live(conn, job_id) is None
        row = finished(conn, job_id)
        assert (row["state"], row["finished_at"], row["result"]) == ("cancelled", at(9), None)
        for column in ("queue", "task", "args", "attempt", "max_attempts", "run_at", "created_at", "errors"):
            assert row[column] == was[column], (job_id, column)
    assert finished(conn, retryable)["attempt"] == 1


def test_a_cancelled_job_is_never_claimed(conn):
    job_id = enqueue(conn)
    cancel(conn, [job_id])
    assert conn.execute("SELECT count(*) FROM skiplock.claim('{q}', gen_random_uuid(), 10)").fetchone() == (
        0,
    )
    assert where(conn, job_id) == ("history", "cancelled")


def test_a_running_job_is_marked_and_its_worker_told(conn, dsn):
    job_id, token = running(conn)
    with listening(conn, dsn, "skiplock_cancel") as told:
        assert cancel(conn, [job_id]) == [(job_id, "running")]
    assert told == [str(job_id)]
    row = live(conn, job_id)
    assert (row["state"], row["cancel_requested"], row["lease_token"], row["attempt"]) == (
        "running",
        True,
        token,
        1,
    )
    # the attempt can still finish as it would have: completing it is a completion
    assert conn.execute(
        "SELECT * FROM skiplock.complete(ARRAY[%s::bigint], ARRAY[%s::uuid])", [job_id, token]
    ).fetchall() == [(job_id,)]
    assert where(conn, job_id) == ("history", "completed")


def test_cancelling_a_running_job_again_tells_its_worker_again(conn, dsn):
    job_id, _ = running(conn)
    cancel(conn, [job_id])
    with listening(conn, dsn, "skiplock_cancel") as told:
        assert cancel(conn, [job_id]) == [(job_id, "running")]
    assert told == [str(job_id)]


def test_finished_jobs_are_reported_as_they_are_and_left_alone(conn):
    done, token = running(conn)
    conn.execute(
        "SELECT skiplock.complete(ARRAY[%s::bigint], ARRAY[%s::uuid], as_of => %s)", [done, token, at(1)]
    )
    dead, token = running(conn, max_attempts=1)
    conn.execute("SELECT skiplock.fail(%s, %s, 'boom', as_of => %s)", [dead, token, at(2)])
    gone = enqueue(conn)
    cancel(conn, [gone], as_of=at(3))
    assert cancel(conn, [done, dead, gone], as_of=at(9)) == [
        (done, "completed"),
        (dead, "failed"),
        (gone, "cancelled"),
    ]
    assert [finished(conn, i)["finished_at"] for i in (done, dead, gone)] == [at(1), at(2), at(3)]


def test_unknown_ids_are_left_out(conn):
    job_id = enqueue(conn)
    assert cancel(conn, [10**12, job_id]) == [(job_id, "cancelled")]
    assert cancel(conn, []) == []


def test_a_waiting_child_is_cancelled_like_any_job_not_yet_running(conn):
    parent = enqueue(conn)
    child = conn.execute(
        "SELECT id FROM skiplock.enqueue('q', 'child', depends_on => %s::jsonb)", [f"[{parent}]"]
    ).fetchone()[0]
    assert where(conn, child) == ("job", "waiting")
    assert cancel(conn, [child]) == [(child, "cancelled")]
    assert where(conn, parent) == ("job", "available")


def test_a_batch_mixes_all_outcomes(conn):
    waiting_one = enqueue(conn)
    busy, _ = running(conn, queue="busy")
    assert cancel(conn, [busy, 10**12, waiting_one]) == sorted(
        [(busy, "running"), (waiting_one, "cancelled")]
    )
