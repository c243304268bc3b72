"""Shared parts of the fault scenarios: tiers, the ledger, real worker processes.

Tiers: the smoke tier (default) runs inside CI at small sizes; the full tier
(``SKIPLOCK_FAULTS=full``, ``make test-faults``) runs the sizes and durations the issue names.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from invariants import LEDGER_DDL

from processes import stop

FULL = os.environ.get("SKIPLOCK_FAULTS", "smoke") == "full"


def size(smoke: int, full: int) -> int:
    """A scenario's size in the current tier."""
    return full if FULL else smoke


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/faults/" in str(item.fspath):
            item.add_marker(pytest.mark.faults)
            item.add_marker(pytest.mark.slow)
            if FULL:
                item.add_marker(pytest.mark.timeout(1800))


#: The tasks every worker process runs. Each execution writes a ledger row when it starts (with
#: its attempt and lease token) and stamps it when it finishes, on the database clock.
TASKS = textwrap.dedent(
    """
    from __future__ import annotations

    import ctypes
    import os
    import threading
    import time

    import psycopg

    import skiplock

    _local = threading.local()


    def _ledger() -> psycopg.Connection:
        conn = getattr(_local, "conn", None)
        if conn is None or conn.closed:
            conn = _local.conn = psycopg.connect(os.environ["LEDGER_DSN"], autocommit=True)
        return conn


    def _execute(sql, params):
        # The ledger must survive the faults the scenario injects into the queue's connections.
        for _ in range(50):
            try:
                return _ledger().execute(sql, params).fetchone()
            except psycopg.OperationalError:
                _local.conn = None
                time.sleep(0.1)
        raise RuntimeError("ledger unreachable")


    @skiplock.task(queue="faults", max_attempts=int(os.environ.get("MAX_ATTEMPTS", "10")))
    def work(i: int, poison: str | None = None) -> int:
        ctx = skiplock.current_job()
        (n,) = _execute(
            "INSERT INTO ledger (job_id, attempt, lease_token, pid) VALUES (%s, %s, %s, %s) RETURNING n",
            [ctx.job.id, ctx.attempt, ctx.job.lease_token, os.getpid()],
        )
        if poison == "exit":
            os._exit(3)
        if poison == "segfault":
            ctypes.string_at(0)
        seconds = float(os.environ.get("TASK_SECONDS", "0"))
        if seconds:
            time.sleep(seconds)
        _execute("UPDATE ledger SET finished = clock_timestamp() WHERE n = %s RETURNING n", [n])
        return i
    """
)

#: A worker process with the knobs the scenarios turn (lease, reap interval, poll floor).
RUNNER = textwrap.dedent(
    """
    import asyncio
    import logging
    import os
    import sys
    from datetime import timedelta

    import skiplock
    import faulttasks

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(message)s")
    env = os.environ
    worker = skiplock.AsyncWorker(
        [faulttasks.work],
        dsn=env["SKIPLOCK_DSN"],
        concurrency=int(env.get("CONCURRENCY", "8")),
        prefetch=int(env["PREFETCH"]) if "PREFETCH" in env else None,
        lease=timedelta(seconds=float(env.get("LEASE", "30"))),
        reap_interval=timedelta(seconds=float(env.get("REAP_INTERVAL", "1"))),
        poll_interval=timedelta(seconds=float(env.get("POLL", "0.5"))),
        grace_period=timedelta(seconds=float(env.get("GRACE", "30"))),
        schedules=env.get("SCHEDULES") == "1",
        install_signal_handlers=True,
    )
    asyncio.run(worker.run())
    sys.stdout.flush()
    os._exit(1 if worker.has_stuck_threads else 0)
    """
)


class Fleet:
    """Real worker processes of one scenario; every one still running is killed at the end."""

    _logs = itertools.count()

    def __init__(self, dsn: str, ledger_dsn: str, workdir: Path) -> None:
        self.dsn, self.ledger_dsn, self.workdir = dsn, ledger_dsn, workdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *, dsn: str | None = None, **env: Any) -> subprocess.Popen[bytes]:
        full_env = {
            **os.environ,
            "SKIPLOCK_DSN": dsn or self.dsn,
            "LEDGER_DSN": self.ledger_dsn,
            "PYTHONUNBUFFERED": "1",
            **{k: str(v) for k, v in env.items()},
        }
        path = self.workdir / f"worker-{next(self._logs)}.log"
        with open(path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, str(self.workdir / "faultrunner.py")],
                cwd=self.workdir,
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        return stop(proc, sig, timeout)

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-4000:] for p in sorted(self.workdir.glob("worker-*.log"))
        )

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def ledger(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    conn.execute(LEDGER_DDL)
    return conn


@pytest.fixture
def fleet(dsn: str, ledger: psycopg.Connection[Any], tmp_path: Path) -> Iterator[Fleet]:
    (tmp_path / "faulttasks.py").write_text(TASKS)
    (tmp_path / "faultrunner.py").write_text(RUNNER)
    f = Fleet(dsn, dsn, tmp_path)
    try:
        yield f
    finally:
        f.close()


def enqueue(conn: psycopg.Connection[Any], n: int, **columns: Any) -> list[int]:
    """Enqueue ``n`` work jobs (args {"i": k}), 10,000 per call; extra enqueue_many arrays by name."""
    extra = "".join(f", {name} => %({name})s" for name in columns)
    ids: list[int] = []
    for lo in range(1, n + 1, 10_000):
        rows = conn.execute(
            "SELECT * FROM skiplock.enqueue_many('{faults}', '{work}',"
            " ARRAY(SELECT jsonb_build_object('i', k) FROM generate_series(%(lo)s::integer, %(hi)s::integer) AS k)"
            + extra
            + ")",
            {"lo": lo, "hi": min(n, lo + 9_999), **columns},
        ).fetchall()
        ids += [r[0] for r in rows]
    return ids


def scalar(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> Any:
    return conn.execute(sql, params).fetchone()[0]
