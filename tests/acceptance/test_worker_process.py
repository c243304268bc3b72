"""Real `skiplock worker` processes: two drain one queue, SIGKILL mid-run, SIGTERM shutdown.

Each task writes a row to a side-effect ledger (outside skiplock), so the tests can tell how often
each job really ran, not only how it ended.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

import skiplock
from processes import stop
from waiting import wait_until

pytestmark = [pytest.mark.subprocess, pytest.mark.slow]

TASKS = textwrap.dedent(
    """
    from __future__ import annotations

    import os
    import threading
    import time

    import psycopg

    import skiplock

    _local = threading.local()


    def _ledger() -> psycopg.Connection:
        conn = getattr(_local, "conn", None)
        if conn is None:
            conn = _local.conn = psycopg.connect(os.environ["SKIPLOCK_DSN"], autocommit=True)
        return conn


    @skiplock.task(queue="crash")
    def record(i: int) -> int:
        job = skiplock.current_job()
        _ledger().execute(
            "INSERT INTO ledger (job_id, attempt, pid) VALUES (%s, %s, %s)", [job.job.id, job.attempt, os.getpid()]
        )
        time.sleep(float(os.environ.get("TASK_SECONDS", "0")))
        return i
    """
)


@pytest.fixture
def ledger(conn: psycopg.Connection, tmp_path: Path) -> Path:
    conn.execute("CREATE TABLE ledger (job_id bigint NOT NULL, attempt int NOT NULL, pid int NOT NULL)")
    (tmp_path / "crashtasks.py").write_text(TASKS)
    return tmp_path


_LOGS = itertools.count()


def start_worker(dsn: str, cwd: Path, *args: str, task_seconds: float = 0.0) -> subprocess.Popen[bytes]:
    """Start `python -m skiplock worker`; its log goes to a file (a full pipe would block it)."""
    env = {**os.environ, "SKIPLOCK_DSN": dsn, "TASK_SECONDS": str(task_seconds), "PYTHONUNBUFFERED": "1"}
    with open(cwd / f"worker-{next(_LOGS)}.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "skiplock", "worker", "crashtasks", "--queues", "crash", *args],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def logs(cwd: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(cwd.glob("worker-*.log")))


def enqueue(client: skiplock.Client, n: int) -> list[int]:
    specs = [skiplock.JobSpec(task="record", args={"i": i}, queue="crash") for i in range(n)]
    return client.enqueue_many(specs)


def scalar(conn: psycopg.Connection, sql: str, params: list[object] | None = None) -> int:
    return int(conn.execute(sql, params).fetchone()[0])


def test_two_workers_drain_10000_jobs_without_running_any_twice(dsn, client, conn, ledger):
    ids = enqueue(client, 10_000)
    workers = [start_worker(dsn, ledger, "--concurrency", "8") for _ in range(2)]
    try:
        wait_until(
            lambda: scalar(conn, "SELECT count(*) FROM skiplock.job") == 0,
            timeout=180,
            what="both workers drain",
        )
    finally:
        codes = [stop(w) for w in workers]
    assert codes == [0, 0], logs(ledger)
    ran = conn.execute("SELECT count(*), count(DISTINCT job_id), count(DISTINCT pid) FROM ledger").fetchone()
    assert ran == (10_000, 10_000, 2)  # every job ran exactly once, and both workers took part
    done = conn.execute(
        "SELECT count(*), count(DISTINCT id) FROM skiplock.job_history WHERE state = 'completed' AND id = ANY(%s)",
        [ids],
    ).fetchone()
    assert done == (10_000, 10_000)


def test_sigkill_mid_run_loses_nothing_and_finalizes_each_job_once(dsn, client, conn, ledger):
    ids = enqueue(client, 300)
    victim = start_worker(dsn, ledger, "--concurrency", "4", "--prefetch", "4", task_seconds=0.02)
    try:
        wait_until(lambda: scalar(conn, "SELECT count(*) FROM ledger") >= 40, timeout=60, what="jobs running")
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=30) == -signal.SIGKILL
    finally:
        stop(victim, signal.SIGKILL)
    # Its sessions end once PostgreSQL notices the closed sockets; until then a statement it sent
    # (a completion, say) may still run and hold its rows.
    wait_until(
        lambda: (
            scalar(
                conn,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name IN ('skiplock-worker', 'skiplock-listener', 'skiplock-task')",
            )
            == 0
        ),
        timeout=60,
        what="the killed worker's sessions gone",
    )
    orphaned = {r[0] for r in conn.execute("SELECT id FROM skiplock.job WHERE state = 'running'")}
    assert orphaned, "the worker held leases when it died"
    # The leases expire; reap as of a time past them instead of waiting (database clock).
    reaped = dict(
        conn.execute("SELECT job_id, state::text FROM skiplock.reap(as_of => now() + interval '1 hour')")
    )
    assert set(reaped) == orphaned
    assert set(reaped.values()) == {"available"}

    # Reaped jobs come back due as of the reap time; a burst worker claims them at that time.
    conn.execute("UPDATE skiplock.job SET run_at = now() WHERE id = ANY(%s)", [list(orphaned)])
    rescuer = start_worker(dsn, ledger, "--concurrency", "4", "--burst")
    assert rescuer.wait(timeout=120) == 0, logs(ledger)

    history = conn.execute(
        "SELECT count(*), count(DISTINCT id) FROM skiplock.job_history WHERE state = 'completed' AND id = ANY(%s)",
        [ids],
    ).fetchone()
    assert history == (300, 300)  # none lost, none finalized twice
    assert scalar(conn, "SELECT count(*) FROM skiplock.job") == 0
    # Only jobs that were leased to the killed worker may have run twice.
    twice = {r[0] for r in conn.execute("SELECT job_id FROM ledger GROUP BY job_id HAVING count(*) > 1")}
    assert twice <= orphaned
    attempts = dict(conn.execute("SELECT id, attempt FROM skiplock.job_history WHERE id = ANY(%s)", [ids]))
    assert all(attempts[i] == (2 if i in orphaned else 1) for i in ids)


def test_sigterm_finishes_running_jobs_and_releases_the_rest_without_spending_attempts(
    dsn, client, conn, ledger
):
    ids = enqueue(client, 40)
    worker = start_worker(dsn, ledger, "--concurrency", "2", "--prefetch", "6", task_seconds=0.3)
    wait_until(lambda: scalar(conn, "SELECT count(*) FROM ledger") >= 2, timeout=60, what="jobs running")
    code = stop(worker, signal.SIGTERM, timeout=60)
    assert code == 0, logs(ledger)
    started = {r[0] for r in conn.execute("SELECT DISTINCT job_id FROM ledger")}
    rows = dict(
        conn.execute("SELECT id, state::text || ':' || attempt FROM skiplock.jobs WHERE id = ANY(%s)", [ids])
    )
    assert {rows[i] for i in started} == {"completed:1"}  # what had started, finished within the grace period
    assert {rows[i] for i in ids if i not in started} == {
        "available:0"
    }  # the rest: released, attempt unspent


def test_the_surviving_worker_reaps_and_finishes_a_killed_workers_jobs(dsn, client, conn, ledger):
    """Two workers drain one queue; one is SIGKILLed mid-drain. The survivor's own reaper returns the
    orphaned jobs once their 2 s lease expires, and it runs them: nothing is lost or finalized twice."""
    ids = enqueue(client, 2_000)
    victim = start_worker(dsn, ledger, "--concurrency", "4", "--lease", "2", task_seconds=0.005)
    survivor = start_worker(dsn, ledger, "--concurrency", "4", "--lease", "2", task_seconds=0.005)
    try:
        wait_until(
            lambda: scalar(conn, "SELECT count(DISTINCT pid) FROM ledger") == 2,
            timeout=60,
            what="both working",
        )
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=30) == -signal.SIGKILL
        wait_until(
            lambda: scalar(conn, "SELECT count(*) FROM skiplock.job") == 0,
            timeout=120,
            what="survivor drains",
        )
    finally:
        stop(victim, signal.SIGKILL)
        code = stop(survivor)
    assert code == 0, logs(ledger)
    done = conn.execute(
        "SELECT count(*), count(DISTINCT id) FROM skiplock.job_history WHERE state = 'completed' AND id = ANY(%s)",
        [ids],
    ).fetchone()
    assert done == (2_000, 2_000)
    reaped = scalar(
        conn, 'SELECT count(*) FROM skiplock.job_history WHERE errors @> \'[{"type": "LeaseExpired"}]\''
    )
    assert reaped > 0  # the victim held leases when it died, and the survivor's reaper returned them
