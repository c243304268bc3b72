"""What the dashboard reads and writes: named statements on a pool of its own.

Reads go through the same views and named statements as the CLI and the terminal monitor
(``queue_stats``, ``queue_activity``, ``workers``, ``health``, ``jobs``, ``job_graph``); writes call
the same SQL functions as ``skiplock jobs retry`` or ``skiplock queues pause``. In read-only mode
every pooled connection runs ``SET ROLE skiplock_monitor`` when that role exists and the login may
use it, so PostgreSQL itself refuses any write; without the role the dashboard still refuses writes
itself and says so on the health page.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from skiplock._core import queries, rows
from skiplock._core.cron import next_tick
from skiplock._core.statements import BoundStatement
from skiplock._driver.conninfo import resolve_dsn
from skiplock._driver.executor_async import AsyncExecutor, Conn
from skiplock._driver.session_async import AsyncSession
from skiplock.errors import JobNotFound
from skiplock.models import (
    GraphNode,
    HealthCheck,
    Job,
    JobState,
    QueueActivity,
    Schedule,
    WorkerInfo,
)
from skiplock.settings import connection_options, pgbouncer_mode
from skiplock.web.filters import JobFilter

__all__ = ["MONITOR_ROLE", "Dashboard", "QueueSummary", "Sample"]

MONITOR_ROLE = "skiplock_monitor"
#: The states a bulk action can change: retry runs these again, cancel stops these.
RETRY_STATES = (JobState.FAILED, JobState.CANCELLED, JobState.SCHEDULED, JobState.RETRYABLE)
CANCEL_STATES = (
    JobState.WAITING,
    JobState.SCHEDULED,
    JobState.AVAILABLE,
    JobState.RUNNING,
    JobState.RETRYABLE,
)
#: Columns of the overview, in life-cycle order (failed: the whole dead-letter set).
OVERVIEW_STATES = ("waiting", "scheduled", "available", "running", "retryable", "failed")
_OVERVIEW_TTL_S = 1.0
_SAMPLE_EVERY_S = 5.0  # queue_activity averages a minute: sampling it faster shows nothing new
_SAMPLES = 120  # ten minutes of trend at one sample per five seconds
_COST_FACTOR = 100  # re-read a count no sooner than this many times its last read took


#: How many jobs (by id, newest first) one page of the job search examines at most.
SEARCH_WINDOW = 200_000


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchPage:
    """One page of the job search."""

    jobs: list[dict[str, Any]]
    older: int | None  # the before_id of the next page; None when nothing older is left
    searched: tuple[int, int] | None  # a short page with older jobs left: the ids it looked through


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueSummary:
    """One queue on the overview: its counts, rates, latency and limits."""

    name: str
    counts: dict[str, int]
    paused: bool
    oldest_age: timedelta | None  # how long its oldest due job has waited
    activity: QueueActivity | None
    limits: str


@dataclass(frozen=True, slots=True)
class Sample:
    """One point of the overview's trend: per queue, rates and backlog at ``at``."""

    at: float
    completed: dict[str, float]
    failed: dict[str, float]
    backlog: dict[str, int]


@dataclass
class Dashboard:
    """The dashboard's connection pool and every read and write its pages need.

    The pool opens on first use (a mounted application gets no lifespan events from its host) and
    :meth:`close` ends it. ``write=False`` makes every write method raise ``PermissionError``
    before any SQL is sent.
    """

    dsn: str | None = None
    write: bool = False
    max_connections: int = 4
    search_window: int = SEARCH_WINDOW
    role: str | None = None  # the role the pool's connections run as, once known
    samples: collections.deque[Sample] = field(default_factory=lambda: collections.deque(maxlen=_SAMPLES))
    _executor: AsyncExecutor | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _sampled_at: float | None = None
    _overview: tuple[float, list[QueueSummary]] | None = None
    _stats_ttl: float = _OVERVIEW_TTL_S
    _activity_ttl: float = _SAMPLE_EVERY_S
    _activity: tuple[float, dict[str, QueueActivity]] | None = None

    async def close(self) -> None:
        """Close the pool. Idempotent."""
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await executor.close()

    # ---- reads --------------------------------------------------------------------------

    async def overview(self) -> list[QueueSummary]:
        """Every queue with its counts by state, last-minute rates and limits.

        Shared by every open page for up to a second (so ten viewers cost what one does), and the
        last-minute rates (``queue_activity`` scans the live table) for five seconds. Both are
        counts, whose cost grows with the backlog and the finishing rate: each is re-read no
        sooner than :data:`_COST_FACTOR` times its last read took, so counting never takes more
        than 1/_COST_FACTOR of the server's time, however large the queues grow.
        """
        now = time.monotonic()
        if self._overview is not None and now - self._overview[0] < self._stats_ttl:
            return self._overview[1]
        started = time.monotonic()
        stats = await self._all(queries.queue_stats())
        self._stats_ttl = max(_OVERVIEW_TTL_S, _COST_FACTOR * (time.monotonic() - started))
        if self._activity is None or now - self._activity[0] >= self._activity_ttl:
            started = time.monotonic()
            found = await self._all(queries.queue_activity())
            self._activity_ttl = max(_SAMPLE_EVERY_S, _COST_FACTOR * (time.monotonic() - started))
            self._activity = (now, {a.queue: a for a in map(rows.activity_from_row, found)})
        activity = self._activity[1]
        by_queue: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        for row in stats:
            by_queue[row["queue"]].append(row)
        for name in activity:
            by_queue.setdefault(name, [])
        out = []
        for name in sorted(by_queue):
            queue_rows = by_queue[name]
            counts = dict.fromkeys(OVERVIEW_STATES, 0)
            oldest: timedelta | None = None
            for r in queue_rows:
                state = str(r["state"])
                if state in counts:
                    counts[state] += int(r["jobs"])
                if state == "available" and r["oldest_age"] is not None:
                    oldest = r["oldest_age"]
            first = queue_rows[0] if queue_rows else {}
            out.append(
                QueueSummary(
                    name=name,
                    counts=counts,
                    paused=bool(first.get("paused")),
                    oldest_age=oldest,
                    activity=activity.get(name),
                    limits=describe_limits(first),
                )
            )
        self._sample(out)
        self._overview = (now, out)
        return out

    async def queue(self, name: str) -> dict[str, Any]:
        """The ``skiplock.queue`` row of ``name`` (pause and limits): all None when it has none."""
        found = await self._all(queries.web_queue(queue=name))
        return found[0] if found else dict.fromkeys(queries.WebQueueRow._fields)

    async def search(self, flt: JobFilter, *, before_id: int | None, limit: int) -> SearchPage:
        """Up to ``limit`` jobs matching ``flt``, newest first, ids below ``before_id``.

        A page examines at most ``search_window`` jobs, so it costs the same however few
        jobs match; a short page says which ids it looked through (``searched``) and where to go
        on (``older``).
        """
        top = await self._search_top(before_id)
        if top is None:
            return SearchPage(jobs=[], older=None, searched=None)
        found = await self._all(
            queries.web_search_jobs(**flt.params(), top=top, window=self.search_window, limit=limit + 1)
        )
        if len(found) > limit:
            return SearchPage(jobs=found[:limit], older=int(found[limit - 1]["id"]), searched=None)
        floor = top - self.search_window
        older = floor if floor > 1 and await self._search_top(floor) is not None else None
        return SearchPage(jobs=found, older=older, searched=(floor, top - 1) if older is not None else None)

    async def _search_top(self, before_id: int | None) -> int | None:
        found = await self._all(queries.web_search_top(before_id=before_id))
        return None if found[0]["top"] is None else int(found[0]["top"])

    async def count(self, flt: JobFilter, action: str, cap: int) -> tuple[int, int | None]:
        """How many jobs (up to ``cap + 1``) a bulk ``action`` would touch, and their highest id."""
        states = [str(s) for s in (RETRY_STATES if action == "retry" else CANCEL_STATES)]
        found = await self._all(queries.web_count_jobs(**flt.params(), states=states, cap=cap))
        return int(found[0]["jobs"]), found[0]["max_id"]

    async def job(self, job_id: int) -> Job:
        """One job, live or finished. Raises JobNotFound."""
        found = await self._all(queries.get_job(job_id=job_id))
        if not found:
            raise JobNotFound(f"no job with id {job_id}")
        return rows.job_from_row(found[0])

    async def graph(self, job_id: int) -> list[GraphNode]:
        """The workflow of ``job_id`` (``skiplock.job_graph``): just the job when it has no links."""
        return [rows.graph_node_from_row(r) for r in await self._all(queries.job_graph(job_id=job_id))]

    async def workers(self) -> list[WorkerInfo]:
        """Every registered worker (``skiplock.workers``)."""
        found = await self._all(queries.list_workers())
        return [WorkerInfo(**{k: r[k] for k in WorkerInfo.__dataclass_fields__}) for r in found]

    async def schedules(self) -> list[tuple[Schedule, datetime | None]]:
        """Every schedule with its next tick (None when paused or its expression no longer parses)."""
        out = []
        for r in await self._all(queries.list_schedules()):
            schedule = rows.schedule_from_row(r)
            upcoming: datetime | None = None
            if not schedule.paused:
                try:
                    upcoming = next_tick(schedule.cron, schedule.tz, max(schedule.last_tick, r["db_now"]))
                except (ValueError, KeyError):  # a schedule written by hand with a bad expression
                    upcoming = None
            out.append((schedule, upcoming))
        return out

    async def health(self) -> dict[str, Any]:
        """Every ``skiplock.health`` check, the tables' dead rows, the partitions, NOTIFY usage."""
        checks: list[HealthCheck] = [rows.health_from_row(r) for r in await self._all(queries.health())]
        tables = await self._all(queries.web_tables())
        partitions = await self._all(queries.web_partitions())
        usage = await self._all(queries.web_notify_usage())
        sees = await self._all(queries.web_sees_all_sessions())
        return {
            "sees_all_sessions": bool(sees and sees[0]["sees"]),
            "checks": checks,
            "tables": tables,
            "partitions": partitions,
            "notify_usage": float(usage[0]["usage"]) if usage else 0.0,
        }

    # ---- writes (the CLI's SQL functions) -----------------------------------------------

    async def retry(self, job_ids: Sequence[int]) -> list[int]:
        """``skiplock.retry``: run failed, cancelled, scheduled or retryable jobs again now."""
        return [int(r["id"]) for r in await self._write(queries.retry(job_ids=job_ids))]

    async def cancel(self, job_ids: Sequence[int]) -> dict[int, str]:
        """``skiplock.cancel``: stop queued jobs, ask running ones to stop."""
        return {int(r["job_id"]): str(r["state"]) for r in await self._write(queries.cancel(job_ids=job_ids))}

    async def bulk(self, action: str, flt: JobFilter, *, max_id: int, cap: int) -> int:
        """Retry or cancel the jobs ``flt`` selects with ids up to ``max_id``; return how many."""
        bind = queries.web_bulk_retry if action == "retry" else queries.web_bulk_cancel
        return len(await self._write(bind(**flt.params(), max_id=max_id, cap=cap)))

    async def pause_queue(self, name: str) -> None:
        await self._write(queries.pause_queue(queue=name))

    async def resume_queue(self, name: str) -> None:
        await self._write(queries.resume_queue(queue=name))

    async def set_queue_limits(self, name: str, **limits: Any) -> None:
        """``skiplock.set_queue_limits``: None removes a limit. Raises InvalidInput."""
        await self._write(
            queries.set_queue_limits(
                queue=name,
                concurrency=limits.get("concurrency"),
                rate=limits.get("rate"),
                burst=limits.get("burst"),
                key_arg=limits.get("key_arg"),
                per_key=limits.get("per_key"),
                key_rate=limits.get("key_rate"),
                key_burst=limits.get("key_burst"),
            )
        )

    async def pause_schedule(self, name: str) -> bool:
        found = await self._write(queries.pause_schedule(name=name))
        return bool(found and found[0]["found"])

    async def resume_schedule(self, name: str) -> bool:
        found = await self._write(queries.resume_schedule(name=name))
        return bool(found and found[0]["found"])

    # ---- plumbing -----------------------------------------------------------------------

    async def _write(self, stmt: BoundStatement) -> list[dict[str, Any]]:
        """Run a write (refused when read-only, before any SQL); the next overview reads afresh."""
        if not self.write:
            raise PermissionError("this dashboard is read-only (start it with --write to allow changes)")
        try:
            return await self._all(stmt)
        finally:
            self._overview = None

    def _sample(self, queues: list[QueueSummary]) -> None:
        now = time.monotonic()
        if self._sampled_at is not None and now - self._sampled_at < _SAMPLE_EVERY_S:
            return
        self._sampled_at = now
        self.samples.append(
            Sample(
                at=now,
                completed={q.name: q.activity.completed_per_second if q.activity else 0.0 for q in queues},
                failed={q.name: q.activity.failed_per_second if q.activity else 0.0 for q in queues},
                backlog={q.name: q.counts["available"] + q.counts["retryable"] for q in queues},
            )
        )

    async def _all(self, stmt: BoundStatement) -> list[dict[str, Any]]:
        executor = await self._ensure_open()
        return await executor.all(stmt)

    async def _ensure_open(self) -> AsyncExecutor:
        if self._executor is not None:
            return self._executor
        async with self._lock:
            if self._executor is None:
                dsn = resolve_dsn(self.dsn)
                pgbouncer = pgbouncer_mode(None)
                executor = AsyncExecutor.create(
                    dsn,
                    min_size=1,
                    max_size=self.max_connections,
                    application_name="skiplock-web",
                    options=connection_options(pgbouncer),
                    # SET ROLE is session state: through PgBouncer's transaction pooling it would
                    # land on a server connection other clients then share.
                    configure=None if self.write or pgbouncer else _monitor_role,
                )
                # A probe first: a wrong password or host fails at once with libpq's reason.
                probe = await AsyncSession.connect(dsn, connect_timeout=10)
                await probe.close()
                await executor.open(timeout=30)
                self._executor = executor
                if self.role is None:
                    found = await executor.one(queries.web_current_user())
                    self.role = str(found["role"]) if found else "?"
        assert self._executor is not None
        return self._executor


async def _monitor_role(executor: AsyncExecutor, conn: Conn) -> None:
    """Run a read-only dashboard's connection as skiplock_monitor when the login may."""
    found = await executor.one(queries.web_monitor_role(), conn=conn)
    if found and found["usable"]:
        await executor.run(queries.web_set_monitor_role(), conn=conn)


def describe_limits(row: dict[str, Any]) -> str:
    """A queue's limits in a few words ("max 5, 20/s, per tenant: 2"), or "" for none."""
    parts = []
    if row.get("concurrency_limit") is not None:
        parts.append(f"max {row['concurrency_limit']} running")
    if row.get("rate_limit") is not None:
        parts.append(f"{row['rate_limit']:g}/s")
    if row.get("key_arg"):
        per_key = []
        if row.get("key_concurrency_limit") is not None:
            per_key.append(f"max {row['key_concurrency_limit']}")
        if row.get("key_rate_limit") is not None:
            per_key.append(f"{row['key_rate_limit']:g}/s")
        if per_key:
            parts.append(f"per {row['key_arg']}: " + ", ".join(per_key))
    return ", ".join(parts)
