"""skiplock.upsert_schedule / fire_schedule: each tick becomes exactly one job, on the database clock."""

from __future__ import annotations

import threading

import psycopg
import pytest

T0 = "2030-01-01 00:00:00+00"
TICKS = [f"2030-01-01 00:0{m}:00+00" for m in range(1, 6)]  # five per-minute ticks


def fire(conn: psycopg.Connection, ticks: list[str], at: str, name: str = "every-minute") -> list[tuple]:
    sql = "SELECT tick, job_id FROM skiplock.fire_schedule(%s, %s::timestamptz[], as_of => %s::timestamptz)"
    return conn.execute(sql, [name, ticks, at]).fetchall()


@pytest.fixture
def schedule(conn: psycopg.Connection) -> None:
    conn.execute(
        "SELECT skiplock.upsert_schedule('every-minute', '* * * * *', 'tick', 'cron', '{\"k\": 1}',"
        " catch_up => '10 minutes', as_of => %s)",
        [T0],
    )


def test_due_ticks_become_jobs_once_and_later_calls_add_nothing(conn, schedule):
    made = fire(conn, TICKS, at="2030-01-01 00:03:30+00")
    assert len(made) == 3  # 00:01..00:03 are due; 00:04 and 00:05 are not yet
    assert fire(conn, TICKS, at="2030-01-01 00:03:30+00") == []
    assert len(fire(conn, TICKS, at="2030-01-01 00:06:00+00")) == 2
    rows = conn.execute("SELECT task, queue, args, run_at FROM skiplock.job ORDER BY run_at").fetchall()
    assert [r[:3] for r in rows] == [("tick", "cron", {"k": 1})] * 5
    assert [r[3].isoformat() for r in rows] == [t.replace(" ", "T").replace("+00", "+00:00") for t in TICKS]


def test_racing_schedulers_enqueue_each_tick_exactly_once(dsn, conn, schedule):
    """Pass: 8 connections firing the same 5 ticks at once make 5 jobs, one per tick."""
    barrier = threading.Barrier(8)
    made: list[tuple] = []
    lock = threading.Lock()

    def scheduler() -> None:
        with psycopg.connect(dsn, autocommit=True) as c:
            barrier.wait()
            got = fire(c, TICKS, at="2030-01-01 00:10:00+00")
            with lock:
                made.extend(got)

    threads = [threading.Thread(target=scheduler) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(made) == 5
    assert conn.execute("SELECT count(*), count(DISTINCT run_at) FROM skiplock.job").fetchone() == (5, 5)


def test_ticks_older_than_catch_up_are_skipped_not_enqueued(conn, schedule):
    made = fire(conn, TICKS, at="2030-01-01 00:13:30+00")  # window: 00:03:30 .. 00:13:30
    assert [m[0].minute for m in made] == [4, 5]
    last = conn.execute("SELECT last_tick FROM skiplock.schedule").fetchone()[0]
    assert last.minute == 5  # skipped ticks are behind it now: they never fire


def test_paused_and_deleted_schedules_fire_nothing(conn, schedule):
    assert conn.execute("SELECT skiplock.pause_schedule('every-minute')").fetchone() == (True,)
    assert fire(conn, TICKS, at="2030-01-01 00:05:00+00") == []
    assert conn.execute("SELECT skiplock.resume_schedule('every-minute')").fetchone() == (True,)
    assert len(fire(conn, TICKS, at="2030-01-01 00:05:00+00")) == 5
    assert conn.execute("SELECT skiplock.delete_schedule('every-minute')").fetchone() == (True,)
    assert fire(conn, ["2030-01-01 00:06:00+00"], at="2030-01-01 00:07:00+00") == []
    assert conn.execute("SELECT skiplock.delete_schedule('every-minute')").fetchone() == (False,)


def test_changing_a_schedule_keeps_its_progress(conn, schedule):
    fire(conn, TICKS[:2], at="2030-01-01 00:02:30+00")
    conn.execute(
        "SELECT skiplock.upsert_schedule('every-minute', '*/2 * * * *', 'tick', 'cron', as_of => %s)", [T0]
    )
    assert fire(conn, TICKS[:2], at="2030-01-01 00:02:30+00") == []  # never twice
    assert conn.execute("SELECT cron FROM skiplock.schedule").fetchone() == ("*/2 * * * *",)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("'s', '61 * *', 't'", "invalid cron expression .* has 3 fields, not 5 or 6"),
        ("'s', '61 * * * *', 't'", 'minute field 61 is out of range 0-59 in "61 \\* \\* \\* \\*"'),
        ("'s', '0 24 * * *', 't'", "hour field 24 is out of range 0-23"),
        ("'s', '0 0 0 * *', 't'", "day-of-month field 0 is out of range 1-31"),
        ("'s', '0 0 * 13 *', 't'", "month field 13 is out of range 1-12"),
        ("'s', '0 0 * * 8', 't'", "day-of-week field 8 is out of range 0-7"),
        ("'s', '60 * * * * *', 't'", "second field 60 is out of range 0-59"),
        ("'s', '*/0 * * * *', 't'", "has step .0.; a step is a whole number of 1 or more"),
        ("'s', '1,,2 * * * *', 't'", "has an empty list item"),
        ("'s', '* * * * *', 't', tz => 'Mars/Olympus'", "unknown time zone"),
        ("'s', '* * * * *', 't', catch_up => '-1 hour'", "catch_up must be between 0 and 31 days"),
        ("'s', '* * * * *', 'bad task'", "invalid task name"),
        ("'s', '* * * * *', 't', args => '[1]'", "args must be a JSON object"),
        ("'bad name', '* * * * *', 't'", "invalid schedule name"),
    ],
)
def test_bad_schedules_are_rejected_and_change_nothing(conn, args, message):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        conn.execute(f"SELECT skiplock.upsert_schedule({args})")
    assert conn.execute("SELECT count(*) FROM skiplock.schedule").fetchone() == (0,)


@pytest.mark.parametrize(
    "cron",
    ["0 9 * * MON-FRI", "*/15 0-23 1,15 * 1-5", "0 0 * * 5#3", "0 0 L * *", "0 0 15W * *", "*/5 * * * * *"],
)
def test_the_range_checks_accept_the_forms_the_schedulers_read(conn, cron):
    conn.execute("SELECT skiplock.upsert_schedule('s', %s, 't')", [cron])
    assert conn.execute("SELECT cron FROM skiplock.schedule").fetchone() == (cron,)
