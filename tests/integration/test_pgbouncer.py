"""skiplock behind a real PgBouncer (the Debian package) in transaction pooling mode."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import skiplock
from skiplock import JobState
from waiting import await_until

PGBOUNCER = shutil.which("pgbouncer") or (
    "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
)
pytestmark = pytest.mark.skipif(
    PGBOUNCER is None, reason="pgbouncer is not installed (apt-get install pgbouncer)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def bouncer(dsn: str) -> Iterator[str]:
    """A PgBouncer in transaction pooling in front of the test server; yields the DSN through it."""
    params = conninfo_to_dict(dsn)
    port = _free_port()
    # Not under pytest's tmp_path: PgBouncer runs as another user when we are root, and pytest's
    # directories are private to us.
    workdir = Path(tempfile.mkdtemp(prefix="skiplock-pgbouncer-"))
    (workdir / "users.txt").write_text(f'"{params.get("user", "postgres")}" ""\n')
    (workdir / "pgbouncer.ini").write_text(
        f"""
[databases]
* = host={params.get("host", "127.0.0.1")} port={params.get("port", 5432)}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/users.txt
admin_users = {params.get("user", "postgres")}
pool_mode = transaction
default_pool_size = 4
max_client_conn = 200
ignore_startup_parameters = extra_float_digits
logfile = {workdir}/pgbouncer.log
pidfile = {workdir}/pgbouncer.pid
"""
    )
    command = [PGBOUNCER or "pgbouncer", str(workdir / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        user = "postgres" if _has_user("postgres") else "nobody"
        subprocess.run(["chown", "-R", user, str(workdir)], check=True)
        command = ["runuser", "-u", user, "--", *command]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    through = make_conninfo(dsn, host="127.0.0.1", port=str(port))
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with psycopg.connect(through, connect_timeout=2) as c:
                    c.execute("SELECT 1")
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (
                        (workdir / "pgbouncer.log").read_text()
                        if (workdir / "pgbouncer.log").exists()
                        else ""
                    )
                    raise AssertionError(f"pgbouncer did not start: {log[-2000:]}") from None
                time.sleep(0.1)
        yield through
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _transactions_through(bouncer_dsn: str) -> int:
    """Transactions PgBouncer has served to the test database (its admin console's SHOW STATS)."""
    dbname = conninfo_to_dict(bouncer_dsn)["dbname"]
    with psycopg.connect(make_conninfo(bouncer_dsn, dbname="pgbouncer"), autocommit=True) as admin:
        cur = admin.cursor()
        cur.execute("SHOW STATS")
        names = [d.name for d in cur.description or []]
        return sum(
            int(dict(zip(names, row, strict=True))["total_xact_count"]) for row in cur if row[0] == dbname
        )


async def test_enqueue_claim_and_complete_through_transaction_pooling(bouncer: str, conn):
    """Pass: with pgbouncer mode, a client enqueues (alone, in batches, inside a transaction that
    is rolled back) and a worker with 8 slots drains 200 jobs and a workflow through PgBouncer,
    many more statements than psycopg's prepare threshold, and PgBouncer served them."""

    @skiplock.task(queue="bounced")
    async def double(n: int) -> int:
        return n * 2

    before = _transactions_through(bouncer)
    async with skiplock.AsyncClient(bouncer, pgbouncer=True) as client:
        first = await client.enqueue("double", {"n": 1}, queue="bounced")
        ids = await client.enqueue_many([double.spec(n=n) for n in range(2, 201)])
        chained = await client.enqueue_many(skiplock.chain(double.spec(n=1000), double.spec(n=1001)))
        async with await psycopg.AsyncConnection.connect(bouncer, prepare_threshold=None) as tx:
            await client.enqueue("double", {"n": -1}, queue="bounced", conn=tx)
            await tx.rollback()
        worker = skiplock.AsyncWorker(
            [double],
            dsn=bouncer,
            pgbouncer=True,
            concurrency=8,
            burst=True,
            poll_interval=timedelta(milliseconds=50),
        )
        assert worker.listen is False  # nothing to LISTEN on through transaction pooling
        await worker.run()
        done = [await client.get_job(i) for i in [first.id, *ids, *chained]]
    assert all(j.state is JobState.COMPLETED for j in done)
    assert [j.result for j in done[:3]] == [2, 4, 6]
    assert conn.execute("SELECT count(*) FROM skiplock.jobs WHERE args = '{\"n\": -1}'").fetchone() == (0,)
    assert _transactions_through(bouncer) - before > 100  # it all went through PgBouncer


async def test_a_direct_listen_connection_wakes_a_worker_behind_pgbouncer(bouncer: str, dsn: str):
    """Pass: a pgbouncer-mode worker given listen_dsn (a direct connection) picks a job up on its
    NOTIFY, long before its 60 s poll floor would."""

    @skiplock.task(queue="woken")
    def ping() -> str:
        return "pong"

    worker = skiplock.AsyncWorker(
        [ping], dsn=bouncer, pgbouncer=True, listen_dsn=dsn, poll_interval=timedelta(seconds=60)
    )
    assert worker.listen is True
    import asyncio

    running = asyncio.create_task(worker.run())
    try:
        async with skiplock.AsyncClient(bouncer, pgbouncer=True) as client:
            await await_until(lambda: _listening(dsn), timeout=15, what="the worker listens")
            job = await client.enqueue("ping", queue="woken")
            await await_until(
                lambda: _completed(client, job.id),
                timeout=15,
                what="the job runs on its NOTIFY, not the poll",
            )
    finally:
        await worker.stop()
        await running


async def _listening(dsn: str) -> bool:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as c:
        cur = await c.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'skiplock-listener' AND datname = current_database()"
        )
        row = await cur.fetchone()
        return bool(row and row[0] > 0)


async def _completed(client: skiplock.AsyncClient, job_id: int) -> bool:
    return (await client.get_job(job_id)).state is JobState.COMPLETED
