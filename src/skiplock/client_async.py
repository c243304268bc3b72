"""AsyncClient: enqueue and manage jobs from asyncio code."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import aclosing
from dataclasses import replace
from datetime import datetime, timedelta
from time import monotonic as _monotonic
from types import TracebackType
from typing import Any

from skiplock._core import copying, graph, queries, statements
from skiplock._core import cron as _cron
from skiplock._core.rows import (
    activity_from_row,
    failure_from_row,
    graph_node_from_row,
    health_from_row,
    job_from_row,
    parent_result_from_row,
    queue_limits_from_row,
    queue_stat_from_row,
    schedule_from_row,
    task_stat_from_row,
)
from skiplock._core.tracing import producer_span
from skiplock._driver._acompat import ALock
from skiplock._driver.connection import resolve_async
from skiplock._driver.conninfo import resolve_dsn
from skiplock._driver.executor_async import AsyncExecutor, Conn
from skiplock._driver.protocols import CallerConnection
from skiplock._driver.session_async import AsyncSession
from skiplock.backoff import Backoff
from skiplock.errors import ConfigError, JobFailed, JobNotFound
from skiplock.models import (
    EVENT_KINDS,
    Dependency,
    Event,
    Failure,
    GraphNode,
    HealthCheck,
    Job,
    JobSpec,
    JobState,
    Json,
    ParentRef,
    ParentResult,
    QueueActivity,
    QueueLimits,
    QueueStat,
    Schedule,
    TaskStat,
    WorkerInfo,
)
from skiplock.settings import (
    DEFAULT_QUEUE,
    ENQUEUE_CHUNK,
    connection_options,
    pgbouncer_mode,
    redact,
)
from skiplock.workflow import group

__all__ = ["AsyncClient"]


class AsyncClient:
    """Enqueue and manage jobs (asyncio).

    Args:
        dsn: libpq connection string or URL; default from ``SKIPLOCK_DSN``, ``DATABASE_URL``,
            then libpq's ``PG*`` variables.
        min_size: connections kept open in the pool.
        max_size: most connections the pool opens.
        pgbouncer: connections go through PgBouncer in transaction pooling (default:
            ``SKIPLOCK_PGBOUNCER``): no prepared statements; ``wait()`` polls.

    The pool opens on first use (or ``await client.open()``); close it with ``close()`` or by
    using the client as a context manager. Every write takes ``conn=``: a psycopg connection or
    SQLAlchemy session whose open transaction the write joins, so a rollback leaves no job.
    """

    def __init__(
        self, dsn: str | None = None, *, min_size: int = 1, max_size: int = 10, pgbouncer: bool | None = None
    ) -> None:
        self.dsn = resolve_dsn(dsn)
        self.pgbouncer = pgbouncer_mode(pgbouncer)
        self._executor = AsyncExecutor.create(
            self.dsn,
            min_size=min_size,
            max_size=max_size,
            application_name="skiplock-client",
            options=connection_options(self.pgbouncer),
        )
        self._open_lock = ALock()
        self._is_open = False
        self._is_closed = False

    def __repr__(self) -> str:
        return f"<skiplock.{type(self).__name__} dsn={redact(self.dsn)!r}>"

    async def __aenter__(self) -> AsyncClient:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def cancel(
        self, job_ids: Sequence[int], *, conn: CallerConnection | None = None
    ) -> dict[int, JobState]:
        """Cancel jobs; return each known id with its state after the call.

        Queued jobs become ``cancelled`` and never run. A running job keeps ``running`` with a
        cancel request, and the worker holding it is told at once (NOTIFY, with its heartbeats
        as a fallback): an async task is cancelled, a sync task sees
        ``current_job().cancel_requested``; either way it ends ``cancelled`` and is not retried,
        unless it completes first. Finished jobs are reported unchanged (nothing to cancel).
        """
        rows = await self._all(queries.cancel(job_ids=job_ids), conn)
        return {int(r["job_id"]): JobState(r["state"]) for r in rows}

    async def close(self) -> None:
        """Close the pool. Idempotent."""
        if self._is_closed:
            return
        self._is_closed = True
        if self._is_open:
            await self._executor.close()

    async def enqueue(
        self,
        task: str,
        args: dict[str, Json] | None = None,
        *,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
        run_at: datetime | None = None,
        delay: timedelta | None = None,
        max_attempts: int | None = None,
        dedupe_key: str | None = None,
        dedupe_window: timedelta | None = None,
        retry_backoff: Backoff | None = None,
        depends_on: Sequence[ParentRef] = (),
        on_parent_failure: str | None = None,
        conn: CallerConnection | None = None,
    ) -> Job:
        """Enqueue one job and return it.

        With ``dedupe_key``, if a live job already holds the key, that job is returned and nothing
        is inserted (no error, safe inside the caller's transaction); with ``dedupe_window`` too,
        so is a job holding it that completed within the window (its state is ``completed``).
        ``run_at`` wins over ``delay``; both are resolved with the database clock.
        ``retry_backoff`` (``skiplock.backoff.fixed/linear/exponential``) is stored with the job
        and used instead of the task's policy.
        ``depends_on`` (job ids, Jobs or ``Dependency``) makes the job wait (state ``waiting``)
        until those jobs finish; a parent that fails or is cancelled cancels it, unless
        ``on_parent_failure="run"`` (see docs/workflows.md).

        Raises:
            InvalidInput: the database rejected a name, the args or an option; nothing was written.
        """
        spec = JobSpec(
            task=task,
            args=args or {},
            queue=queue,
            priority=priority,
            run_at=run_at,
            delay=delay,
            max_attempts=max_attempts,
            dedupe_key=dedupe_key,
            dedupe_window=dedupe_window,
            retry_backoff=retry_backoff,
            depends_on=tuple(depends_on),
            on_parent_failure=on_parent_failure,
        )
        return await self._enqueue_spec(spec, conn)

    async def enqueue_many(
        self,
        specs: Iterable[JobSpec],
        *,
        conn: CallerConnection | None = None,
        on_parent_failure: str | None = None,
    ) -> list[int]:
        """Enqueue many jobs in as few round trips as possible; return their ids in order.

        Batches above the server's batch limit are split, all inside one transaction: either
        every job is enqueued or none is. A batch is a whole workflow when its specs name each
        other in ``depends_on`` (any order: parents are sent first); a cycle raises ConfigError
        and nothing is written. ``on_parent_failure`` is the rule for every job of the batch
        that does not set its own (a per-graph default).
        """
        batch = list(specs)
        if on_parent_failure is not None:
            graph.check_on_failure(on_parent_failure, "on_parent_failure")
            batch = _with_default_rule(batch, on_parent_failure)
        if not batch:
            return []
        if not any(s.depends_on or s.on_parent_failure for s in batch):
            chunks = [batch[i : i + ENQUEUE_CHUNK] for i in range(0, len(batch), ENQUEUE_CHUNK)]
            if copying.is_copy_worth_it(batch):
                # Each chunk COPYed into the session's staging table, then enqueued from it; the
                # three steps share one transaction (the staging table lives in it).
                steps: list[statements.BoundStatement | copying.BoundCopy] = []
                for chunk in chunks:
                    steps += [queries.stage_jobs(), copying.copy_jobs(chunk), queries.enqueue_staged()]
                with producer_span(batch[0].task, batch[0].queue, len(batch)) as traceparent:
                    results = await self._run_enqueue(steps, conn, traceparent, atomic=True)
                staged = zip(steps, results, strict=True)
                return [int(r["id"]) for step, rows in staged if step.name == "enqueue_staged" for r in rows]
            stmts = [statements.enqueue_many(chunk) for chunk in chunks]
            with producer_span(batch[0].task, batch[0].queue, len(batch)) as traceparent:
                results = await self._run_enqueue(stmts, conn, traceparent)
            return [int(r["id"]) for rows in results for r in rows]

        plan = graph.plan_batch(batch)
        ordered = [batch[i] for i in plan.order]
        sent: list[int] = []  # ids in submission order, as chunks come back

        def next_chunk(done: list[list[Any]]) -> statements.BoundStatement | None:
            if done:
                sent.extend(int(r["id"]) for r in done[-1])
            start = len(sent)
            if start >= len(ordered):
                return None
            stop = min(start + ENQUEUE_CHUNK, len(ordered))
            return statements.enqueue_many(ordered[start:stop], plan.depends_on(start, stop, sent))

        with producer_span(batch[0].task, batch[0].queue, len(batch)) as traceparent:
            results = await self._run_enqueue(next_chunk, conn, traceparent)
        ids = [int(r["id"]) for rows in results for r in rows]
        by_input = [0] * len(batch)
        for position, i in enumerate(plan.order):
            by_input[i] = ids[position]
        return by_input

    async def enqueue_group(
        self, members: Sequence[JobSpec], then: JobSpec, *, conn: CallerConnection | None = None
    ) -> list[int]:
        """Enqueue ``members`` and ``then``, a callback that runs once when all of them have
        finished, whatever their outcome (``skiplock.group``): one round trip, one transaction.

        The callback reads each member's state, result and error with
        ``current_job().parent_results()``. Returns the members' ids, then the callback's.
        """
        return await self.enqueue_many(group(members, then), conn=conn)

    async def _run_enqueue(
        self,
        stmts: Sequence[statements.BoundStatement | copying.BoundCopy]
        | Callable[[list[list[Any]]], statements.BoundStatement | None],
        conn: CallerConnection | None,
        traceparent: str | None,
        *,
        atomic: bool = False,
    ) -> list[list[Any]]:
        """Run enqueue statements: on ``conn`` (inside the caller's transaction), or on the pool;
        several, or a traced one, in one transaction. ``stmts`` is a list, or a function giving
        the next statement from the results so far (None when done: a workflow's later chunks
        name parents by the ids of earlier ones). A trace context goes with the jobs through
        the transaction's skiplock.traceparent setting (the job table's trace_parent default), cleared after them.
        ``atomic``: the statements need one transaction even on a caller's autocommit connection
        (a COPY's staging table lives in it). A COPY's result is no rows."""
        around = (
            (queries.set_traceparent(traceparent=traceparent), queries.set_traceparent(traceparent=""))
            if traceparent
            else None
        )
        source: Callable[[list[list[Any]]], statements.BoundStatement | copying.BoundCopy | None]
        if isinstance(stmts, Sequence):
            listed = stmts

            def from_list(done: list[list[Any]]) -> statements.BoundStatement | copying.BoundCopy | None:
                return listed[len(done)] if len(done) < len(listed) else None

            source, single = from_list, len(listed) == 1
        else:
            source, single = stmts, False
        if conn is None:
            await self._ensure_open()
            if single and around is None:
                return [await self._executor.all(source([]))]  # type: ignore[arg-type]
        if conn is not None:
            raw = await resolve_async(conn)
            if around is None and not atomic:
                return await self._enqueue_on(raw, source, None)
            async with self._executor.transaction(raw) as tx:  # a savepoint inside the caller's transaction
                return await self._enqueue_on(tx, source, around)
        async with self._executor.transaction() as tx:
            return await self._enqueue_on(tx, source, around)

    async def _enqueue_on(
        self,
        conn: Conn,
        source: Callable[[list[list[Any]]], statements.BoundStatement | copying.BoundCopy | None],
        around: tuple[statements.BoundStatement, statements.BoundStatement] | None,
    ) -> list[list[Any]]:
        if around is not None:
            await self._executor.run(around[0], conn=conn)
        results: list[list[Any]] = []
        while (stmt := source(results)) is not None:
            if isinstance(stmt, copying.BoundCopy):
                await self._executor.copy_rows(stmt, conn=conn)
                results.append([])
            else:
                results.append(await self._executor.all(stmt, conn=conn))
        if around is not None:
            await self._executor.run(around[1], conn=conn)
        return results

    async def wait(self, job_id: int, *, timeout: float | None = None, poll_interval: float = 1.0) -> Job:
        """Wait until job ``job_id`` is finished (completed, failed or cancelled) and return it.

        Wakes on the database's completion notification (``skiplock_done``), on its own
        connection, and checks every ``poll_interval`` seconds in case a notification is missed.

        Raises:
            TimeoutError: the job was not finished within ``timeout`` seconds.
            JobNotFound: no job with that id.
            DatabaseUnavailable: the database cannot be reached, or the connection was lost.
        """
        deadline = None if timeout is None else _monotonic() + timeout
        async with await AsyncSession.connect(self.dsn, application_name="skiplock-wait") as listener:
            await listener.listen("skiplock_done")
            while True:
                job = await self.get_job(job_id)
                if job.is_final:
                    return job
                left = poll_interval if deadline is None else min(poll_interval, deadline - _monotonic())
                if left <= 0:
                    raise TimeoutError(f"job {job_id} did not finish within {timeout}s (it is {job.state})")
                # Closed at once when we stop early: the connection is not free until it is.
                async with aclosing(listener.notifies(timeout=left)) as notes:
                    async for note in notes:
                        if note.payload == job.queue:
                            break

    async def result(self, job_id: int, *, timeout: float | None = None) -> Json:
        """Wait for job ``job_id`` (see ``wait``) and return its result.

        Raises:
            JobFailed: the job ended failed or cancelled (``.job`` has its errors).
            TimeoutError: it did not finish within ``timeout`` seconds.
        """
        job = await self.wait(job_id, timeout=timeout)
        if job.state is not JobState.COMPLETED:
            last = job.errors[-1] if job.errors else {}
            raise JobFailed(f"job {job_id} {job.state}: {last.get('type', '')}: {last.get('error', '')}", job)
        return job.result

    async def get_job(self, job_id: int) -> Job:
        """Return a live or retained job by id.

        Raises:
            JobNotFound: no job with that id (never existed, or its history partition was dropped).
        """
        row = await self._one(queries.get_job(job_id=job_id), None)
        if row is None:
            raise JobNotFound(f"no job with id {job_id}")
        return job_from_row(row)

    async def job_graph(self, job_id: int) -> list[GraphNode]:
        """Return the workflow ``job_id`` belongs to: every job linked to it by dependencies,
        with its state and direct parents (``skiplock.job_graph``); just the job when it has none.

        Raises:
            JobNotFound: no job with that id.
        """
        rows = await self._all(queries.job_graph(job_id=job_id), None)
        if not rows:
            raise JobNotFound(f"no job with id {job_id}")
        return [graph_node_from_row(r) for r in rows]

    async def parent_results(self, job_id: int) -> list[ParentResult]:
        """Return the outcome of each parent of ``job_id`` (state, result, last error)."""
        rows = await self._all(queries.parent_results(job_id=job_id), None)
        return [parent_result_from_row(r) for r in rows]

    async def list_jobs(
        self,
        *,
        queue: str | None = None,
        state: JobState | None = None,
        task: str | None = None,
        since: datetime | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Return the newest jobs matching every filter given (created at or after ``since``).

        Pages: pass the smallest id of one page as ``before_id`` to get the next.
        """
        rows = await self._all(
            statements.list_jobs(
                queue=queue, state=state, task=task, since=since, before_id=before_id, limit=limit
            ),
            None,
        )
        return [job_from_row(r) for r in rows]

    async def open(self) -> None:
        """Open the pool, failing fast with DatabaseUnavailable if the server cannot be reached."""
        async with self._open_lock:
            if self._is_open:
                return
            if self._is_closed:
                raise ConfigError("this client is closed")
            # A probe first: a wrong password or host fails at once with libpq's reason, where
            # the pool would retry in the background until its timeout.
            probe = await AsyncSession.connect(self.dsn, connect_timeout=10)
            await probe.close()
            await self._executor.open(timeout=30)
            self._is_open = True

    async def pause_queue(self, queue: str, *, until: datetime | None = None) -> None:
        """Stop every worker from claiming jobs of ``queue`` (until ``until``, if given)."""
        await self._one(queries.pause_queue(queue=queue, until=until), None)

    async def set_queue_limits(
        self,
        queue: str,
        *,
        concurrency: int | None = None,
        rate: float | None = None,
        burst: int | None = None,
        key_arg: str | None = None,
        per_key: int | None = None,
        key_rate: float | None = None,
        key_burst: int | None = None,
    ) -> QueueLimits:
        """Limit ``queue`` for every worker at once; None removes a limit.

        Args:
            concurrency: at most this many of its jobs running at once, fleet-wide.
            rate: at most this many jobs started per second on average (a token bucket).
            burst: the bucket size, how many may start at once (default: one second's worth).
            key_arg: the job argument whose value is the key (a tenant, an account); jobs without
                it are not limited by key.
            per_key: at most this many jobs running at once per value of ``key_arg``.
            key_rate: a token bucket per value of ``key_arg``: at most this many jobs started per
                second for each key.
            key_burst: each key's bucket size (default: one second's worth).

        Raises:
            InvalidInput: a bad name or value; nothing changed.
        """
        row = await self._one(
            queries.set_queue_limits(
                queue=queue,
                concurrency=concurrency,
                rate=rate,
                burst=burst,
                key_arg=key_arg,
                per_key=per_key,
                key_rate=key_rate,
                key_burst=key_burst,
            ),
            None,
        )
        assert row is not None  # the function always returns the queue row
        return queue_limits_from_row(row)

    async def schedule(
        self,
        name: str,
        cron: str,
        task: str,
        *,
        queue: str = DEFAULT_QUEUE,
        args: dict[str, Json] | None = None,
        tz: str = "UTC",
        priority: int = 0,
        max_attempts: int | None = None,
        catch_up: timedelta = timedelta(hours=1),
    ) -> Schedule:
        """Create or change schedule ``name``: enqueue ``task`` at every tick of ``cron``.

        ``cron`` has 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds
        first, read in time zone ``tz``. Workers fire it (any worker, each tick exactly once);
        ticks missed while no worker ran are made up when at most ``catch_up`` old. Changing an
        existing schedule never fires a tick twice.

        Raises:
            ConfigError: a bad expression or time zone (checked here first).
            InvalidInput: the database rejected a name or value; nothing changed.
        """
        _cron.check(cron, tz)
        stmt = statements.upsert_schedule(
            name, cron, task, queue=queue, args=args or {}, tz=tz, priority=priority,
            max_attempts=max_attempts, catch_up=catch_up,
        )  # fmt: skip
        row = await self._one(stmt, None)
        assert row is not None  # the function always returns the schedule
        return schedule_from_row(row)

    async def schedules(self) -> list[Schedule]:
        """Every schedule, by name."""
        return [schedule_from_row(r) for r in await self._all(queries.list_schedules(), None)]

    async def pause_schedule(self, name: str) -> bool:
        """Stop firing ``name``; return whether it exists."""
        row = await self._one(queries.pause_schedule(name=name), None)
        return bool(row and row["found"])

    async def resume_schedule(self, name: str) -> bool:
        """Fire ``name`` again (ticks missed meanwhile: only within its catch_up); return whether it exists."""
        row = await self._one(queries.resume_schedule(name=name), None)
        return bool(row and row["found"])

    async def delete_schedule(self, name: str) -> bool:
        """Remove ``name``; return whether it existed."""
        row = await self._one(queries.delete_schedule(name=name), None)
        return bool(row and row["found"])

    async def workers(self) -> list[WorkerInfo]:
        """Every registered worker (``skiplock.workers``): host, pid, queues, heartbeat age, jobs held."""
        rows = await self._all(queries.list_workers(), None)
        return [WorkerInfo(**{k: r[k] for k in WorkerInfo.__dataclass_fields__}) for r in rows]

    async def queue_known(self, queue: str) -> bool:
        """Whether anything names ``queue``: it was paused, resumed or limited, it has live or
        dead-lettered jobs, or a registered worker serves it (index probes only: a queue whose
        only jobs are completed or cancelled history counts as unknown)."""
        row = await self._one(queries.queue_known(queue=queue), None)
        return bool(row and row["known"])

    async def queue_limits(self, queue: str) -> QueueLimits:
        """The fleet-wide limits ``queue`` has now (every field None when it has none)."""
        row = await self._one(queries.queue_limits(queue=queue), None)
        if row is None:
            return QueueLimits(queue=queue, concurrency=None, rate=None, burst=None)
        return queue_limits_from_row(row)

    async def queue_stats(self) -> list[QueueStat]:
        """Return ``skiplock.queue_stats``: counts per queue and state."""
        return [queue_stat_from_row(r) for r in await self._all(queries.queue_stats(), None)]

    async def job_counts(self, queue: str) -> dict[JobState, int]:
        """Every job of ``queue`` by state: live ones and all retained history (which this counts
        in full, so it costs a scan of the queue's history; ``queue_stats`` is the cheap view)."""
        counts = dict.fromkeys(JobState, 0)
        for row in await self._all(queries.queue_job_counts(queue=queue), None):
            counts[JobState(row["state"])] += int(row["jobs"])
        return counts

    async def queue_activity(self) -> list[QueueActivity]:
        """Each queue's last minute (``skiplock.queue_activity``): rates and pickup latency."""
        return [activity_from_row(r) for r in await self._all(queries.queue_activity(), None)]

    async def task_stats(self) -> list[TaskStat]:
        """Each task's last five minutes (``skiplock.task_stats``): outcomes and run times."""
        return [task_stat_from_row(r) for r in await self._all(queries.task_stats(), None)]

    async def recent_failures(self, limit: int = 10) -> list[Failure]:
        """The latest failed attempts of the last hour, newest first (``skiplock.recent_failures``)."""
        return [failure_from_row(r) for r in await self._all(queries.recent_failures(limit=limit), None)]

    async def health(self) -> list[HealthCheck]:
        """The checks of the PostgreSQL under the queue (``skiplock.health``), each with a fix."""
        return [health_from_row(r) for r in await self._all(queries.health(), None)]

    async def finished_since(self, seconds: float) -> dict[tuple[str, JobState], int]:
        """Jobs finished in the last ``seconds``, per queue and final state (an indexed read)."""
        rows = await self._all(queries.finished_since(seconds=seconds), None)
        return {(r["queue"], JobState(r["state"])): int(r["jobs"]) for r in rows}

    async def database_info(self) -> dict[str, Any]:
        """The database's name, server version and skiplock schema version."""
        row = await self._one(queries.database_info(), None)
        return dict(row or {})

    async def add_webhook(
        self,
        url: str,
        secret: str,
        *,
        events: Sequence[str] = ("completed", "failed"),
        queues: Sequence[str] | None = None,
        tasks: Sequence[str] | None = None,
    ) -> int:
        """Call ``url`` with a signed POST whenever a job of ``queues``/``tasks`` (None: any) reaches
        one of ``events`` (enqueued, started, retried, progress, completed, failed, cancelled);
        return the webhook's id.

        Workers started with ``webhooks=True`` deliver them, as jobs on queue
        ``skiplock.webhooks`` (retries, backoff and dead letters included). See
        :mod:`skiplock.webhooks` for the signature.

        Raises:
            InvalidInput: a bad URL, a secret shorter than 16 bytes, an unknown event; nothing stored.
        """
        row = await self._one(
            queries.add_webhook(url=url, secret=secret, events=events, queues=queues, tasks=tasks), None
        )
        assert row is not None  # the function always returns the id
        return int(row["id"])

    async def remove_webhook(self, webhook_id: int) -> bool:
        """Delete a webhook; return whether it existed."""
        row = await self._one(queries.remove_webhook(webhook_id=webhook_id), None)
        return bool(row and row["removed"])

    async def webhooks(self) -> list[dict[str, Any]]:
        """The registered webhooks (``skiplock.webhooks``, without their secrets)."""
        return await self._all(queries.list_webhooks(), None)

    async def events_enabled(self) -> bool:
        """Whether lifecycle events are on (:meth:`enable_events` was called and not undone)."""
        row = await self._one(queries.events_enabled(), None)
        return bool(row and row["enabled"])

    async def enable_events(self) -> None:
        """Start emitting lifecycle events (``skiplock.enable_events()``; the schema owner's call)."""
        await self._one(queries.enable_events(), None)

    async def disable_events(self) -> None:
        """Stop emitting lifecycle events (``skiplock.disable_events()``)."""
        await self._one(queries.disable_events(), None)

    async def events(
        self,
        *,
        queues: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[Event]:
        """Yield lifecycle events as transactions commit them, on a connection of its own.

        Events must be enabled (:meth:`enable_events`). Each is a kind and a queue, coalesced per
        transaction and never carrying job data: read what you need from the views. Stops after
        ``timeout`` seconds in all (None: never).

        Raises:
            ConfigError: an unknown event kind.
        """
        wanted_kinds = frozenset(kinds) if kinds else None
        if wanted_kinds is not None and not wanted_kinds <= frozenset(EVENT_KINDS):
            raise ConfigError(f"unknown event kinds {sorted(wanted_kinds - frozenset(EVENT_KINDS))}")
        wanted_queues = frozenset(queues) if queues else None
        async with await AsyncSession.connect(self.dsn, application_name="skiplock-events") as session:
            await session.listen("skiplock_event")
            async for note in session.notifies(timeout=timeout):
                kind, _, queue = note.payload.partition(":")
                if (wanted_kinds is None or kind in wanted_kinds) and (
                    wanted_queues is None or queue in wanted_queues
                ):
                    yield Event(kind=kind, queue=queue)

    async def reap(self, max_jobs: int = 1000) -> dict[int, JobState]:
        """Return expired leases to their queues now; return each job touched with its new state."""
        rows = await self._all(queries.reap(max_jobs=max_jobs), None)
        return {int(r["job_id"]): JobState(r["state"]) for r in rows}

    async def resume_queue(self, queue: str) -> None:
        """Let workers claim jobs of ``queue`` again."""
        await self._one(queries.resume_queue(queue=queue), None)

    async def retry(self, job_ids: Sequence[int], *, conn: CallerConnection | None = None) -> list[int]:
        """Run failed, cancelled, scheduled or retryable jobs again now; return the ids affected."""
        return [int(r["id"]) for r in await self._all(queries.retry(job_ids=job_ids), conn)]

    async def retry_failed(
        self,
        *,
        queue: str | None = None,
        task: str | None = None,
        since: datetime | None = None,
        limit: int = 10000,
    ) -> list[int]:
        """Redrive the dead-letter set: run again the failed jobs matching every filter given
        (failed at or after ``since``), oldest first, at most ``limit``; return their ids."""
        return [
            int(r["id"])
            for r in await self._all(
                queries.retry_failed(queue=queue, task=task, since=since, max_jobs=limit), None
            )
        ]

    async def purge(
        self,
        *,
        queue: str | None = None,
        task: str | None = None,
        before: datetime | None = None,
        states: Sequence[JobState] = (JobState.FAILED,),
        limit: int = 10000,
    ) -> int:
        """Delete finished jobs for good (default: the dead-letter set) matching every filter
        given and finished before ``before`` (default: now), at most ``limit``; return how many."""
        row = await self._one(statements.purge(queue, task, before, states, limit), None)
        return int(row["purged"]) if row else 0

    async def _all(self, stmt: statements.BoundStatement, conn: CallerConnection | None) -> list[Any]:
        if conn is not None:
            return await self._executor.all(stmt, conn=await resolve_async(conn))
        await self._ensure_open()
        return await self._executor.all(stmt)

    async def _enqueue_spec(self, spec: JobSpec, conn: CallerConnection | None) -> Job:
        """:meth:`enqueue` of a built spec: ``skiplock.task`` builds one and passes it as it is."""
        graph.check_on_failure(spec.on_parent_failure, "on_parent_failure")
        with producer_span(spec.task, spec.queue) as traceparent:
            (rows,) = await self._run_enqueue([statements.enqueue(spec)], conn, traceparent)
        if not rows or rows[0].get("id") is None:  # pragma: no cover - the function always returns a row
            raise JobNotFound("enqueue returned no job")
        return job_from_row(rows[0])

    async def _ensure_open(self) -> None:
        if not self._is_open:
            await self.open()

    async def _one(self, stmt: statements.BoundStatement, conn: CallerConnection | None) -> Any:
        rows = await self._all(stmt, conn)
        return rows[0] if rows else None


def _with_default_rule(batch: list[JobSpec], rule: str) -> list[JobSpec]:
    """Copies of the batch with ``rule`` for the specs that set none, their references between
    them pointing at the copies."""
    copies = {id(s): replace(s, on_parent_failure=s.on_parent_failure or rule) for s in batch}

    def ref(r: Any) -> Any:
        if isinstance(r, JobSpec) and id(r) in copies:
            return copies[id(r)]
        if isinstance(r, Dependency) and isinstance(r.job, JobSpec) and id(r.job) in copies:
            return replace(r, job=copies[id(r.job)])
        return r

    for s in batch:  # our own fresh copies: tying them together in place is safe
        object.__setattr__(copies[id(s)], "depends_on", tuple(ref(r) for r in s.depends_on))
    return [copies[id(s)] for s in batch]
