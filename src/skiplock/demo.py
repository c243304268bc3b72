"""`skiplock demo`: see jobs flow in one command, with an embedded PostgreSQL when none answers.

The demo enqueues a mix of sample jobs (fast async ones, sync ones in threads, flaky ones that
fail and retry, delayed ones, and a few poison pills that end in the dead-letter set), runs a
worker in this process and shows live progress. It uses queues named ``demo.*`` and its own
task names, so it never touches an application's jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shlex
import signal
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from skiplock._core import queries
from skiplock._driver.conninfo import build, parse
from skiplock._driver.session import ServerInfo, Session
from skiplock._driver.session_async import AsyncSession
from skiplock._embedded import EmbeddedPostgres
from skiplock.client_async import AsyncClient
from skiplock.errors import DatabaseUnavailable, Retry
from skiplock.migrate import Migrator
from skiplock.models import FINAL_STATES, JobSpec, JobState
from skiplock.task import Task
from skiplock.worker import AsyncWorker

__all__ = ["DemoDatabase", "DemoResult", "explore_commands", "resolve_demo_dsn", "run_demo"]

QUEUES = ["demo.images", "demo.emails", "demo.payments", "demo.reports"]
_SHORT = {
    "scheduled": "sched",
    "available": "ready",
    "retryable": "retry",
    "completed": "done",
    "cancelled": "cancel",
}


async def _resize(image_id: int, width: int) -> dict[str, int]:
    await asyncio.sleep(random.uniform(0.001, 0.02))
    return {"image_id": image_id, "width": width}


def _email(user_id: int) -> str:
    time.sleep(random.uniform(0.001, 0.005))
    return f"sent to {user_id}"


async def _charge(order_id: int, fail_times: int) -> str:
    from skiplock.context import current_job

    if current_job().attempt <= fail_times:
        raise Retry(
            after=timedelta(milliseconds=500), reason=f"gateway timeout (attempt {current_job().attempt})"
        )
    return f"charged {order_id}"


async def _report(day: int) -> str:
    await asyncio.sleep(0.05)
    return f"report for day {day}"


async def _poison(n: int) -> None:
    raise ValueError(f"malformed input #{n}")


TASKS: list[Task[Any]] = [
    Task(_resize, name="demo.resize_image", queue="demo.images"),
    Task(_email, name="demo.send_email", queue="demo.emails"),
    Task(_charge, name="demo.charge_card", queue="demo.payments", max_attempts=5),
    Task(_report, name="demo.daily_report", queue="demo.reports"),
    Task(_poison, name="demo.parse_upload", queue="demo.images", max_attempts=2,
         retry_backoff=lambda attempt: timedelta(milliseconds=200)),
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What the demo did."""

    jobs: int
    by_state: dict[str, int]
    retries: int
    elapsed_s: float
    interrupted: bool


@dataclass(frozen=True, slots=True)
class DemoDatabase:
    """The database the demo runs on; ``server`` is the embedded cluster to close, or None."""

    dsn: str
    description: str
    server: EmbeddedPostgres | None = None


def resolve_demo_dsn(dsn: str, *, explicit: bool, embedded: bool = False) -> DemoDatabase:
    """Pick the demo's database.

    ``embedded``: always a fresh embedded cluster. Otherwise the server ``dsn`` names (``explicit``
    when it came from ``--dsn``, ``SKIPLOCK_DSN`` or ``DATABASE_URL``): a server that cannot be
    reached is an error, as is one that answers but refuses (bad password, missing database or
    role). Only with nothing configured does an absent server (no socket, connection refused) fall
    back to the embedded cluster; a refusal is an error there too, never a silent switch.
    """
    if not embedded:
        try:
            with Session.connect(dsn, connect_timeout=3) as conn:
                return DemoDatabase(dsn, _describe(conn.info))
        except DatabaseUnavailable as exc:
            reason = _first_line(exc.__cause__ or exc)
            if explicit or not _absent(exc):
                verb = "cannot be reached" if _absent(exc) else "refused the demo"
                hint = "" if explicit else " (pass --dsn or set SKIPLOCK_DSN, or use --embedded)"
                raise DatabaseUnavailable(f"the PostgreSQL server {verb}: {reason}{hint}") from None
    server = EmbeddedPostgres()
    try:
        with Session.connect(server.dsn, connect_timeout=10) as conn:
            version = _version(conn.info)
    except BaseException:
        server.close()
        raise
    return DemoDatabase(
        server.dsn, f"an embedded PostgreSQL {version} in {server.root} (removed when the demo ends)", server
    )


def _describe(info: ServerInfo) -> str:
    where = f"socket {info.host}" if info.host.startswith("/") else f"{info.host}:{info.port}"
    version = _version(info)
    return f"database {info.dbname!r} as user {info.user!r} on {where} (PostgreSQL {version})"


def _version(info: ServerInfo) -> str:
    # "15.20 (Debian 15.20-0+deb12u1)" -> "15.20"
    return info.server_version.split()[0]


# libpq's own words when nothing listens (the server never spoke): anything else is a refusal.
_ABSENT = ("Connection refused", "No such file or directory", "timeout expired", "Is the server running")


def _absent(exc: DatabaseUnavailable) -> bool:
    # The driver's exception, kept as the cause, holds libpq's full text.
    return any(marker in str(exc.__cause__ or exc) for marker in _ABSENT)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for prefix in ("connection failed: ", "connection is bad: "):
        text = text.removeprefix(prefix)
    return " ".join(text.split())


def explore_commands(dsn: str) -> list[str]:
    """Commands that show the demo's jobs on ``dsn`` (its password left out: libpq finds it in
    ``PGPASSWORD`` or ``~/.pgpass``)."""
    params: dict[str, str | int | None] = {k: v for k, v in parse(dsn).items() if k != "password"}
    target = shlex.quote(build(**params))
    return [
        f"skiplock jobs list --state failed --dsn {target}",
        f"skiplock monitor --dsn {target}",
        f'psql {target} -c "{FAILED_QUERY}"',  # the query has no character a shell expands
    ]


FAILED_QUERY = "SELECT id, task, errors FROM skiplock.jobs WHERE state = 'failed'"


def _plan(n: int, rng: random.Random) -> list[JobSpec]:
    specs = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.005:
            specs.append(
                JobSpec(task="demo.parse_upload", args={"n": i}, queue="demo.images", max_attempts=2)
            )
        elif roll < 0.55:
            specs.append(JobSpec(task="demo.resize_image", args={"image_id": i, "width": rng.choice([320, 640, 1280])},
                                 queue="demo.images", priority=rng.choice([0, 0, 10])))  # fmt: skip
        elif roll < 0.85:
            specs.append(JobSpec(task="demo.send_email", args={"user_id": i}, queue="demo.emails"))
        elif roll < 0.97:
            specs.append(JobSpec(task="demo.charge_card", args={"order_id": i, "fail_times": rng.choice([0, 1, 2])},
                                 queue="demo.payments", max_attempts=5))  # fmt: skip
        else:
            specs.append(JobSpec(task="demo.daily_report", args={"day": i}, queue="demo.reports",
                                 delay=timedelta(seconds=rng.uniform(1, 4))))  # fmt: skip
    return specs


async def run_demo(
    dsn: str, *, jobs: int = 3000, concurrency: int = 50, console: Console | None = None
) -> DemoResult:
    """Migrate, enqueue ``jobs`` sample jobs, run a worker with a live view until all are final."""
    out = console or Console()
    await asyncio.to_thread(Migrator(dsn).up)
    async with (
        AsyncClient(dsn, max_size=2) as client,
        await AsyncSession.connect(dsn) as conn,
    ):
        ids = await client.enqueue_many(_plan(jobs, random.Random()))
        lo, hi = min(ids), max(ids)
        worker = AsyncWorker(TASKS, dsn=dsn, queues=QUEUES, concurrency=concurrency, maintenance=False,
                             poll_interval=timedelta(milliseconds=250))  # fmt: skip
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        started = time.monotonic()
        runner = asyncio.create_task(worker.run(), name="skiplock-demo-worker")
        progress = Progress(
            TextColumn("[bold]jobs finished"), BarColumn(), TextColumn("{task.completed}/{task.total}")
        )
        bar = progress.add_task("jobs", total=jobs)
        by_state: dict[str, int] = {}
        per_queue: dict[str, Counter[str]] = {}
        interrupted = False
        try:
            with Live(console=out, refresh_per_second=8, transient=False) as live:
                while True:
                    by_state, per_queue, retries = await _counts(conn, lo, hi)
                    finished = sum(by_state.get(s.value, 0) for s in FINAL_STATES)
                    progress.update(bar, completed=finished)
                    live.update(Group(_table(per_queue, time.monotonic() - started, finished), progress))
                    if finished >= jobs:
                        break
                    if stop.is_set() or runner.done():
                        interrupted = True
                        break
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=0.25)
        finally:
            await worker.stop()
            await runner
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        by_state, per_queue, retries = await _counts(conn, lo, hi)
    return DemoResult(jobs, by_state, retries, time.monotonic() - started, interrupted)


async def _counts(
    conn: AsyncSession, lo: int, hi: int
) -> tuple[dict[str, int], dict[str, Counter[str]], int]:
    # A read of this run's id range only: job and history lookups by primary key / id index.
    rows = await conn.all(queries.job_range_stats(lo=lo, hi=hi))
    by_state: Counter[str] = Counter()
    per_queue: dict[str, Counter[str]] = {}
    retries = 0
    for r in rows:
        by_state[r["state"]] += int(r["jobs"])
        per_queue.setdefault(r["queue"], Counter())[r["state"]] += int(r["jobs"])
        retries += int(r["retries"])
    return dict(by_state), per_queue, retries


def _table(per_queue: dict[str, Counter[str]], elapsed: float, finished: int) -> Table:
    # The demo enqueues no workflow: no job ever waits for a parent.
    states = [s.value for s in JobState if s is not JobState.WAITING]
    table = Table(
        title=f"skiplock demo — {elapsed:4.1f}s, {finished / max(elapsed, 0.001):,.0f} jobs/s finished"
    )
    table.add_column("queue", no_wrap=True)
    for s in states:
        table.add_column(_SHORT.get(s, s), justify="right")
    for queue in QUEUES:
        counts = per_queue.get(queue, Counter())
        table.add_row(queue, *[str(counts.get(s, 0)) for s in states])
    return table
