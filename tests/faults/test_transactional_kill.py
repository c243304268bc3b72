"""Exactly-once database effects under SIGKILL: a task's writes in its job transaction commit with
the job's completion, or not at all, wherever its worker process dies.

Each execution logs itself in the ledger (autocommit: it survives every kill) and writes one
``effects`` row in its job transaction. Whatever happens, every job ends completed once and holds
exactly one effect, written by the attempt that completed it.
"""

from __future__ import annotations

import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conftest import Fleet, scalar
from waiting import wait_until

#: A sync and an async task writing their effect in the job transaction. On attempt 1 only, they
#: hold ``hold`` seconds inside the transaction, after their writes, before returning.
TASKS = textwrap.dedent(
    """
    from __future__ import annotations

    import asyncio
    import os
    import threading
    import time

    import psycopg

    import skiplock

    _local = threading.local()


    def _ledger(ctx) -> None:
        conn = getattr(_local, "conn", None)
        if conn is None or conn.closed:
            conn = _local.conn = psycopg.connect(os.environ["LEDGER_DSN"], autocommit=True)
        conn.execute(
            "INSERT INTO ledger (job_id, attempt, lease_token, pid) VALUES (%s, %s, %s, %s)",
            [ctx.job.id, ctx.attempt, ctx.job.lease_token, os.getpid()],
        )


    EFFECT = "INSERT INTO effects (job_id, attempt, pid) VALUES (%s, %s, %s)"


    @skiplock.task(queue="faults")
    def credit(i: int, hold: float = 0) -> int:
        ctx = skiplock.current_job()
        ctx.transaction().execute(EFFECT, [ctx.job.id, ctx.attempt, os.getpid()])
        _ledger(ctx)  # after the effect: the ledger row says "inside the transaction now"
        if ctx.attempt == 1 and hold:
            time.sleep(hold)
        return i


    @skiplock.task(queue="faults")
    async def acredit(i: int, hold: float = 0) -> int:
        ctx = skiplock.current_job()
        tx = await ctx.atransaction()
        await tx.execute(EFFECT, [ctx.job.id, ctx.attempt, os.getpid()])
        await asyncio.to_thread(_ledger, ctx)
        if ctx.attempt == 1 and hold:
            await asyncio.sleep(hold)
        return i
    """
)

RUNNER = textwrap.dedent(
    """
    import asyncio
    import logging
    import os
    from datetime import timedelta

    import skiplock
    import txtasks

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(message)s")
    env = os.environ
    worker = skiplock.AsyncWorker(
        [txtasks.credit, txtasks.acredit],
        dsn=env["SKIPLOCK_DSN"],
        concurrency=int(env.get("CONCURRENCY", "8")),
        prefetch=int(env.get("PREFETCH", "0")),
        lease=timedelta(seconds=2),
        reap_interval=timedelta(seconds=0.5),
        poll_interval=timedelta(seconds=0.2),
        schedules=False,
        install_signal_handlers=True,
    )
    asyncio.run(worker.run())
    os._exit(1 if worker.has_stuck_threads else 0)
    """
)

#: The scenario (b) pause: completion blocks in this trigger while the test holds the lock.
PAUSE_KEY = 4242
PAUSE = f"""
CREATE FUNCTION pause_completion() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared({PAUSE_KEY});
    RETURN NULL;
END $$;
CREATE TRIGGER pause_completion AFTER INSERT ON skiplock.job_history
    FOR EACH ROW EXECUTE FUNCTION pause_completion();
"""


@pytest.fixture
def fleet(dsn: str, ledger: psycopg.Connection[Any], tmp_path: Path) -> Iterator[Fleet]:
    ledger.execute("CREATE TABLE effects (job_id bigint NOT NULL, attempt int NOT NULL, pid int NOT NULL)")
    (tmp_path / "txtasks.py").write_text(TASKS)
    (tmp_path / "faultrunner.py").write_text(RUNNER)
    f = Fleet(dsn, dsn, tmp_path)
    try:
        yield f
    finally:
        f.close()


def enqueue(conn: psycopg.Connection[Any], task: str, i: int, *, hold: float = 0, priority: int = 0) -> int:
    return scalar(
        conn,
        "SELECT id FROM skiplock.enqueue('faults', %s, jsonb_build_object('i', %s::int, 'hold', %s::float),"
        " priority => %s)",
        [task, i, hold, priority],
    )


def sigkill(proc: Any) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL


def sessions_gone(conn: psycopg.Connection[Any]) -> None:
    """Wait until the server has ended every session of the killed worker (rolling back what
    they had not committed)."""
    wait_until(
        lambda: (
            scalar(
                conn,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name LIKE 'skiplock-%'",
            )
            == 0
        ),
        timeout=30,
        what="the killed worker's sessions gone",
    )


def drain(fleet: Fleet, conn: psycopg.Connection[Any]) -> None:
    """A fresh worker takes every job over (after the killed one's 2 s leases) and finishes it."""
    rescuer = fleet.start(CONCURRENCY=4)
    wait_until(lambda: scalar(conn, "SELECT count(*) FROM skiplock.job") == 0, timeout=60, what="drained")
    assert fleet.stop(rescuer) == 0, fleet.logs()


def effects(conn: psycopg.Connection[Any]) -> dict[int, list[int]]:
    """Committed effects: job id → the attempts that wrote them."""
    found: dict[int, list[int]] = {}
    for job_id, attempt in conn.execute("SELECT job_id, attempt FROM effects ORDER BY job_id, attempt"):
        found.setdefault(job_id, []).append(attempt)
    return found


def executions(conn: psycopg.Connection[Any]) -> dict[int, list[int]]:
    """Every execution that reached its effect, committed or not: job id → attempts."""
    found: dict[int, list[int]] = {}
    for job_id, attempt in conn.execute("SELECT job_id, attempt FROM ledger ORDER BY job_id, attempt"):
        found.setdefault(job_id, []).append(attempt)
    return found


def check_exactly_once(conn: psycopg.Connection[Any], ids: list[int]) -> dict[int, int]:
    """Every job completed exactly once and holds exactly one effect, written by the attempt that
    completed it. Returns job id → completing attempt."""
    finals = conn.execute(
        "SELECT id, state::text, attempt FROM skiplock.job_history WHERE id = ANY(%s)", [ids]
    ).fetchall()
    assert sorted(i for i, _, _ in finals) == sorted(ids), f"not finalized exactly once: {finals}"
    assert {s for _, s, _ in finals} == {"completed"}, finals
    completed_by = {i: a for i, _, a in finals}
    assert effects(conn) == {i: [completed_by[i]] for i in ids}
    return completed_by


def test_killed_inside_the_transaction_the_rerun_writes_the_only_effect(fleet: Fleet, ledger):
    """Pass (a): a worker is SIGKILLed while 8 tasks (4 def, 4 async) sit inside their job
    transactions with their effect written but not committed: none of those effects survives;
    after the 2 s lease another worker runs each job again, and each job ends completed once
    (attempt 2) with exactly one effect, from attempt 2."""
    ids = [enqueue(ledger, task, i, hold=3600) for i in range(4) for task in ("credit", "acredit")]
    victim = fleet.start(CONCURRENCY=8)
    wait_until(
        lambda: scalar(ledger, "SELECT count(*) FROM ledger") == 8, timeout=60, what="8 in transaction"
    )
    open_tx = scalar(
        ledger,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = 'skiplock-task' AND state = 'idle in transaction'",
    )
    assert open_tx == 8
    sigkill(victim)
    sessions_gone(ledger)
    assert effects(ledger) == {}  # rolled back with the dead sessions
    drain(fleet, ledger)
    assert check_exactly_once(ledger, ids) == dict.fromkeys(ids, 2)
    assert executions(ledger) == {i: [1, 2] for i in ids}


def test_killed_between_complete_and_commit_nothing_is_committed(fleet: Fleet, ledger):
    """Pass (b): the worker has run complete() on the job transaction and is paused before its
    COMMIT (a trigger on job_history waits for an advisory lock the test holds). SIGKILL, then
    the lock is released: the dead session never commits; the job is still running under the
    killed worker's lease (not completed) and its effect is absent. A new worker completes it,
    with exactly one effect."""
    ledger.execute(PAUSE)
    ledger.execute("SELECT pg_advisory_lock(%s)", [PAUSE_KEY])
    job = enqueue(ledger, "credit", 1)
    victim = fleet.start(CONCURRENCY=2)
    blocked = wait_until(
        lambda: ledger.execute(
            "SELECT l.pid, a.application_name FROM pg_locks AS l JOIN pg_stat_activity AS a USING (pid)"
            " WHERE l.locktype = 'advisory' AND l.objid = %s AND NOT l.granted"
            " AND a.datname = current_database()",
            [PAUSE_KEY],
        ).fetchone(),
        timeout=60,
        what="completion paused in the trigger",
    )
    pid, application = blocked
    assert application == "skiplock-task"  # the job transaction's own connection
    # Paused after complete() moved the job: its row is locked by the uncommitted move.
    assert scalar(ledger, "SELECT count(*) FROM skiplock.job WHERE id = %s", [job]) == 1
    sigkill(victim)
    ledger.execute("SELECT pg_advisory_unlock(%s)", [PAUSE_KEY])
    sessions_gone(ledger)  # the paused one included: it finishes complete(), then finds no client
    assert scalar(ledger, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]) == 0
    row = ledger.execute("SELECT state::text, attempt FROM skiplock.job WHERE id = %s", [job]).fetchone()
    assert row == ("running", 1)  # not completed; the reaper will see its lease expire
    assert scalar(ledger, "SELECT count(*) FROM skiplock.job_history WHERE id = %s", [job]) == 0
    assert effects(ledger) == {}
    assert executions(ledger) == {job: [1]}  # it had run, and returned
    ledger.execute("DROP TRIGGER pause_completion ON skiplock.job_history")
    drain(fleet, ledger)
    assert check_exactly_once(ledger, [job]) == {job: 2}
    assert executions(ledger) == {job: [1, 2]}


def test_killed_right_after_commit_the_job_never_runs_again(fleet: Fleet, ledger):
    """Pass (c): a worker running one job at a time commits job A (async task) and is SIGKILLed
    the moment its next job B starts, right after A's commit. A is completed with its effect
    and never runs again, not even after the reaper has handed B (killed mid-transaction) to
    another worker; B ends with exactly one effect too."""
    a = enqueue(ledger, "acredit", 1, priority=10)
    b = enqueue(ledger, "credit", 2, hold=3600)
    victim = fleet.start(CONCURRENCY=1)
    wait_until(
        lambda: scalar(ledger, "SELECT count(*) FROM ledger WHERE job_id = %s", [b]) == 1,
        timeout=60,
        what="B started, after A's commit",
    )
    sigkill(victim)
    sessions_gone(ledger)
    assert ledger.execute("SELECT state::text, attempt FROM skiplock.jobs WHERE id = %s", [a]).fetchone() == (
        "completed",
        1,
    )
    assert effects(ledger) == {a: [1]}
    drain(fleet, ledger)
    assert check_exactly_once(ledger, [a, b]) == {a: 1, b: 2}
    assert executions(ledger) == {a: [1], b: [1, 2]}
