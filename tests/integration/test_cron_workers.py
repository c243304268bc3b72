"""Workers run the cron scheduler: several at once fire each tick exactly once, missed ticks are
made up within catch_up, and schedules declared with @skiplock.cron are stored at start-up."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta

import skiplock
from waiting import await_until


async def test_three_concurrent_schedulers_enqueue_every_second_exactly_once(dsn, conn):
    """Pass: with three workers firing a per-second schedule, 6+ consecutive ticks each become
    exactly one job (no duplicates, no gaps), and every job runs."""
    ran: list[str] = []

    @skiplock.cron("* * * * * *")
    @skiplock.task(queue="cron")
    async def every_second() -> None:
        ran.append(str(skiplock.current_job().job.run_at))

    workers = [skiplock.AsyncWorker([every_second], dsn=dsn, maintenance=False) for _ in range(3)]
    running = [asyncio.create_task(w.run()) for w in workers]
    try:
        await await_until(lambda: _async(len(ran) >= 6), timeout=30, what="six ticks ran")
    finally:
        for w in workers:
            await w.stop()
        await asyncio.gather(*running)
    rows = conn.execute(
        "SELECT run_at FROM skiplock.jobs WHERE task = 'every_second' ORDER BY run_at"
    ).fetchall()
    ticks = [r[0] for r in rows]
    assert len(ticks) == len(set(ticks)) >= 6  # each tick once
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(ticks))  # no gaps
    assert all(t.microsecond == 0 for t in ticks)
    assert len(ran) == len(set(ran))
    assert sum(w.stats.completed for w in workers) >= 6


async def test_ticks_missed_while_no_worker_ran_are_made_up_within_catch_up(dsn, conn, client):
    """Pass: a per-minute schedule whose last tick is an hour old, with a 3-minute catch_up,
    gets exactly the 3 ticks of the last 3 minutes when a worker starts."""

    @skiplock.task(queue="cron")
    def minutely() -> None: ...

    client.schedule("minutely", "* * * * *", "minutely", queue="cron", catch_up=timedelta(minutes=3))
    conn.execute("UPDATE skiplock.schedule SET last_tick = now() - interval '1 hour'")
    worker = skiplock.AsyncWorker([minutely], dsn=dsn, maintenance=False, burst=False)
    running = asyncio.create_task(worker.run())
    try:
        await await_until(
            lambda: _async(
                conn.execute("SELECT count(*) FROM skiplock.jobs WHERE task = 'minutely'").fetchone()[0] >= 3
            ),
            what="the catch-up ticks",
        )
        # the scheduler has nothing more to add until the next minute
        last = conn.execute("SELECT last_tick FROM skiplock.schedule").fetchone()[0]
        now = conn.execute("SELECT now()").fetchone()[0]
        assert now - last < timedelta(minutes=1)
    finally:
        await worker.stop()
        await running
    assert conn.execute("SELECT count(*) FROM skiplock.jobs WHERE task = 'minutely'").fetchone()[0] in (3, 4)


async def test_declared_schedules_are_stored_and_listed(dsn, client):
    @skiplock.cron("0 3 * * *", tz="Europe/Paris", name="nightly-report", args={"full": True})
    @skiplock.task(queue="reports", priority=5)
    def report(full: bool) -> None: ...

    worker = skiplock.AsyncWorker([report], dsn=dsn, maintenance=False)
    running = asyncio.create_task(worker.run())
    try:
        await await_until(lambda: _async(bool(client.schedules())), what="the schedule stored")
    finally:
        await worker.stop()
        await running
    (s,) = client.schedules()
    assert (s.name, s.cron, s.tz, s.task, s.queue, s.args, s.priority) == (
        "nightly-report", "0 3 * * *", "Europe/Paris", "report", "reports", {"full": True}, 5
    )  # fmt: skip
    assert client.pause_schedule("nightly-report") is True
    assert client.schedules()[0].paused
    assert client.delete_schedule("nightly-report") is True
    assert client.schedules() == []


async def _async(value: bool) -> bool:
    return value
