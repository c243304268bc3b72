from __future__ import annotations

from skiplock.models import JobState


def test_job_state_matches_pg_enum(conn):
    labels = [
        r[0]
        for r in conn.execute(
            "SELECT enumlabel FROM pg_enum WHERE enumtypid = 'skiplock.job_state'::regtype ORDER BY enumsortorder"
        )
    ]
    assert labels == [s.value for s in JobState]


def test_enqueue_from_psql_returns_available_job(conn):
    row = conn.execute(
        """SELECT id, queue, task, args, state FROM skiplock.enqueue('emails', 'send_welcome', '{"user_id": 7}')"""
    ).fetchone()
    assert row[1:] == ("emails", "send_welcome", {"user_id": 7}, "available")
