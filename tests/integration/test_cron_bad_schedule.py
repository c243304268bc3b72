"""One schedule that cannot fire stops nothing else: workers skip it and say so once, doctor and
the monitor name it, and every other schedule keeps firing."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys

import skiplock
from waiting import await_until

#: Rows other clients could have stored (written to the table directly, past upsert_schedule's
#: checks): each sorts before the good schedule, which the scheduler reads last.
BAD = [
    ("a-minute-61", "61 * * * *", "UTC"),
    ("b-mars", "* * * * *", "Mars/Olympus_Mons"),
    ("c-february-30", "0 0 30 2 *", "UTC"),
]


def store_bad_schedules(conn) -> None:
    for name, cron, tz in BAD:
        conn.execute(
            "INSERT INTO skiplock.schedule (name, cron, tz, task, queue, last_tick)"
            " VALUES (%s, %s, %s, 'tick', 'cron', now())",
            [name, cron, tz],
        )


async def test_a_bad_schedule_is_skipped_and_reported_once_while_the_others_fire(dsn, conn, caplog):
    """Pass: beside three stored schedules that cannot fire (minute 61, an unknown time zone,
    February 30), a per-second schedule fires at least 4 ticks; each bad schedule is logged
    once, by name, over those rounds, with no traceback."""
    ran: list[object] = []

    @skiplock.cron("* * * * * *", name="z-good")
    @skiplock.task(queue="cron")
    async def tick() -> None:
        ran.append(skiplock.current_job().job.run_at)

    store_bad_schedules(conn)
    worker = skiplock.AsyncWorker([tick], dsn=dsn, maintenance=False)
    with caplog.at_level(logging.INFO, logger="skiplock.worker"):
        async with worker:
            await await_until(lambda: asyncio.sleep(0, len(ran) >= 4), timeout=30, what="four good ticks ran")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    for name, _, _ in BAD:
        reports = [r for r in errors if f"schedule {name} cannot fire" in r.getMessage()]
        assert len(reports) == 1, [r.getMessage() for r in errors]
    assert "'61 * * * *'" in next(r.getMessage() for r in errors if "a-minute-61" in r.getMessage())
    assert "Mars/Olympus_Mons" in next(r.getMessage() for r in errors if "b-mars" in r.getMessage())
    assert not [r for r in caplog.records if r.exc_info], "no traceback"
    assert len(errors) == len(BAD)
    fired = conn.execute("SELECT count(*) FROM skiplock.jobs WHERE task = 'tick'").fetchone()[0]
    assert fired >= 4


def test_doctor_and_the_monitor_name_a_schedule_that_cannot_fire(dsn, conn):
    """Pass: `skiplock doctor` exits 1 with a critical line and a fix for each bad schedule;
    `skiplock monitor --once` shows each in its postgres panel."""
    store_bad_schedules(conn)
    doctor = subprocess.run(
        [sys.executable, "-m", "skiplock", "doctor", "--dsn", dsn],
        capture_output=True,
        text=True,
        check=False,
    )
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    for name, _, _ in BAD:
        assert f"critical schedule {name}: cannot fire" in doctor.stdout
        assert f"skiplock schedules delete {name}" in doctor.stdout
    screen = subprocess.run(
        [sys.executable, "-m", "skiplock", "monitor", "--once", "--dsn", dsn],
        capture_output=True,
        text=True,
        check=False,
        env={"COLUMNS": "200", "LINES": "100", "PATH": ""},
    )
    assert screen.returncode == 0, screen.stderr
    for name, _, _ in BAD:
        assert f"schedule {name}" in screen.stdout
    assert "3 critical" in screen.stdout
