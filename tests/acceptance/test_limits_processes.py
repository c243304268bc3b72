"""Queue limits hold across real worker processes: they are enforced in the database's claim.

Each task run writes its start and end (one machine's clock, shared by the processes) to a
ledger table, so the test sees real overlapping executions, not only what the queue recorded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

import skiplock
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


    @skiplock.task(queue="limited")
    def limited(i: int, tenant: str | None = None) -> None:
        conn = getattr(_local, "conn", None)
        if conn is None:
            conn = _local.conn = psycopg.connect(os.environ["SKIPLOCK_DSN"], autocommit=True)
        started = time.time()
        time.sleep(float(os.environ["TASK_SECONDS"]))
        conn.execute("INSERT INTO ledger VALUES (%s, %s, %s)", [i, started, time.time()])
    """
)


@pytest.fixture
def workdir(conn: psycopg.Connection, tmp_path: Path) -> Path:
    conn.execute("CREATE TABLE ledger (i int NOT NULL, started float8 NOT NULL, finished float8 NOT NULL)")
    (tmp_path / "limitedtasks.py").write_text(TASKS)
    return tmp_path


def start_workers(
    dsn: str, cwd: Path, n: int, *args: str, task_seconds: float
) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "SKIPLOCK_DSN": dsn, "TASK_SECONDS": str(task_seconds)}
    procs = []
    for k in range(n):
        with open(cwd / f"worker-{k}.log", "wb") as log:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "skiplock",
                        "worker",
                        "limitedtasks",
                        "--queues",
                        "limited",
                        *args,
                    ],
                    cwd=cwd,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    return procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def peak_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at one instant (an end and a start at the same instant do not overlap)."""
    events = sorted(
        [(s, 1) for s, _ in intervals] + [(f, -1) for _, f in intervals], key=lambda e: (e[0], e[1])
    )
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def test_four_processes_never_run_more_than_the_concurrency_limit(dsn, conn, client, workdir):
    """Pass: 4 workers x 4 slots on a queue limited to 3 never overlap more than 3 executions."""
    client.set_queue_limits("limited", concurrency=3)
    client.enqueue_many([skiplock.JobSpec(task="limited", args={"i": i}, queue="limited") for i in range(60)])
    procs = start_workers(dsn, workdir, 4, "--concurrency", "4", "--prefetch", "0", task_seconds=0.1)
    try:
        wait_until(
            lambda: conn.execute("SELECT count(*) FROM ledger").fetchone()[0] == 60,
            timeout=120,
            what="all 60 jobs ran",
        )
    finally:
        stop(procs)
    intervals = [(s, f) for s, f in conn.execute("SELECT started, finished FROM ledger")]
    peak = peak_overlap(intervals)
    assert 2 <= peak <= 3, peak  # limited, and still concurrent
    pids_per_job = conn.execute("SELECT count(DISTINCT worker_id) FROM skiplock.jobs WHERE queue = 'limited'")
    assert pids_per_job.fetchone()[0] > 1  # more than one process took part


def test_four_processes_hold_a_rate_limit_over_sixty_seconds(dsn, conn, client, workdir):
    """Pass: at 50 jobs/s with a bucket of 10, four workers claim 50/s within 5% over 60 s, and no
    1-second window holds more than the bucket plus one second's refill (60)."""
    client.set_queue_limits("limited", rate=50, burst=10)
    client.enqueue_many(
        [skiplock.JobSpec(task="limited", args={"i": i}, queue="limited") for i in range(4000)]
    )
    procs = start_workers(dsn, workdir, 4, "--concurrency", "10", task_seconds=0.0)
    try:
        wait_until(
            lambda: conn.execute(
                "SELECT max(attempted_at) - min(attempted_at) >= interval '61 seconds' FROM skiplock.jobs"
                " WHERE queue = 'limited' AND attempted_at IS NOT NULL"
            ).fetchone()[0],
            timeout=150,
            what="61 seconds of claims",
        )
    finally:
        stop(procs)
    claimed = conn.execute(
        """
        WITH c AS (SELECT attempted_at AS t FROM skiplock.jobs WHERE queue = 'limited' AND attempted_at IS NOT NULL),
             w AS (SELECT min(t) AS t0 FROM c)
        SELECT count(*) FROM c, w WHERE c.t < w.t0 + interval '60 seconds'
        """
    ).fetchone()[0]
    rate = (claimed - 10) / 60  # the first claim may take a full bucket
    assert 47.5 <= rate <= 52.5, rate
    busiest = conn.execute(
        """
        WITH c AS (SELECT attempted_at AS t FROM skiplock.jobs WHERE queue = 'limited' AND attempted_at IS NOT NULL)
        SELECT max(n) FROM (
            SELECT count(*) OVER (ORDER BY t RANGE BETWEEN CURRENT ROW AND interval '1 second' FOLLOWING) AS n FROM c
        ) AS x
        """
    ).fetchone()[0]
    assert busiest <= 60, busiest


def test_three_processes_hold_a_rate_limit_per_key(dsn, conn, client, workdir):
    """Pass: with 10 jobs/s per tenant (bucket of 2), three workers start each tenant's jobs at
    no more than 10/s + 5% over 10 s, and at least 10/s - 10%, whatever the other tenant's
    backlog; no 1-second window of one tenant holds more than its bucket plus one second's
    refill (12). The limit is the guarantee; the floor is looser because a bucket of 2 loses
    the tokens of any pause over 0.2 s, which a machine busy with other work causes."""
    client.set_queue_limits("limited", key_arg="tenant", key_rate=10, key_burst=2)
    client.enqueue_many(
        [
            skiplock.JobSpec(task="limited", args={"i": i, "tenant": tenant}, queue="limited")
            for tenant, n in (("big", 2000), ("small", 300))
            for i in range(n)
        ]
    )
    procs = start_workers(dsn, workdir, 3, "--concurrency", "10", task_seconds=0.0)
    try:
        wait_until(
            lambda: conn.execute(
                "SELECT max(attempted_at) - min(attempted_at) >= interval '11 seconds' FROM skiplock.jobs"
                " WHERE queue = 'limited' AND attempted_at IS NOT NULL"
            ).fetchone()[0],
            timeout=60,
            what="11 seconds of claims",
        )
    finally:
        stop(procs)
    per_tenant = dict(
        conn.execute(
            """
            WITH c AS (SELECT args ->> 'tenant' AS tenant, attempted_at AS t FROM skiplock.jobs
                       WHERE queue = 'limited' AND attempted_at IS NOT NULL),
                 w AS (SELECT min(t) AS t0 FROM c)
            SELECT tenant, count(*) FROM c, w WHERE c.t < w.t0 + interval '10 seconds' GROUP BY tenant
            """
        ).fetchall()
    )
    for tenant in ("big", "small"):
        rate = (per_tenant[tenant] - 2) / 10  # the first claim may take a full bucket
        assert 9.0 <= rate <= 10.5, (tenant, rate)
    busiest = conn.execute(
        """
        WITH c AS (SELECT args ->> 'tenant' AS tenant, attempted_at AS t FROM skiplock.jobs
                   WHERE queue = 'limited' AND attempted_at IS NOT NULL)
        SELECT max(n) FROM (
            SELECT count(*) OVER (PARTITION BY tenant ORDER BY t
                                  RANGE BETWEEN CURRENT ROW AND interval '1 second' FOLLOWING) AS n FROM c
        ) AS x
        """
    ).fetchone()[0]
    assert busiest <= 12, busiest


def test_three_processes_never_run_more_than_the_limit_per_key(dsn, conn, client, workdir):
    """Pass: with at most 2 running per tenant, 3 workers x 4 slots never overlap more than 2
    executions of one tenant, while different tenants still run side by side."""
    client.set_queue_limits("limited", key_arg="tenant", per_key=2)
    client.enqueue_many(
        [
            skiplock.JobSpec(task="limited", args={"i": i, "tenant": ("a", "b", "c")[i % 3]}, queue="limited")
            for i in range(60)
        ]
    )
    procs = start_workers(dsn, workdir, 3, "--concurrency", "4", "--prefetch", "0", task_seconds=0.1)
    try:
        wait_until(
            lambda: conn.execute("SELECT count(*) FROM ledger").fetchone()[0] == 60,
            timeout=120,
            what="all 60 jobs ran",
        )
    finally:
        stop(procs)
    rows = conn.execute("SELECT i, started, finished FROM ledger").fetchall()
    for k, tenant in enumerate("abc"):
        assert peak_overlap([(s, f) for i, s, f in rows if i % 3 == k]) <= 2, tenant
    assert peak_overlap([(s, f) for _, s, f in rows]) > 2  # tenants ran side by side


def test_a_concurrency_limited_queue_refills_as_slots_free_not_at_the_poll_floor(dsn, conn, client, workdir):
    """Pass: with a 30 s poll floor, two workers drain 60 jobs of 50 ms through a limit of 3 in
    well under one poll period: every finished job (skiplock_done) wakes the workers to claim the
    freed slot, so the limit is used, not the poll floor."""
    client.set_queue_limits("limited", concurrency=3)
    client.enqueue_many([skiplock.JobSpec(task="limited", args={"i": i}, queue="limited") for i in range(60)])
    procs = start_workers(dsn, workdir, 2, "--concurrency", "4", "--poll-interval", "30", task_seconds=0.05)
    try:
        wait_until(
            lambda: conn.execute("SELECT count(*) FROM ledger").fetchone()[0] == 60,
            timeout=25,  # under one poll period: only the done notifications can have woken them
            what="all 60 jobs ran",
        )
    finally:
        stop(procs)
    intervals = [(s, f) for s, f in conn.execute("SELECT started, finished FROM ledger")]
    assert peak_overlap(intervals) <= 3
