"""skiplock.retry_failed (redrive by filter) and skiplock.purge (delete for good)."""

from __future__ import annotations

import psycopg
import pytest


def fail_jobs(conn: psycopg.Connection, queue: str, task: str, n: int) -> list[int]:
    """Enqueue n jobs and fail each for good (max_attempts 1)."""
    ids = [
        r[0]
        for r in conn.execute(
            "SELECT skiplock.enqueue_many(%s, %s, max_attempts => '{1}')", [[queue], [task] * n]
        )
    ]
    for job_id, token in conn.execute(
        "SELECT id, lease_token FROM skiplock.claim(%s, gen_random_uuid(), %s)", [[queue], n]
    ).fetchall():
        assert conn.execute("SELECT skiplock.fail(%s, %s, 'boom')", [job_id, token]).fetchone() == ("failed",)
    return ids


def test_redrive_by_queue_task_and_time_brings_only_matching_failed_jobs_back(conn):
    a = fail_jobs(conn, "emails", "send", 3)
    b = fail_jobs(conn, "emails", "bounce", 2)
    c = fail_jobs(conn, "images", "resize", 2)
    redriven = [r[0] for r in conn.execute("SELECT skiplock.retry_failed(queue => 'emails', task => 'send')")]
    assert sorted(redriven) == sorted(a)
    states = dict(conn.execute("SELECT id, state::text FROM skiplock.jobs"))
    assert {states[i] for i in a} == {"available"}
    assert {states[i] for i in b + c} == {"failed"}
    assert conn.execute(
        "SELECT count(*) FROM skiplock.retry_failed(since => now() + interval '1 hour')"
    ).fetchone() == (0,)
    assert (
        len(conn.execute("SELECT skiplock.retry_failed(max_jobs => 3)").fetchall()) == 3
    )  # oldest first, capped
    # the error history is kept, the attempt count starts over
    attempt, errors = conn.execute(
        "SELECT attempt, jsonb_array_length(errors) FROM skiplock.job WHERE id = %s", [a[0]]
    ).fetchone()
    assert (attempt, errors) == (0, 1)


def test_purge_deletes_the_dead_letter_set_by_filter_and_nothing_else(conn):
    fail_jobs(conn, "emails", "send", 3)
    keep = fail_jobs(conn, "images", "resize", 2)
    conn.execute("SELECT skiplock.enqueue('emails', 'send')")  # live: never purged
    assert conn.execute("SELECT skiplock.purge(queue => 'emails')").fetchone() == (3,)
    assert conn.execute(
        "SELECT skiplock.purge(queue => 'images', before => now() - interval '1 hour')"
    ).fetchone() == (0,)
    assert sorted(r[0] for r in conn.execute("SELECT id FROM skiplock.job_history")) == sorted(keep)
    assert conn.execute("SELECT count(*) FROM skiplock.job").fetchone() == (1,)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("skiplock.purge(states => '{running}')", "states must be finished states"),
        ("skiplock.purge(max_jobs => 0)", "max_jobs must be between 1 and 1000000"),
        ("skiplock.retry_failed(max_jobs => 0)", "max_jobs must be between 1 and 10000"),
    ],
)
def test_bad_arguments_are_rejected(conn, call, message):
    fail_jobs(conn, "q", "t", 1)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        conn.execute(f"SELECT {call}")
    assert conn.execute("SELECT count(*) FROM skiplock.job_history WHERE state = 'failed'").fetchone() == (1,)
