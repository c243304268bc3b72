"""The worker runtime against a real database: outcomes, retries, leases, shutdown, wake-ups."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import timedelta

import psycopg
import pytest

import skiplock
from skiplock import JobState
from waiting import await_until

FAST = {"poll_interval": timedelta(milliseconds=50), "reap_interval": timedelta(milliseconds=100)}


def states(conn: psycopg.Connection) -> dict[int, str]:
    return dict(conn.execute("SELECT id, state::text FROM skiplock.jobs ORDER BY id").fetchall())


async def test_sync_and_async_tasks_run_and_store_results(dsn, client, conn):
    seen = []

    @skiplock.task(queue="q")
    def add(a: int, b: int) -> int:
        seen.append(skiplock.current_job().attempt)
        return a + b

    @skiplock.task(queue="q")
    async def shout(word: str) -> str:
        return word.upper()

    j1 = add.using(client=client).enqueue(a=2, b=3)
    j2 = shout.using(client=client).enqueue(word="hi")
    worker = skiplock.AsyncWorker([add, shout], dsn=dsn, burst=True, **FAST)
    await worker.run()
    assert client.get_job(j1.id).result == 5
    assert client.get_job(j2.id).result == "HI"
    assert client.get_job(j1.id).state is JobState.COMPLETED
    assert seen == [1]
    assert worker.stats.completed == 2


async def test_retry_then_success_counts_attempts(dsn, client):
    calls = []

    @skiplock.task(queue="q", max_attempts=5)
    async def flaky() -> str:
        calls.append(skiplock.current_job().attempt)
        if len(calls) < 3:
            raise skiplock.Retry(after=timedelta(0))
        return "ok"

    job = flaky.using(client=client).enqueue()
    await skiplock.AsyncWorker([flaky], dsn=dsn, burst=True, **FAST).run()
    done = client.get_job(job.id)
    assert (done.state, done.attempt, done.result) == (JobState.COMPLETED, 3, "ok")
    assert calls == [1, 2, 3]
    assert [e["type"] for e in done.errors] == ["Retry", "Retry"]


async def test_exception_exhausts_attempts_then_dead_letters(dsn, client):
    @skiplock.task(queue="q", max_attempts=3, retry_backoff=lambda attempt: timedelta(0))
    def always_breaks() -> None:
        raise ValueError("broken \x1b[31m input")

    job = always_breaks.using(client=client).enqueue()
    worker = skiplock.AsyncWorker([always_breaks], dsn=dsn, burst=True, **FAST)
    await worker.run()
    dead = client.get_job(job.id)
    assert dead.state is JobState.FAILED
    assert dead.attempt == 3
    assert [e["attempt"] for e in dead.errors] == [1, 2, 3]
    assert dead.errors[-1]["type"] == "builtins.ValueError"
    assert "Traceback" in dead.errors[-1]["traceback"]
    assert worker.stats.retried == 2
    assert worker.stats.failed == 1


async def test_fail_and_no_retry_on_dead_letter_at_once(dsn, client):
    class Permanent(Exception):
        pass

    @skiplock.task(queue="q")
    def refuse() -> None:
        raise skiplock.Fail("card declined")

    @skiplock.task(queue="q", no_retry_on=(Permanent,))
    def permanent() -> None:
        raise Permanent("no")

    a = refuse.using(client=client).enqueue()
    b = permanent.using(client=client).enqueue()
    await skiplock.AsyncWorker([refuse, permanent], dsn=dsn, burst=True, **FAST).run()
    for job_id in (a.id, b.id):
        job = client.get_job(job_id)
        assert (job.state, job.attempt) == (JobState.FAILED, 1)


async def test_unknown_task_and_bad_args_are_dead_lettered_with_a_clear_error(dsn, client):
    @skiplock.task(queue="q")
    def greet(name: str) -> str:
        return name

    unknown = client.enqueue("no_such_task", {}, queue="q")
    bad = client.enqueue("greet", {"nam": "typo"}, queue="q")
    good = greet.using(client=client).enqueue(name="x")
    await skiplock.AsyncWorker([greet], dsn=dsn, burst=True, **FAST).run()
    u, b = client.get_job(unknown.id), client.get_job(bad.id)
    assert (u.state, u.errors[-1]["type"]) == (JobState.FAILED, "UnknownTask")
    assert "no_such_task" in u.errors[-1]["error"]
    assert (b.state, b.errors[-1]["type"]) == (JobState.FAILED, "BadArguments")
    assert client.get_job(good.id).state is JobState.COMPLETED


async def test_timeout_fails_the_job_and_the_worker_goes_on(dsn, client):
    never = asyncio.Event()

    @skiplock.task(queue="q", timeout=timedelta(milliseconds=100), max_attempts=1)
    async def hangs() -> None:
        await never.wait()

    @skiplock.task(queue="q")
    async def fine() -> int:
        return 1

    slow = hangs.using(client=client).enqueue()
    ok = fine.using(client=client).enqueue()
    await skiplock.AsyncWorker([hangs, fine], dsn=dsn, burst=True, **FAST).run()
    failed = client.get_job(slow.id)
    assert failed.state is JobState.FAILED
    assert failed.errors[-1]["type"] == "TimeoutError"
    assert client.get_job(ok.id).state is JobState.COMPLETED


async def test_heartbeats_keep_a_long_job_alive_past_its_lease(dsn, client, conn):
    release = asyncio.Event()
    running = asyncio.Event()

    @skiplock.task(queue="q")
    async def long_job() -> str:
        running.set()
        await release.wait()
        return "done"

    job = long_job.using(client=client).enqueue()
    lease = timedelta(milliseconds=600)
    async with skiplock.AsyncWorker([long_job], dsn=dsn, lease=lease, **FAST) as worker:
        await asyncio.wait_for(running.wait(), 10)
        claimed_until = conn.execute(
            "SELECT lease_expires_at FROM skiplock.job WHERE id = %s", [job.id]
        ).fetchone()[0]

        # Wait (on the database clock) until the lease has been extended twice past the first expiry,
        # while the reaper has been running every 100 ms.
        async def extended():
            row = conn.execute(
                "SELECT lease_expires_at > %s + interval '1 second', state FROM skiplock.job WHERE id = %s",
                [claimed_until, job.id],
            ).fetchone()
            return row and row[0]

        await await_until(extended, what="lease extension")
        release.set()
        await await_until(
            lambda: asyncio.to_thread(lambda: client.get_job(job.id).state is JobState.COMPLETED),
            what="completion",
        )
    done = client.get_job(job.id)
    assert (done.attempt, done.errors) == (1, [])
    assert worker.stats.lost == 0


async def test_a_worker_that_lost_its_lease_cannot_complete_the_job(dsn, client, conn):
    started = asyncio.Event()
    go_on = asyncio.Event()

    @skiplock.task(queue="q")
    async def slowpoke() -> str:
        started.set()
        await go_on.wait()
        return "stale"

    job = slowpoke.using(client=client).enqueue()
    async with skiplock.AsyncWorker(
        [slowpoke], dsn=dsn, lease=timedelta(seconds=30), concurrency=1, prefetch=0, **FAST
    ) as worker:
        await asyncio.wait_for(started.wait(), 10)
        # The lease "expires" (reap as of the future), and another worker claims the job.
        conn.execute("SELECT skiplock.reap(as_of => now() + interval '1 hour')")
        other = conn.execute(
            "SELECT lease_token FROM skiplock.claim('{q}', gen_random_uuid(), 1, '1 hour',"
            " as_of => now() + interval '1 hour')"
        ).fetchone()
        assert other is not None
        go_on.set()
        await await_until(lambda: asyncio.sleep(0, worker.stats.lost == 1), what="stale outcome rejected")
    row = conn.execute(
        "SELECT state::text, attempt, lease_token FROM skiplock.job WHERE id = %s", [job.id]
    ).fetchone()
    assert row == ("running", 2, other[0])  # the new attempt is untouched


async def test_graceful_stop_finishes_running_and_releases_prefetched_without_spending_attempts(
    dsn, client, conn
):
    started = asyncio.Event()
    finish = asyncio.Event()

    @skiplock.task(queue="q")
    async def step(n: int) -> int:
        started.set()
        await finish.wait()
        return n

    ids = step.using(client=client).enqueue_many([{"n": i} for i in range(6)])
    worker = skiplock.AsyncWorker([step], dsn=dsn, concurrency=1, prefetch=5, **FAST)
    runner = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 10)
    # Six jobs leased: one running, five prefetched.
    await asyncio.wait_for(worker.signals.claimed_jobs.wait_for(6), 10)
    await worker.stop()
    finish.set()
    await asyncio.wait_for(runner, 20)
    rows = conn.execute(
        "SELECT state::text, attempt FROM skiplock.jobs WHERE id = ANY(%s) ORDER BY id", [ids]
    ).fetchall()
    assert sorted(rows) == [("available", 0)] * 5 + [("completed", 1)]
    assert worker.stats.released == 5


async def test_grace_period_over_releases_the_running_job(dsn, client, conn):
    started = asyncio.Event()
    never = asyncio.Event()

    @skiplock.task(queue="q")
    async def stuck() -> None:
        started.set()
        await never.wait()

    job = stuck.using(client=client).enqueue()
    worker = skiplock.AsyncWorker([stuck], dsn=dsn, grace_period=timedelta(milliseconds=200), **FAST)
    runner = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 10)
    await worker.stop()
    await asyncio.wait_for(runner, 20)
    row = conn.execute("SELECT state::text, attempt FROM skiplock.job WHERE id = %s", [job.id]).fetchone()
    assert row == ("available", 0)


async def test_notify_wakes_an_idle_worker_long_before_its_poll_floor(dsn, client):
    ran = asyncio.Event()

    @skiplock.task(queue="q")
    async def ping() -> None:
        ran.set()

    async with skiplock.AsyncWorker([ping], dsn=dsn, poll_interval=timedelta(minutes=5)) as worker:
        await asyncio.wait_for(_listening(worker), 10)
        # Let the first (catch-up) poll pass so only a NOTIFY can wake the producer now.
        await asyncio.sleep(0)
        ping.using(client=client).enqueue()
        await asyncio.wait_for(ran.wait(), 10)


async def test_listener_reconnects_and_catches_up_after_its_connection_is_killed(dsn, client, conn):
    ran = asyncio.Event()

    @skiplock.task(queue="q")
    async def ping() -> None:
        ran.set()

    async with skiplock.AsyncWorker([ping], dsn=dsn, poll_interval=timedelta(minutes=5)) as worker:
        await asyncio.wait_for(_listening(worker), 10)
        killed = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'skiplock-listener' AND datname = current_database()"
        ).fetchone()[0]
        assert killed == 1
        await asyncio.wait_for(worker.signals.reconnected.wait_for(1), 10)
        assert worker.signals.listening.is_set()
        ping.using(client=client).enqueue()
        await asyncio.wait_for(ran.wait(), 10)


async def test_worker_survives_its_pool_connections_being_killed(dsn, client, conn):
    count = 0
    gate = threading.Event()

    @skiplock.task(queue="q")
    def work(i: int) -> int:
        nonlocal count
        count += 1
        if count == 50:
            gate.set()
        return i

    ids = work.using(client=client).enqueue_many([{"i": i} for i in range(400)])
    async with skiplock.AsyncWorker([work], dsn=dsn, concurrency=4, prefetch=4, **FAST):
        await asyncio.to_thread(gate.wait, 20)
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name IN ('skiplock-worker', 'skiplock-listener') AND datname = current_database()"
        )

        def all_done() -> bool:
            return conn.execute("SELECT count(*) FROM skiplock.job").fetchone()[0] == 0

        await await_until(lambda: asyncio.to_thread(all_done), timeout=60, what="drain after connection loss")
    finished = conn.execute(
        "SELECT count(*), count(DISTINCT id) FROM skiplock.job_history WHERE id = ANY(%s) AND state = 'completed'",
        [ids],
    ).fetchone()
    assert finished == (400, 400)


async def _listening(worker: skiplock.AsyncWorker) -> None:
    await worker.signals.listening.wait()


def test_sync_worker_runs_def_tasks_and_rejects_async(dsn, client):
    @skiplock.task(queue="s")
    def double(x: int) -> int:
        return 2 * x

    @skiplock.task(queue="s")
    async def nope() -> None:
        pass

    with pytest.raises(skiplock.ConfigError, match="AsyncWorker"):
        skiplock.Worker([double, nope], dsn=dsn)
    job = double.using(client=client).enqueue(x=21)
    worker = skiplock.Worker([double], dsn=dsn, burst=True, **FAST)
    worker.run()
    assert client.get_job(job.id).result == 42
    assert worker.stats.completed == 1


def test_claim_query_columns_match_the_positional_decoder(conn):
    from skiplock._core.rows import CLAIM_COLUMNS
    from skiplock._sql import QUERIES

    conn.execute("SELECT skiplock.enqueue('q', 't')")
    params = {
        "queues": ["q"],
        "worker_id": "00000000-0000-0000-0000-000000000001",
        "max_jobs": 1,
        "lease": "30s",
        "as_of": None,
    }
    with conn.cursor() as cur:
        cur.execute(QUERIES["claim"].text, params)
        assert tuple(d.name for d in cur.description) == CLAIM_COLUMNS
        assert cur.fetchone()[0] > 0


async def test_a_sync_task_past_its_timeout_is_failed_and_reported_as_a_stuck_thread(dsn, client):
    release = threading.Event()

    @skiplock.task(queue="q", timeout=timedelta(milliseconds=100), max_attempts=1)
    def blocks() -> None:
        release.wait(30)

    job = blocks.using(client=client).enqueue()
    worker = skiplock.AsyncWorker([blocks], dsn=dsn, burst=True, **FAST)
    await worker.run()
    try:
        assert client.get_job(job.id).state is JobState.FAILED
        assert worker.has_stuck_threads  # the thread cannot be interrupted; the CLI exits around it
    finally:
        release.set()
    await await_until(lambda: asyncio.sleep(0, not worker.has_stuck_threads), what="thread ends")


async def test_a_running_worker_lists_itself_with_the_jobs_it_holds(dsn, client):
    started = asyncio.Event()
    release = asyncio.Event()

    @skiplock.task(queue="held")
    async def hold() -> None:
        started.set()
        await release.wait()

    hold.using(client=client).enqueue()
    worker = skiplock.AsyncWorker([hold], dsn=dsn, maintenance=False, schedules=False)
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(started.wait(), 15)
        (me,) = client.workers()
        assert (me.id, me.queues, me.running, me.stale) == (worker.worker_id, ["held"], 1, False)
    finally:
        release.set()
        await worker.stop()
        await running
    assert client.workers() == []  # deregistered on the way out


async def test_job_log_records_carry_stable_extra_keys(dsn, client, caplog):
    """Pass: log records about a job carry job_id, task, queue and attempt as attributes, for
    JSON formatters and log pipelines."""

    @skiplock.task(queue="logs", max_attempts=2)
    def flaky() -> None:
        raise ValueError("nope")

    job = flaky.using(client=client).enqueue()
    with caplog.at_level(logging.DEBUG, logger="skiplock"):
        await skiplock.AsyncWorker([flaky], dsn=dsn, burst=True, maintenance=False, schedules=False).run()
    about = [r for r in caplog.records if getattr(r, "job_id", None) == job.id]
    assert {r.levelname for r in about} >= {"DEBUG", "INFO"}  # ran, failed an attempt
    for record in about:
        assert (record.task, record.queue) == ("flaky", "logs")  # type: ignore[attr-defined]
        assert record.attempt in (1, 2)  # type: ignore[attr-defined]
