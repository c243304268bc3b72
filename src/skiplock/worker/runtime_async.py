"""AsyncWorker: claim jobs in batches, run them, acknowledge them in batches.

Loops, each an asyncio task named ``skiplock-<loop>``:

- **producer** claims up to ``concurrency + prefetch - in_flight`` jobs in one call, then waits
  for a NOTIFY, a freed slot or the poll floor, whichever comes first;
- **acker** completes finished jobs in batches: it flushes as soon as the previous flush
  returned, so a lone job is acknowledged at once and a busy worker sends large batches;
- **heartbeat** extends every held lease (and the worker's own registry row) every lease/3;
- **reaper** calls ``skiplock.reap()`` (safe from many workers), **maintenance** keeps history
  partitions ahead and drops expired ones;
- **listener** (optional) holds the LISTEN connection.

Jobs run on ``concurrency`` long-lived **runner** coroutines that take claimed jobs from a
queue: no asyncio task is created per job, and a runner takes the next job without a trip
through the event loop when one is ready. Sync tasks run in a thread pool of ``concurrency``
threads; async tasks run on the loop. A task that opened its job transaction
(``current_job().transaction()``) is finished on that transaction instead of by the acker: see
``skiplock.worker.transactional``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import logging
import os
import signal
import socket
import traceback
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from skiplock._core import statements, tracing
from skiplock._core.claiming import claim_size, poll_delay_s, rate_poll_s, refill_threshold
from skiplock._core.cron import MAX_TICKS
from skiplock._core.cron import due_ticks as cron_ticks
from skiplock._core.cron import next_tick as next_cron_tick
from skiplock._core.cron import problem as cron_problem
from skiplock._core.rows import job_from_claim, parent_result_from_row
from skiplock._core.text import ESCAPE_ARGS
from skiplock._driver.conninfo import resolve_dsn
from skiplock._driver.errors import is_transient
from skiplock._driver.executor_async import AsyncExecutor
from skiplock._driver.listener_async import AsyncListener
from skiplock.backoff import exponential
from skiplock.context import _CURRENT, JobContext, current_job, set_current
from skiplock.cron import CRON_REGISTRY
from skiplock.errors import ConfigError, DatabaseUnavailable, Fail, InvalidInput, Retry, SkiplockError
from skiplock.migrate_async import AsyncMigrator
from skiplock.models import Job, Json, ParentResult
from skiplock.settings import (
    DEFAULT_GRACE_PERIOD,
    DEFAULT_LEASE,
    DEFAULT_MAINTENANCE_INTERVAL,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_REAP_INTERVAL,
    DEFAULT_RETENTION,
    MAX_BATCH,
    connection_options,
    pgbouncer_mode,
    positive,
    redact,
)
from skiplock.task import REGISTRY, Task
from skiplock.webhooks import WebhookRejected
from skiplock.webhooks import post as webhook_post
from skiplock.worker.transactional import JobTransactions, TxConnection

__all__ = ["AsyncWorker", "WorkerStats"]

log = logging.getLogger("skiplock.worker")
log.addFilter(ESCAPE_ARGS)  # job errors and names are logged escaped, on one line

#: The scheduler wakes at the next tick of any schedule, and at least this often (schedules
#: added or changed elsewhere are seen within it).
MAX_SCHEDULER_SLEEP_S = 5.0
#: Between lease extensions, the jobs a worker finished are reported this often.
DONE_INTERVAL_S = 1.0
#: Progress reports are sent in one batch this often (a task may report in a hot loop).
PROGRESS_INTERVAL_S = 1.0
#: Fire a tick this long after it is due by our reading of the database clock, so that the
#: database (whose clock decides) agrees that it is due.
SCHEDULER_MARGIN_S = 0.005


@dataclass(slots=True)
class WorkerStats:
    """Counters of one worker's life, for logs, tests and the demo."""

    claimed: int = 0
    completed: int = 0
    retried: int = 0
    failed: int = 0
    released: int = 0
    lost: int = 0
    progress_batches: int = 0  # set_progress statements sent (each carries every fresh report)


@dataclass(slots=True)
class _Outcome:
    kind: str  # "complete" | "fail" | "release"
    result: Json = None
    error: str = ""
    error_type: str | None = None
    traceback: str | None = None
    retry_in: timedelta | None = None
    retryable: bool = True


def _fields(job: Job) -> dict[str, Any]:
    """The stable ``extra`` keys of every log record about a job (for JSON log formatters)."""
    return {"job_id": job.id, "task": job.task, "queue": job.queue, "attempt": job.attempt}


#: The built-in webhook delivery task and its queue (jobs enqueued by the webhook triggers, sql/functions/webhook.sql).
WEBHOOK_TASK = "skiplock.deliver_webhook"
WEBHOOK_QUEUE = "skiplock.webhooks"

#: The outcome of a job cancelled on request: recorded as a non-retryable failure, which the
#: database ends as `cancelled` because the job's cancel_requested flag is set.
_CANCELLED = _Outcome("fail", error="cancelled on request", error_type="Cancelled", retryable=False)
#: A task whose job transaction is in error (a statement failed and the task went on) or whose
#: connection was lost: nothing can be committed, so the attempt fails and is retried.
_TX_ABORTED = _Outcome(
    "fail",
    error="the job's transaction was aborted (a failed statement that the task caught, or a lost"
    " connection); nothing was committed",
    error_type="TransactionAborted",
)
#: A task that committed or rolled back its job transaction itself: its writes may be committed
#: without the completion, so the job is not run again (a bug to fix in the task).
_TX_ENDED = _Outcome(
    "fail",
    error="the task committed or rolled back its job transaction itself; it must leave that to the worker",
    error_type="TransactionEnded",
    retryable=False,
)


@dataclass(slots=True)
class _Held:
    job: Job
    ctx: JobContext
    # waiting (for a runner) → running (user code) → finishing (recording the outcome), or
    # committing (completing it on its job transaction: its row stays locked until the commit,
    # so the heartbeat leaves it alone). Only a running job is ever cancelled (its runner is,
    # while it awaits user code): cancelling while the outcome is being written could lose a
    # release and later spend an attempt it should not. Waiting jobs are taken off the ready
    # queue and released in one batch instead.
    phase: str = "waiting"
    task: asyncio.Task[None] | None = None  # the runner running it
    cancelled: bool = False  # someone called cancel() on it: end it as cancelled, never release it
    thread: concurrent.futures.Future[Any] | None = None  # a def task's run in the thread pool
    # Loop time until which the lease surely holds: the claim's or the latest extension's
    # sending time plus the lease (the database's own expiry is later, never earlier).
    lease_until: float = 0.0

    @property
    def is_cancellable(self) -> bool:
        return self.phase == "running" and self.task is not None and not self.task.done()


class AsyncWorker:
    """Run tasks from one or more queues until stopped.

    Args:
        tasks: the tasks this worker runs (default: every task registered in the process).
        dsn: connection string (default: environment, see ``resolve_dsn``).
        queues: queues to serve, earlier ones first (default: the queues of ``tasks``).
        concurrency: jobs running at once.
        prefetch: extra jobs leased ahead of free slots (default: ``concurrency``).
        lease: how long a claim holds a job before the reaper may hand it to someone else;
            heartbeats extend it every ``lease / 3`` while the job runs.
        poll_interval: the polling floor; NOTIFY usually wakes the worker sooner.
        grace_period: on stop, how long running jobs may take before they are released.
        burst: exit once no job is due and none is running.
        listen: use LISTEN/NOTIFY (turn off behind PgBouncer in transaction mode).
        maintenance: create history partitions ahead and drop those past ``retention``.
        schedules: run the cron scheduler: store the ``@skiplock.cron`` schedules of this
            worker's tasks, and fire every due schedule in the database (any worker may; each
            tick is enqueued exactly once).
        install_signal_handlers: SIGTERM/SIGINT stop gracefully; a second one stops at once.
    """

    def __init__(
        self,
        tasks: Iterable[Task[Any]] | None = None,
        *,
        dsn: str | None = None,
        queues: Sequence[str] | None = None,
        concurrency: int = 10,
        prefetch: int | None = None,
        lease: timedelta = DEFAULT_LEASE,
        poll_interval: timedelta = DEFAULT_POLL_INTERVAL,
        reap_interval: timedelta = DEFAULT_REAP_INTERVAL,
        grace_period: timedelta = DEFAULT_GRACE_PERIOD,
        burst: bool = False,
        listen: bool = True,
        maintenance: bool = True,
        schedules: bool = True,
        maintenance_interval: timedelta = DEFAULT_MAINTENANCE_INTERVAL,
        retention: timedelta = DEFAULT_RETENTION,
        ack_batch: int = 1000,
        install_signal_handlers: bool = False,
        check_schema: bool = True,
        webhooks: bool = False,
        default_task: Task[Any] | None = None,
        pgbouncer: bool | None = None,
        listen_dsn: str | None = None,
    ) -> None:
        chosen = list(REGISTRY.values()) if tasks is None else list(tasks)
        # Runs the jobs of any task name this worker has no task for (skiplock.QueueWorker's
        # processor); without it such jobs fail as UnknownTask.
        self.default_task = default_task
        if webhooks:  # deliver webhooks too: a built-in task on its own queue
            chosen.append(
                Task(
                    self._deliver_webhook,
                    name=WEBHOOK_TASK,
                    queue=WEBHOOK_QUEUE,
                    max_attempts=12,
                    retry_backoff=exponential(5, cap=3600),
                    no_retry_on=(WebhookRejected,),
                )
            )
        if not chosen and default_task is None:
            raise ConfigError("no tasks to run: declare tasks with @skiplock.task or pass tasks=")
        self.tasks: dict[str, Task[Any]] = {}
        for t in chosen:
            if t.name in self.tasks and self.tasks[t.name] is not t:
                raise ConfigError(f"two tasks are named {t.name!r}")
            self.tasks[t.name] = t
        self.queues = list(
            dict.fromkeys(queues if queues else [t.queue for t in [*chosen, *filter(None, [default_task])]])
        )
        if webhooks and WEBHOOK_QUEUE not in self.queues:
            self.queues.append(WEBHOOK_QUEUE)
        if not self.queues:
            raise ConfigError("no queues to serve")
        # One runner coroutine and one thread per slot: beyond MAX_BATCH a process would spend its
        # memory on idle runners, and a claim could not fill them anyway.
        if not 1 <= concurrency <= MAX_BATCH:
            raise ConfigError(f"concurrency must be between 1 and {MAX_BATCH}, got {concurrency}")
        self.concurrency = concurrency
        self.prefetch = concurrency if prefetch is None else prefetch
        if not 0 <= self.prefetch <= MAX_BATCH:
            raise ConfigError(f"prefetch must be between 0 and {MAX_BATCH}, got {prefetch}")
        self.lease = positive("lease", lease)
        self.poll_interval = positive("poll_interval", poll_interval)
        self.reap_interval = positive("reap_interval", reap_interval)
        self.grace_period = grace_period
        self.maintenance_interval = positive("maintenance_interval", maintenance_interval)
        self.retention = retention
        self.burst = burst
        # Behind PgBouncer's transaction pooling LISTEN cannot work through it: listen on a
        # direct connection (listen_dsn) if one is given, else poll every poll_interval.
        self.pgbouncer = pgbouncer_mode(pgbouncer)
        self.listen_dsn = resolve_dsn(listen_dsn) if listen_dsn else None
        self.listen = listen and (not self.pgbouncer or self.listen_dsn is not None)
        self.maintenance = maintenance
        self.schedules = schedules
        self.ack_batch = max(1, min(ack_batch, MAX_BATCH))
        self.install_signal_handlers = install_signal_handlers
        self.check_schema = check_schema
        self.dsn = resolve_dsn(dsn)
        self.worker_id = uuid.uuid4()
        self.stats = WorkerStats()
        self.forced = False

        self._held: dict[int, _Held] = {}  # leased by us: until the outcome is recorded
        self._outcomes = 0  # outcomes recorded so far (burst mode: was a claim older than one?)
        self._active = 0  # claimed and not yet finished executing: what counts against capacity
        self._acks: list[tuple[_Held, Json]] = []
        self._acks_event = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._ready: asyncio.Queue[_Held] = asyncio.Queue()  # claimed, waiting for a runner
        self._busy = 0  # jobs a runner has taken and not yet finished (running or finishing)
        self._idle = asyncio.Event()  # set whenever _busy is 0
        self._idle.set()
        self._jobs_done_since_beat = 0
        self._threads: ThreadPoolExecutor | None = None
        self._thread_futures: set[concurrent.futures.Future[Any]] = set()
        self._executor: AsyncExecutor | None = None
        # Job transactions, opened only by tasks that ask, on pools of their own.
        self._transactions = JobTransactions(
            self.dsn, max_size=self.concurrency, options=connection_options(self.pgbouncer)
        )
        self._reads = _JobReads(self)
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop run() runs on
        self._listener: AsyncListener | None = None
        self._signals = 0
        self._starved = False  # the producer waits for free slots
        self._refill_at = refill_threshold(concurrency=self.concurrency, prefetch=self.prefetch)
        self._draining = False  # shutdown: the acker exits once nothing is left to flush
        self._acker_task: asyncio.Task[None] | None = None
        # Rate-limited queues: claim again this soon after a short claim (see rate_poll_s), while
        # claims keep finding jobs; refreshed with every heartbeat.
        self._rate_poll: float | None = None
        # Queues limited by running jobs (concurrency, per key): a finished job frees a slot.
        self._slot_limited: frozenset[str] = frozenset()
        self._last_hit = 0.0  # loop time of the last claim that returned jobs
        # Stored schedules that cannot fire, as (name, cron, tz): each is logged once.
        self._bad_schedules: set[tuple[str, str, str]] = set()

    async def __aenter__(self) -> AsyncWorker:
        self._background = asyncio.create_task(self.run(), name="skiplock-worker")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
        await self._background

    def __repr__(self) -> str:
        return (
            f"<skiplock.{type(self).__name__} {self.worker_id} queues={self.queues} dsn={redact(self.dsn)!r}>"
        )

    @property
    def has_stuck_threads(self) -> bool:
        """Whether sync task threads are still running (a thread cannot be cancelled).

        After a timeout or a shutdown past the grace period the job is failed or released, but
        its thread runs on; the CLI then exits with ``os._exit`` instead of waiting for it.
        """
        return any(not f.done() for f in list(self._thread_futures))  # the set shrinks from threads

    async def run(self) -> None:
        """Run until ``stop()``, a signal, or (burst mode) until nothing is due."""
        if self.check_schema:
            await AsyncMigrator(self.dsn).check()
        self._threads = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="skiplock-task")
        executor = AsyncExecutor.create(
            self.dsn,
            min_size=2,
            max_size=max(4, min(self.concurrency, 10)),
            timeout=10,
            application_name="skiplock-worker",
            options=connection_options(self.pgbouncer),
        )
        await executor.open(timeout=30)
        self._executor = executor
        self._transactions.start()
        loop = self._loop = asyncio.get_running_loop()
        if self.install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
        await self._db(
            statements.register_worker(
                self.worker_id, socket.gethostname(), os.getpid(), self.queues, self.concurrency
            )
        )
        try:
            await self._refresh_rate_limits()
        except SkiplockError as exc:  # the heartbeat reads them again
            log.warning("could not read rate limits: %s", exc)
        log.info(
            "worker %s started: queues=%s concurrency=%s tasks=%s",
            self.worker_id,
            ",".join(self.queues),
            self.concurrency,
            len(self.tasks),
        )
        self._acker_task = asyncio.create_task(self._acker(), name="skiplock-acker")
        runners = [
            asyncio.create_task(self._runner(), name=f"skiplock-runner-{i}") for i in range(self.concurrency)
        ]
        loops = [
            *runners,
            self._acker_task,
            asyncio.create_task(self._heartbeat_loop(), name="skiplock-heartbeat"),
            asyncio.create_task(self._reaper_loop(), name="skiplock-reaper"),
        ]
        if self.maintenance:
            loops.append(asyncio.create_task(self._maintenance_loop(), name="skiplock-maintenance"))
        if self.schedules:
            loops.append(asyncio.create_task(self._scheduler_loop(), name="skiplock-scheduler"))
        loops.append(asyncio.create_task(self._progress_loop(), name="skiplock-progress"))
        if self.listen:
            self._listener = AsyncListener(
                self.listen_dsn or self.dsn,
                self.queues,
                self._on_notify,
                self._wake,
                on_cancel_cb=self._on_cancel,
                on_done_cb=self._on_done,
            )
            loops.append(asyncio.create_task(self._listener.run(), name="skiplock-listener"))
        try:
            await self._producer()
            await self._shutdown()
        finally:
            if self._listener is not None:
                await self._listener.stop()
            for t in loops:
                t.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            try:
                await self._db(statements.deregister_worker(self.worker_id), attempts=1)
            except SkiplockError as exc:
                log.warning("could not deregister worker: %s", exc)
            try:
                await self._transactions.close()
            except Exception:
                log.exception("could not close the job transactions' pools")
            await executor.close()
            self._threads.shutdown(wait=False, cancel_futures=True)
            if self.install_signal_handlers:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            self._stopped.set()
            log.info("worker %s stopped: %s", self.worker_id, self.stats)

    async def stop(self, *, force: bool = False) -> None:
        """Stop claiming, let running jobs finish within the grace period, release the rest.

        With ``force``, running jobs are released at once instead.
        """
        if force:
            self.forced = True
        self._stopping.set()
        self._wake()

    async def wait_stopped(self) -> None:
        """Wait until ``run()`` has finished shutting down (for code that runs it in a task)."""
        await self._stopped.wait()

    # -- producer --------------------------------------------------------------------------

    async def _producer(self) -> None:
        executor = self._require_executor()
        backoff = 0.1
        while not self._stopping.is_set():
            n = claim_size(
                concurrency=self.concurrency,
                in_flight=self._active,
                prefetch=self.prefetch,
                max_batch=MAX_BATCH,
            )
            if n < self._refill_at:
                # Too little room for a worthwhile claim. Clear first: a set Event returns from
                # wait() without yielding, and old wake-ups (NOTIFYs) mean nothing while full.
                self._wakeup.clear()
                self._starved = True
                # Finishing jobs wake us at the refill threshold; the poll floor is a safety net.
                await self._wait_wakeup(self.poll_interval.total_seconds())
                self._starved = False
                continue
            self._wakeup.clear()
            outcomes_before = self._outcomes
            try:
                sent = asyncio.get_running_loop().time()
                rows = await executor.tuples(statements.claim(self.queues, self.worker_id, n, self.lease))
            except SkiplockError as exc:
                if not is_transient(exc):
                    raise
                log.warning("claim failed (%s); retrying in %.1fs", exc, backoff)
                await self._wait_wakeup(backoff)
                backoff = min(5.0, backoff * 2)
                continue
            backoff = 0.1
            jobs = [job_from_claim(r) for r in rows]
            if len(jobs) > 1:
                jobs.sort(key=_claim_order)
            self.stats.claimed += len(jobs)
            for job in jobs:
                self._start(job, sent + self.lease.total_seconds())
            now = asyncio.get_running_loop().time()
            if jobs:
                self._last_hit = now
            if len(jobs) < n:
                # Burst mode ends when nothing is due: only trust a claim that started after every
                # outcome was recorded (a retry due now may have been written while it ran).
                if self.burst and not self._held and not self._active and self._outcomes == outcomes_before:
                    return
                # Nothing more is due: sleep until NOTIFY, a freed slot (burst) or the poll floor;
                # sooner while a rate limit, not an empty queue, is what cut claims short.
                delay = poll_delay_s(self.poll_interval.total_seconds())
                if (
                    self._rate_poll is not None
                    and now - self._last_hit < 2 * self.poll_interval.total_seconds()
                ):
                    delay = min(delay, self._rate_poll)
                await self._wait_wakeup(delay)

    async def _wait_wakeup(self, timeout: float | None) -> None:
        # asyncio.timeout, not wait_for: no task is created per wait (a NOTIFY wakes us sooner).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wakeup.wait()

    def _wake(self) -> None:
        self._wakeup.set()

    def _on_notify(self, queue: str) -> None:
        self._wakeup.set()

    async def _deliver_webhook(
        self, webhook_id: int, event: str, job_id: int, queue: str, task: str, at: str
    ) -> dict[str, int]:
        """The built-in delivery task: sign with the webhook's secret (read now, never a job
        argument) and the database's clock, and POST from a thread."""
        rows = await self._db(statements.webhook_for_delivery(webhook_id), attempts=3)
        if not rows or not rows[0]["active"]:
            raise Fail(f"webhook {webhook_id} no longer exists")
        hook = rows[0]
        delivery = current_job().job.id
        payload = {
            "event": event,
            "job_id": job_id,
            "queue": queue,
            "task": task,
            "at": at,
            "delivery": delivery,
        }
        status = await asyncio.to_thread(
            webhook_post, hook["url"], hook["secret"], int(hook["now"]), delivery, payload
        )
        return {"status": status}

    def _on_done(self, queue: str) -> None:
        # Jobs finished somewhere in the fleet: a queue limited by running jobs has free slots now
        # (for other queues a finished job changes nothing a claim could use).
        if queue in self._slot_limited:
            self._wakeup.set()

    def _on_cancel(self, job_id: int) -> None:
        """cancel() was called on a job we hold: stop it if it is async and running, else flag it."""
        held = self._held.get(job_id)
        if held is None or held.cancelled or held.phase in ("finishing", "committing"):
            return
        held.cancelled = True
        held.ctx._cancel_requested = True  # what a sync task can see
        task = self.tasks.get(held.job.task) or self.default_task
        if held.is_cancellable and held.task is not None and task is not None and task.is_async:
            log.info("job %s: cancelled on request; stopping it", job_id, extra=_fields(held.job))
            held.task.cancel()

    def _on_signal(self, sig: int) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("received %s: stopping gracefully (again to stop at once)", signal.Signals(sig).name)
            self._stopping.set()
        else:
            log.warning("received %s again: stopping at once", signal.Signals(sig).name)
            self.forced = True
            self._cancel_running()
        self._wake()

    def _cancel_running(self) -> None:
        for held in list(self._held.values()):
            if held.is_cancellable and held.task is not None:
                held.ctx._cancel_requested = True
                held.task.cancel()

    # -- execution -------------------------------------------------------------------------

    def _start(self, job: Job, lease_until: float) -> None:
        held = _Held(
            job=job,
            ctx=JobContext(
                job=job, worker_id=self.worker_id, _tx_hook=self._transactions, _reads=self._reads
            ),
            lease_until=lease_until,
        )
        self._held[job.id] = held
        self._active += 1
        self._ready.put_nowait(held)

    async def _runner(self) -> None:
        me = asyncio.current_task()
        loop = asyncio.get_running_loop()
        lease_third = self.lease.total_seconds() / 3
        ran = 0
        while True:
            held = await self._ready.get()  # returns at once, without yielding, when a job is ready
            self._busy += 1
            self._idle.clear()
            if held.cancelled:
                outcome = _CANCELLED
            elif (
                self._stopping.is_set()
                or held.ctx.lease_lost
                # Most of the lease left (the usual case) needs no check.
                or (held.lease_until - loop.time() < lease_third and not await self._still_held(held))
            ):
                # Not run: the worker is stopping, or the job was reaped while it waited for a
                # runner (someone else may run it now).
                outcome = _Outcome("release")
            else:
                held.phase, held.task = "running", me
                # _run_task absorbs the job's own cancellation (on request or at shutdown) and
                # takes it back from this runner's task, so the runner carries on.
                if tracing.enabled():  # a span per execution, child of the enqueue's (if traced)
                    job = held.job
                    with tracing.consumer_span(
                        job.task, job.queue, job.id, job.attempt, job.trace_parent
                    ) as span:
                        outcome = await self._run_task(held)
                        if outcome.kind == "fail":
                            tracing.mark_failed(span, outcome.error or "failed")
                else:
                    outcome = await self._run_task(held)
            held.phase, held.task = "finishing", None
            self._done_running()
            try:
                tx = self._transactions.detach(held.ctx)
                if tx is None:
                    await self._finish(held, outcome)
                else:
                    await self._finish_in_transaction(held, outcome, tx)
            finally:
                self._busy -= 1
                if self._busy == 0:
                    self._idle.set()
            if self.burst:
                self._wake()  # burst mode exits once nothing is held
            ran += 1
            if ran % 64 == 0:
                await asyncio.sleep(0)  # a runner on a run of instant jobs lets the loop breathe

    async def _still_held(self, held: _Held) -> bool:
        """Whether a job about to start, whose lease has less than a third of its time left (the
        worker was frozen, or its heartbeats failed), is still ours: one heartbeat of the job
        tells, and extends it. A worker never starts a job someone else may be running."""
        lease_s = self.lease.total_seconds()
        sent = asyncio.get_running_loop().time()
        try:
            rows = await self._db(
                statements.heartbeat([held.job.id], [_token(held.job)], self.lease), attempts=3
            )
        except SkiplockError:
            return True  # unknown: run it, as if the check had not been made; the outcome tells
        if rows:
            held.lease_until = sent + lease_s
            return True
        self._lost_found(held)
        return False

    def _lost_found(self, held: _Held) -> None:
        """Mark a job's lease lost and log it, once; it is counted once, as its outcome."""
        if not held.ctx._lease_lost:
            held.ctx._lease_lost = True
            log.warning(
                "job %s: lease lost (reaped or finalized elsewhere)", held.job.id, extra=_fields(held.job)
            )

    def _done_running(self, n: int = 1) -> None:
        self._active -= n
        if self._starved and self.concurrency + self.prefetch - self._active >= self._refill_at:
            self._wake()  # enough slots are free for a worthwhile claim

    async def _run_task(self, held: _Held) -> _Outcome:
        job = held.job
        task = self.tasks.get(job.task) or self.default_task
        if task is None:
            return _Outcome(
                "fail",
                error=f"unknown task {job.task!r}: no task of that name is registered in this worker",
                error_type="UnknownTask",
                retryable=False,
            )
        try:
            kwargs = task.bind_args(job.args)
        except ConfigError as exc:
            return _Outcome("fail", error=str(exc), error_type="BadArguments", retryable=False)
        token = set_current(held.ctx)
        timeout = None if task.timeout is None else task.timeout.total_seconds()
        try:
            if task.is_async:
                result = await asyncio.wait_for(task.fn(**kwargs), timeout=timeout)
            else:
                if self._threads is None:  # pragma: no cover - run() creates it first
                    raise ConfigError("worker is not running")
                ctx = contextvars.copy_context()
                thread_future = self._threads.submit(ctx.run, functools.partial(task.fn, **kwargs))
                held.thread = thread_future
                self._thread_futures.add(thread_future)
                thread_future.add_done_callback(self._thread_futures.discard)
                result = await asyncio.wait_for(asyncio.wrap_future(thread_future), timeout=timeout)
        except TimeoutError:
            held.ctx._cancel_requested = True
            return _Outcome(
                "fail",
                error=f"task {task.name!r} exceeded its timeout of {task.timeout}",
                error_type="TimeoutError",
                retry_in=task.retry_delay(job),
            )
        except asyncio.CancelledError:
            # Cancelled on request, or by a shutdown past the grace period. Only the job is: its
            # runner carries on, so take the cancellation back from the runner's task.
            me = asyncio.current_task()
            if me is not None:
                me.uncancel()
            held.ctx._cancel_requested = True
            return _CANCELLED if held.cancelled else _Outcome("release")
        except Retry as exc:
            after = exc.after if exc.after is not None else task.retry_delay(job)
            return _Outcome("fail", error=exc.reason, error_type="Retry", retry_in=after)
        except Exception as exc:
            retryable = not isinstance(exc, Fail) and not isinstance(exc, task.no_retry_on)
            retry_in = task.retry_delay(job) if retryable else None
            return _Outcome(
                "fail",
                error=str(exc) or type(exc).__name__,
                error_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
                traceback="".join(traceback.format_exception(exc)),
                retry_in=retry_in,
                retryable=retryable,
            )
        finally:
            _reset(token)
        if result is not None and not isinstance(result, (str, int, float, bool)):
            try:
                statements.dumps(result)
            except ConfigError:
                log.warning("task %s returned a value that is not JSON; storing null", task.name)
                result = None
        return _Outcome("complete", result=result)

    async def _finish(self, held: _Held, outcome: _Outcome) -> None:
        job = held.job
        if log.isEnabledFor(logging.DEBUG):  # per job: only when asked for
            log.debug(
                "job %s (%s) attempt %s ran: %s",
                job.id,
                job.task,
                job.attempt,
                outcome.kind,
                extra=_fields(job),
            )
        if held.ctx.lease_lost:
            # The heartbeat found the lease lost and logged it: count it now, once, as the
            # job's outcome (whatever the task did, the database has refused it).
            self._held.pop(job.id, None)
            self._outcomes += 1
            self.stats.lost += 1
            log.debug("job %s: outcome discarded (lease lost)", job.id, extra=_fields(job))
            return
        if outcome.kind == "complete":
            self._acks.append((held, outcome.result))
            self._acks_event.set()
            return
        try:
            if outcome.kind == "release":
                rows, retried = await self._db_tried(statements.release([job.id], [_token(job)]), attempts=3)
                if rows or (retried and await self._recorded(held, "release")):
                    self.stats.released += 1
                else:
                    self._lost(held, "before it was released")
                return
            rows, retried = await self._db_tried(
                statements.fail(
                    job.id,
                    _token(job),
                    error=outcome.error,
                    error_type=outcome.error_type,
                    traceback=outcome.traceback,
                    retry_in=outcome.retry_in,
                    retryable=outcome.retryable,
                )
            )
            state = rows[0]["state"] if rows else None
            if state is None and retried:  # the first try may have landed and its reply been lost
                state = await self._recorded(held, "fail", outcome.error_type)
            if state is None:
                self._lost(held, "before its failure was recorded")
            elif state == "retryable":
                self.stats.retried += 1
                log.info(
                    "job %s (%s) failed attempt %s: %s",
                    job.id,
                    job.task,
                    job.attempt,
                    outcome.error,
                    extra=_fields(job),
                )
            else:
                self.stats.failed += 1
                log.warning("job %s (%s) %s: %s", job.id, job.task, state, outcome.error, extra=_fields(job))
        except SkiplockError as exc:
            log.error(
                "job %s: could not record its outcome (%s); its lease will expire",
                job.id,
                exc,
                extra=_fields(job),
            )
        finally:
            self._held.pop(job.id, None)
            self._outcomes += 1

    async def _finish_in_transaction(self, held: _Held, outcome: _Outcome, tx: TxConnection) -> None:
        """Finish a job whose task opened its job transaction: complete it on that transaction
        and commit both, or roll the task's writes back and take the usual way."""
        job = held.job
        if outcome.kind != "complete" or held.ctx.lease_lost:
            await self._transactions.abort(tx, held.thread)
            await self._finish(held, outcome)
            return
        held.phase = "committing"
        try:
            verdict = await self._transactions.commit_completion(
                tx, statements.complete([job.id], [_token(job)], [outcome.result])
            )
        except Exception as exc:
            self._held.pop(job.id, None)
            self._outcomes += 1
            log.error(
                "job %s: could not commit its transaction (%s); its writes and its completion stand"
                " or fall together: unless the commit landed, its lease will expire and it runs again",
                job.id,
                exc,
                extra=_fields(job),
            )
            return
        if verdict == "aborted":  # retried like an exception of the task, with its policy
            task = self.tasks.get(job.task) or self.default_task
            delay = None if task is None else task.retry_delay(job)
            await self._finish(held, replace(_TX_ABORTED, retry_in=delay))
            return
        if verdict == "ended":
            await self._finish(held, _TX_ENDED)
            return
        self._held.pop(job.id, None)
        self._outcomes += 1
        if verdict == "committed":
            self.stats.completed += 1
            self._jobs_done_since_beat += 1
        else:
            self._lost(held, "before completion was recorded; its transaction was rolled back")

    # -- background loops ------------------------------------------------------------------

    async def _acker(self) -> None:
        # Natural batching: while one flush is in flight, finished jobs pile up for the next.
        while True:
            await self._acks_event.wait()
            self._acks_event.clear()
            while self._acks:
                try:
                    await self._flush_acks()
                except Exception:  # never let the acker die: unacked leases would pile up
                    log.exception("unexpected error while acknowledging jobs")
            if self._draining:
                return

    async def _flush_acks(self) -> None:
        batch, self._acks = self._acks[: self.ack_batch], self._acks[self.ack_batch :]
        stmt = statements.complete(
            [h.job.id for h, _ in batch], [_token(h.job) for h, _ in batch], [r for _, r in batch]
        )
        unknown = False
        try:
            # Completions are retried until they land (or a forced stop): the work is done, and
            # an unrecorded completion would only run the job again once its lease expires.
            rows, retried = await self._db_tried(stmt, attempts=None, tuples=True)
        except SkiplockError as exc:
            log.error("could not acknowledge %s jobs (%s); their leases will expire", len(batch), exc)
            rows, retried, unknown = [], False, True
        done = {r[0] for r in rows}
        for held, _ in batch:
            if held.job.id in done or unknown:
                continue
            # A retried complete finds nothing for jobs the first try completed (its reply was
            # lost on the way): those are ours, not lost.
            if retried and await self._recorded(held, "complete"):
                done.add(held.job.id)
            else:
                self._lost(held, "before completion was recorded")
        self._outcomes += len(batch)
        for held, _ in batch:
            self._held.pop(held.job.id, None)
        self.stats.completed += len(done)
        self._jobs_done_since_beat += len(done)
        if self.burst:
            self._wake()

    async def _heartbeat_loop(self) -> None:
        interval = max(0.05, self.lease.total_seconds() / 3)
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + interval
        while True:
            # Between the lease extensions, the jobs done are reported every DONE_INTERVAL_S,
            # so the count in skiplock.workers moves while a worker drains a queue.
            await asyncio.sleep(max(0.0, min(DONE_INTERVAL_S, next_beat - loop.time())))
            try:
                if loop.time() >= next_beat:
                    next_beat = loop.time() + interval
                    await self._beat()
                elif self._jobs_done_since_beat:
                    await self._report_done()
            except SkiplockError as exc:
                log.warning("could not report the jobs done: %s", exc)
            except Exception:  # a dead heartbeat loop would get every job reaped
                log.exception("unexpected error in heartbeat")

    async def _report_done(self) -> None:
        """Beat the worker's own row with the jobs finished since the last report (re-register
        if the row is gone)."""
        done, self._jobs_done_since_beat = self._jobs_done_since_beat, 0
        try:
            alive = await self._db(statements.worker_heartbeat(self.worker_id, done), attempts=1)
        except SkiplockError:
            self._jobs_done_since_beat += done  # reported with the next beat
            raise
        if alive and not alive[0]["alive"]:
            await self._db(
                statements.register_worker(
                    self.worker_id, socket.gethostname(), os.getpid(), self.queues, self.concurrency
                ),
                attempts=1,
            )

    async def _progress_loop(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_S)
            try:
                await self._send_progress()
            except SkiplockError as exc:
                log.warning("could not record progress: %s", exc)
            except Exception:
                log.exception("unexpected error while recording progress")

    async def _send_progress(self) -> None:
        """Send the latest progress report of every held job that reported since the last send."""
        fresh = [
            (h, h.ctx._progress)
            for h in list(self._held.values())
            if h.ctx._progress is not h.ctx._progress_sent and h.phase != "committing"
        ]
        reports = [(h, p) for h, p in fresh if p is not None]
        if not reports:
            return
        await self._db(
            statements.set_progress(
                [h.job.id for h, _ in reports],
                [_token(h.job) for h, _ in reports],
                [p[0] for _, p in reports],
                [p[1] for _, p in reports],
            ),
            attempts=1,
        )
        self.stats.progress_batches += 1
        for h, p in reports:
            h.ctx._progress_sent = p

    async def _refresh_rate_limits(self) -> None:
        rows = await self._db(statements.rate_limits(self.queues), attempts=1)
        buckets = [
            (float(r["rate_limit"]), int(r["rate_burst"])) for r in rows if r["rate_limit"] is not None
        ]
        buckets += [
            (float(r["key_rate_limit"]), int(r["key_rate_burst"])) for r in rows if r["key_rate_limit"]
        ]
        self._rate_poll = rate_poll_s(buckets, self.poll_interval.total_seconds())
        self._slot_limited = frozenset(r["name"] for r in rows if r["slot_limited"])

    async def _beat(self) -> None:
        # Not a job being committed on its job transaction: that transaction holds its row
        # (the reaper skips it) and the heartbeat would wait for the commit.
        held = [h for h in list(self._held.values()) if h.phase != "committing"]
        sent = asyncio.get_running_loop().time()
        try:
            if held:
                rows = await self._db(
                    statements.heartbeat([h.job.id for h in held], [_token(h.job) for h in held], self.lease),
                    attempts=1,
                )
                extended = {int(r["id"]) for r in rows}
                for h in held:
                    if h.job.id in extended:
                        h.lease_until = sent + self.lease.total_seconds()
                    # A finishing job's outcome may have been recorded while this heartbeat ran:
                    # its own complete/fail reports whether the lease was really lost.
                    elif h.job.id in self._held and h.phase != "finishing":
                        self._lost_found(h)
            await self._report_done()
        except SkiplockError as exc:
            log.warning("heartbeat failed: %s", exc)
        # Riders on the heartbeat's schedule, after it and each on its own: a failure here must
        # never cost a lease extension.
        try:
            if held:
                # Polling fallback for cancellations whose NOTIFY we missed.
                flagged = await self._db(statements.cancel_requested([h.job.id for h in held]), attempts=1)
                for r in flagged:
                    self._on_cancel(int(r["id"]))
        except SkiplockError as exc:
            log.warning("could not check for cancellations: %s", exc)
        try:
            await self._refresh_rate_limits()
        except SkiplockError as exc:
            log.warning("could not read rate limits: %s", exc)

    async def _reaper_loop(self) -> None:
        while True:
            await asyncio.sleep(poll_delay_s(self.reap_interval.total_seconds(), jitter=0.2))
            try:
                rows = await self._db(statements.reap(), attempts=1)
                if rows:
                    log.info("reaped %s jobs with expired leases", len(rows))
            except SkiplockError as exc:
                log.warning("reap failed: %s", exc)
            except Exception:
                log.exception("unexpected error in reaper")

    async def _maintenance_loop(self) -> None:
        while True:
            try:
                await self._db(statements.ensure_partitions(), attempts=1)
                dropped = await self._db(statements.drop_partitions(self.retention), attempts=1)
                if dropped:
                    log.info("dropped history partitions %s", [r["name"] for r in dropped])
            except SkiplockError as exc:
                log.warning("partition maintenance failed: %s", exc)
            except Exception:
                log.exception("unexpected error in partition maintenance")
            await asyncio.sleep(poll_delay_s(self.maintenance_interval.total_seconds(), jitter=0.2))

    async def _scheduler_loop(self) -> None:
        for spec in CRON_REGISTRY.values():
            if spec.task in self.tasks:
                task = self.tasks[spec.task]
                stmt = statements.upsert_schedule(
                    spec.name, spec.cron, spec.task, queue=spec.queue, args=spec.args, tz=spec.tz,
                    priority=task.priority, max_attempts=task.max_attempts, catch_up=spec.catch_up,
                )  # fmt: skip
                try:
                    await self._db(stmt)
                except SkiplockError as exc:
                    log.error("could not store schedule %s: %s", spec.name, exc)
        while True:
            wait = MAX_SCHEDULER_SLEEP_S
            try:
                wait = await self._fire_due_schedules()
            except SkiplockError as exc:
                log.warning("scheduler round failed: %s", exc)
            except Exception:
                log.exception("unexpected error in the scheduler")
            await asyncio.sleep(wait)

    async def _fire_due_schedules(self) -> float:
        """Hand every schedule's due ticks to the database; return how long to sleep."""
        wait = MAX_SCHEDULER_SLEEP_S
        rows = await self._db(statements.list_schedules(), attempts=1)
        # Forget what was reported about schedules since fixed or deleted: reported again if broken again.
        current = {(r["name"], r["cron"], r["tz"]) for r in rows}
        self._bad_schedules &= current
        for row in rows:
            if row["paused"]:
                continue
            now, name = row["db_now"], row["name"]
            # One schedule that cannot be read (written by another client, or by an older
            # version of the database's checks) must not stop the others: skip it, say so once.
            why = cron_problem(row["cron"], row["tz"], now)
            if why is not None:
                key = (name, row["cron"], row["tz"])
                if key not in self._bad_schedules:
                    self._bad_schedules.add(key)
                    log.error(
                        "schedule %s cannot fire and is skipped: %s; fix it with skiplock.upsert_schedule()"
                        " or delete it (skiplock schedules delete %s)",
                        name,
                        why,
                        name,
                    )
                continue
            # Ticks older than catch_up would be skipped by the database anyway: start after them.
            ticks = cron_ticks(row["cron"], row["tz"], max(row["last_tick"], now - row["catch_up"]), now)
            if ticks:
                try:
                    fired = await self._db(statements.fire_schedule(name, ticks), attempts=1)
                except InvalidInput as exc:  # its task, queue or args refused: the others go on
                    key = (name, row["cron"], row["tz"])
                    if key not in self._bad_schedules:
                        self._bad_schedules.add(key)
                        log.error("schedule %s cannot fire and is skipped: %s", name, exc)
                    continue
                if fired:
                    log.info(
                        "schedule %s: enqueued %s tick(s), latest %s", name, len(fired), fired[-1]["tick"]
                    )
                if len(ticks) == MAX_TICKS:
                    wait = 0.0  # more catch-up to do
            upcoming = next_cron_tick(row["cron"], row["tz"], max([now, *ticks]))
            wait = min(wait, (upcoming - now).total_seconds() + SCHEDULER_MARGIN_S)
        return max(0.0, wait)

    # -- shutdown --------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        loop = asyncio.get_running_loop()
        # Jobs claimed but not started are released at once, in one batch (no attempt spent).
        waiting: list[_Held] = []
        while not self._ready.empty():
            waiting.append(self._ready.get_nowait())
        if waiting:
            self._done_running(len(waiting))
            await self._release_unstarted(waiting)
        if not self._idle.is_set() and not self.forced:
            log.info("waiting up to %s for %s running jobs", self.grace_period, self._busy)
            deadline = loop.time() + max(0.0, self.grace_period.total_seconds())
            # Short slices so that a second signal (forced) ends the wait at once.
            while not self._idle.is_set() and not self.forced and loop.time() < deadline:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), timeout=min(0.2, deadline - loop.time()))
        self._cancel_running()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=5)
        # Let the acker finish every flush, including one already in flight.
        self._draining = True
        self._acks_event.set()
        if self._acker_task is not None and not self._acker_task.done():
            await asyncio.wait({self._acker_task}, timeout=None if not self.forced else 5)

    async def _release_unstarted(self, waiting: list[_Held]) -> None:
        try:
            rows, retried = await self._db_tried(
                statements.release([h.job.id for h in waiting], [_token(h.job) for h in waiting]), attempts=3
            )
            released = {int(r["id"]) for r in rows}
            for h in waiting:
                if h.job.id in released or (retried and await self._recorded(h, "release")):
                    self.stats.released += 1
                else:
                    self._lost(h, "before it was released")
        except SkiplockError as exc:
            log.error("could not release %s unstarted jobs (%s); their leases will expire", len(waiting), exc)
        finally:
            for h in waiting:
                self._held.pop(h.job.id, None)
            self._outcomes += len(waiting)

    def _lost(self, held: _Held, when: str) -> None:
        """Count a lease the database refused (reaped, then maybe run elsewhere): once per job."""
        self.stats.lost += 1
        if not held.ctx._lease_lost:  # not found and logged already
            held.ctx._lease_lost = True
            log.warning("job %s: lease lost %s", held.job.id, when, extra=_fields(held.job))

    async def _recorded(self, held: _Held, kind: str, error_type: str | None = None) -> str | None:
        """Whether this worker's ``kind`` of outcome for ``held`` is in the database: after a
        retried statement found no job, the first try may have been committed and its reply
        lost. A read of the job (live or in history); returns its state then, else None."""
        try:
            rows = await self._db(statements.get_job(held.job.id), attempts=3)
        except SkiplockError as exc:
            log.warning("job %s: could not check its outcome (%s)", held.job.id, exc, extra=_fields(held.job))
            return None
        return outcome_recorded(rows[0] if rows else None, held.job.attempt, self.worker_id, kind, error_type)

    # -- plumbing --------------------------------------------------------------------------

    def _require_executor(self) -> AsyncExecutor:
        if self._executor is None:
            raise ConfigError("worker is not running")
        return self._executor

    async def _db(
        self, stmt: statements.BoundStatement, *, attempts: int | None = 5, tuples: bool = False
    ) -> list[Any]:
        """Run a statement, retrying connection errors with backoff (the pool reconnects).

        ``attempts=None`` retries until it succeeds or the worker is stopped by force. Rows are
        dicts, or plain tuples with ``tuples`` (the hot path).
        """
        rows, _ = await self._db_tried(stmt, attempts=attempts, tuples=tuples)
        return rows

    async def _db_tried(
        self, stmt: statements.BoundStatement, *, attempts: int | None = 5, tuples: bool = False
    ) -> tuple[list[Any], bool]:
        """:meth:`_db`, and whether it took more than one try: then an earlier try may have
        been committed by the server even though its reply never came back."""
        executor = self._require_executor()
        delay = 0.05
        attempt = 0
        while True:
            attempt += 1
            try:
                return await (executor.tuples(stmt) if tuples else executor.all(stmt)), attempt > 1
            except SkiplockError as exc:
                if not is_transient(exc):
                    raise
                if (attempts is not None and attempt >= attempts) or self.forced:
                    raise DatabaseUnavailable(str(exc)) from exc
                log.warning("%s failed (%s); retrying in %.2fs", stmt.name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)


class _JobReads:
    """What a running task may read through its worker (``current_job().parent_results()``):
    on the worker's pool, from the event loop, or from a ``def`` task's thread."""

    def __init__(self, worker: AsyncWorker) -> None:
        self._worker = worker

    async def aparent_results(self, job_id: int) -> list[ParentResult]:
        rows = await self._worker._db(statements.parent_results(job_id))
        return [parent_result_from_row(r) for r in rows]

    def parent_results(self, job_id: int) -> list[ParentResult]:
        loop = self._worker._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            raise ConfigError("parent_results() is for def tasks; an async def task awaits aparent_results()")
        return asyncio.run_coroutine_threadsafe(self.aparent_results(job_id), loop).result()


def outcome_recorded(
    row: dict[str, Any] | None, attempt: int, worker_id: uuid.UUID, kind: str, error_type: str | None = None
) -> str | None:
    """Decide from the job's row (``skiplock.jobs``) whether a worker's outcome of ``attempt``
    was recorded; return the job's state if so, else None.

    A completion: the job is completed at that attempt by that worker. A failure: the job's
    errors hold that attempt's entry from that worker with its error type (the reaper's own
    entry says LeaseExpired). A release: the job is waiting again with the attempt given back.
    """
    if row is None:
        return None
    state = str(row["state"])
    if kind == "complete":
        done = state == "completed" and row["attempt"] == attempt and row["worker_id"] == worker_id
        return state if done else None
    if kind == "release":
        released = state in ("available", "scheduled") and row["attempt"] == attempt - 1
        return state if released else None
    for entry in row["errors"] or []:
        if (
            entry.get("attempt") == attempt
            and entry.get("worker_id") == str(worker_id)
            and entry.get("type") == error_type
        ):
            # Retried and claimed again since: that retry was ours.
            return state if row["attempt"] == attempt else "retryable"
    return None


def _claim_order(job: Job) -> tuple[int, Any, int]:
    return (-job.priority, job.run_at, job.id)


def _token(job: Job) -> uuid.UUID:
    if job.lease_token is None:  # pragma: no cover - claim always sets it
        raise ConfigError(f"job {job.id} has no lease token")
    return job.lease_token


def _reset(token: contextvars.Token[JobContext]) -> None:
    with contextlib.suppress(ValueError):  # reset from another context
        _CURRENT.reset(token)
