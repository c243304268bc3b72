"""History partitions: created ahead, the default partition as a safety net, retention by DROP."""

from __future__ import annotations

import psycopg
import pytest


def finish_one_job_at(conn, as_of: str) -> int:
    (job_id,) = conn.execute(
        "SELECT id FROM skiplock.enqueue('q', 't', as_of => %s::timestamptz)", [as_of]
    ).fetchone()
    conn.execute(
        "SELECT skiplock.complete(array_agg(id), array_agg(lease_token), NULL, %s::timestamptz)"
        " FROM skiplock.claim('{q}', gen_random_uuid(), 1, as_of => %s::timestamptz)",
        [as_of, as_of],
    )
    return int(job_id)


def partitions(conn) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'skiplock.job_history'::regclass ORDER BY 1"
        )
    ]


def test_a_job_finished_on_a_day_without_partition_is_kept_and_moved_in_later(conn):
    job_id = finish_one_job_at(conn, "2031-03-04 12:00+00")
    assert conn.execute(
        "SELECT state::text FROM skiplock.job_history_default WHERE id = %s", [job_id]
    ).fetchone() == ("completed",)
    created = [r[0] for r in conn.execute("SELECT skiplock.ensure_partitions(1, '2031-03-04 00:30+00')")]
    assert created == ["job_history_p20310304", "job_history_p20310305"]
    assert conn.execute("SELECT count(*) FROM skiplock.job_history_default").fetchone() == (0,)
    assert conn.execute(
        "SELECT count(*) FROM skiplock.job_history_p20310304 WHERE id = %s", [job_id]
    ).fetchone() == (1,)
    assert conn.execute("SELECT state::text FROM skiplock.jobs WHERE id = %s", [job_id]).fetchone() == (
        "completed",
    )
    # Running it again is a no-op.
    assert conn.execute(
        "SELECT count(*) FROM skiplock.ensure_partitions(1, '2031-03-04 00:30+00')"
    ).fetchone() == (0,)


def test_retention_drops_whole_old_days_only(conn):
    conn.execute("SELECT skiplock.ensure_partitions(3, '2031-01-01 00:00+00')")
    old = finish_one_job_at(conn, "2031-01-01 08:00+00")
    recent = finish_one_job_at(conn, "2031-01-03 08:00+00")
    dropped = [r[0] for r in conn.execute("SELECT skiplock.drop_partitions('1 day', '2031-01-03 12:00+00')")]
    assert "job_history_p20310101" in dropped
    assert all(name < "job_history_p20310102" for name in dropped)  # only days that ended a day ago
    assert "job_history_p20310102" in partitions(conn)  # ended less than a day before as_of: kept
    assert conn.execute("SELECT count(*) FROM skiplock.jobs WHERE id = %s", [old]).fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM skiplock.jobs WHERE id = %s", [recent]).fetchone() == (1,)


def test_negative_retention_is_rejected(conn):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="retention must not be negative"):
        conn.execute("SELECT skiplock.drop_partitions('-1 day')")
