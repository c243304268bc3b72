"""skiplock.pause_queue(queue, until, as_of) and skiplock.resume_queue(queue).

pause_queue stops claims from a queue from ``as_of`` on, until ``until`` (NULL: until resumed).
It creates the queue's row when there is none, and pausing again replaces the pause. It returns
the queue's row. Jobs already running are not touched: their workers finish them.

resume_queue ends any pause at once, wakes the queue's workers on ``skiplock_insert`` and returns
the row (creating it when there is none). Neither changes the queue's limits. Both refuse a name
that is not a valid queue name (22023), writing nothing.
"""

from __future__ import annotations

import psycopg
import pytest
from jobrows import Conn, at, enqueue, listening, running, where
from psycopg.rows import dict_row


def pause(conn: Conn, queue: str = "q", until=None, as_of=None) -> dict:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM skiplock.pause_queue(%s, until => %s, as_of => %s)", [queue, until, as_of or at(0)]
        ).fetchone()


def resume(conn: Conn, queue: str = "q") -> dict:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM skiplock.resume_queue(%s)", [queue]).fetchone()


def claimable(conn: Conn, as_of) -> int:
    return conn.execute(
        "SELECT count(*) FROM skiplock.claim('{q}', gen_random_uuid(), 10, as_of => %s)", [as_of]
    ).fetchone()[0]


def test_a_pause_creates_the_queue_row_and_returns_it(conn):
    row = pause(conn, until=at(60), as_of=at(5))
    assert (row["name"], row["paused_at"], row["paused_until"], row["created_at"]) == (
        "q",
        at(5),
        at(60),
        at(5),
    )
    assert conn.execute("SELECT count(*) FROM skiplock.queue").fetchone() == (1,)


def test_an_open_ended_pause_holds_until_resumed(conn, dsn):
    enqueue(conn)
    pause(conn, as_of=at(0))
    assert claimable(conn, at(10**6)) == 0
    with listening(conn, dsn, "skiplock_insert") as woken:
        row = resume(conn)
    assert woken == ["q"]
    assert (row["paused_at"], row["paused_until"]) == (None, None)
    assert claimable(conn, at(1)) == 1


def test_a_timed_pause_ends_by_itself(conn):
    enqueue(conn)
    pause(conn, until=at(60), as_of=at(0))
    assert claimable(conn, at(59)) == 0
    assert claimable(conn, at(60)) == 1  # the pause lasts until `until`, not through it


def test_pausing_again_replaces_the_pause(conn):
    first = pause(conn, until=at(60), as_of=at(0))
    second = pause(conn, until=None, as_of=at(30))
    assert (second["paused_at"], second["paused_until"]) == (at(30), None)
    assert second["created_at"] == first["created_at"]


def test_running_jobs_are_not_touched(conn):
    job_id, token = running(conn)
    pause(conn)
    assert where(conn, job_id) == ("job", "running")
    assert conn.execute(
        "SELECT * FROM skiplock.complete(ARRAY[%s::bigint], ARRAY[%s::uuid])", [job_id, token]
    ).fetchall() == [(job_id,)]


def test_pause_and_resume_keep_the_queue_limits(conn):
    conn.execute("SELECT skiplock.set_queue_limits('q', concurrency => 3, rate => 5, burst => 10)")
    pause(conn)
    resume(conn)
    assert conn.execute(
        "SELECT concurrency_limit, rate_limit, rate_burst FROM skiplock.queue WHERE name = 'q'"
    ).fetchone() == (3, 5.0, 10)


def test_resuming_a_queue_never_paused_creates_its_row(conn):
    row = resume(conn, "fresh")
    assert (row["name"], row["paused_at"]) == ("fresh", None)


@pytest.mark.parametrize("call", ["pause_queue", "resume_queue"])
@pytest.mark.parametrize("name", ["", "bad name", "x" * 64, None])
def test_a_bad_queue_name_is_refused_and_nothing_written(conn, call, name):
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute(f"SELECT * FROM skiplock.{call}(%s)", [name])
    assert conn.execute("SELECT count(*) FROM skiplock.queue").fetchone() == (0,)
