"""AsyncWorker: claim jobs in batches, run them, acknowledge them in batches.

The worker assembles its parts, each an asyncio task named ``skiplock-<part>``:

- the **producer** (``producer.py``) claims jobs when there is room and sleeps until a NOTIFY,
  a freed slot or the poll floor;
- ``concurrency`` long-lived **runners** (``runners.py``) take claimed jobs and run each
  through the **executor** (``executor.py``): ``def`` tasks on threads (``threads.py``), ``async def``
  tasks on the loop;
- the **completer** (``completer.py``) records outcomes, completions in batches on their own
  connection; a task that opened its job transaction is completed on it
  (``transactional.py``);
- the **lease keeper** (``lease.py``) extends every held lease every lease/3;
- **maintenance services** (``maintenance.py``): the reaper, partition upkeep, the cron scheduler;
- the **listener** (``skiplock._driver.listener_async``) holds the LISTEN connection.

What they share is the in-flight registry (``inflight.py``); what they report is in
``signals``, for code that waits on the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import uuid
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from skiplock._core.text import ESCAPE_ARGS
from skiplock._driver.conninfo import resolve_dsn
from skiplock._driver.listener_async import AsyncListener
from skiplock.context import JobContext
from skiplock.cron import CRON_REGISTRY
from skiplock.errors import ConfigError, SkiplockError
from skiplock.migrate_async import AsyncMigrator
from skiplock.models import Job
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
from skiplock.worker.completer import Completer
from skiplock.worker.database import JobReads, WorkerDatabase, open_pool
from skiplock.worker.inflight import Held, InFlight, Phase, WorkerStats, fields
from skiplock.worker.lease import LeaseKeeper
from skiplock.worker.maintenance import PartitionKeeper, Reaper, Scheduler, Service
from skiplock.worker.producer import Producer
from skiplock.worker.runners import Runners
from skiplock.worker.signals import WorkerSignals
from skiplock.worker.transactional import JobTransactions
from skiplock.worker.webhook_delivery import WEBHOOK_QUEUE, delivery_task

__all__ = ["AsyncWorker", "WorkerStats"]

log = logging.getLogger("skiplock.worker")
log.addFilter(ESCAPE_ARGS)  # job errors and names are logged escaped, on one line


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
            chosen.append(delivery_task(lambda: self._database))
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

        self.inflight = InFlight(self.stats)
        self.signals = WorkerSignals()
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._database = WorkerDatabase(forced=lambda: self.forced)
        # Job transactions, opened only by tasks that ask, on pools of their own.
        self._transactions = JobTransactions(
            self.dsn, max_size=self.concurrency, options=connection_options(self.pgbouncer)
        )
        self._reads = JobReads(self._database, lambda: self._loop)
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop run() runs on
        self._listener: AsyncListener | None = None
        self._signals = 0
        self._producer = Producer(
            self._database, self.inflight, self.stats, self.signals,
            queues=self.queues, worker_id=self.worker_id, concurrency=self.concurrency,
            prefetch=self.prefetch, lease=self.lease, poll_interval=self.poll_interval,
            burst=self.burst, stopping=self._stopping, start=self._start,
        )  # fmt: skip
        self._completer = Completer(
            self._database, self.inflight, self.stats, self.signals, self._transactions,
            worker_id=self.worker_id, tasks=self.tasks, default_task=self.default_task,
            ack_batch=self.ack_batch, on_outcome=self._producer.wake if self.burst else None,
        )  # fmt: skip
        self._leases = LeaseKeeper(
            self._database, self.inflight, worker_id=self.worker_id, queues=self.queues,
            concurrency=self.concurrency, lease=self.lease, on_cancel=self._on_cancel,
            riders=[("read rate limits", self._producer.refresh_limits)],
        )  # fmt: skip
        self._runners = Runners(
            self.inflight, self.stats, self._producer, self._completer, self._transactions,
            tasks=self.tasks, default_task=self.default_task, concurrency=self.concurrency,
            lease_s=self.lease.total_seconds(), burst=self.burst, stopping=self._stopping,
            still_held=self._leases.still_held,
        )  # fmt: skip

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
    def held(self) -> int:
        """Jobs leased by this worker whose outcome is not recorded yet (running, prefetched or
        finishing)."""
        return len(self.inflight)

    @property
    def has_stuck_threads(self) -> bool:
        """Whether sync task threads are still running (a thread cannot be cancelled).

        After a timeout or a shutdown past the grace period the job is failed or released, but
        its thread runs on; the CLI then exits with ``os._exit`` instead of waiting for it.
        """
        return self._runners.has_stuck_threads

    async def run(self) -> None:
        """Run until ``stop()``, a signal, or (burst mode) until nothing is due."""
        if self.check_schema:
            await AsyncMigrator(self.dsn).check()
        pool = await open_pool(self.dsn, concurrency=self.concurrency, pgbouncer=self.pgbouncer)
        database = self._database
        database.attach(pool)
        self._transactions.start()
        loop = self._loop = asyncio.get_running_loop()
        if self.install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
        await self._leases.register()
        try:
            await self._producer.refresh_limits()
        except SkiplockError as exc:  # the heartbeat reads them again
            log.warning("could not read rate limits: %s", exc)
        log.info(
            "worker %s started: queues=%s concurrency=%s tasks=%s",
            self.worker_id,
            ",".join(self.queues),
            self.concurrency,
            len(self.tasks),
        )
        acker = asyncio.create_task(self._completer.run(), name="skiplock-acker")
        loops = [
            *self._runners.start(),
            acker,
            asyncio.create_task(self._completer.run_progress(), name="skiplock-progress"),
            asyncio.create_task(self._leases.run(), name="skiplock-heartbeat"),
        ]
        services: list[Service] = [Reaper(database, self.reap_interval, self.signals.reaped)]
        if self.maintenance:
            services.append(
                PartitionKeeper(
                    database, self.maintenance_interval, self.signals.maintained, retention=self.retention
                )
            )
        if self.schedules:
            specs = list(CRON_REGISTRY.values())
            services.append(Scheduler(database, self.signals.scheduled, specs=specs, tasks=self.tasks))
        loops += [service.start() for service in services]
        listener = None
        if self.listen:
            listener = AsyncListener(
                self.listen_dsn or self.dsn,
                self.queues,
                self._producer.on_notify,
                self._on_listening,
                on_cancel_cb=self._on_cancel,
                on_done_cb=self._producer.on_done,
                on_lost_cb=self.signals.listening.clear,
            )
            self._listener = listener
            loops.append(asyncio.create_task(listener.run(), name="skiplock-listener"))
        try:
            await self._producer.run()
            await self._shutdown(acker)
        finally:
            if listener is not None:
                await listener.stop()
            for t in loops:
                t.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            try:
                await self._leases.deregister()
            except SkiplockError as exc:
                log.warning("could not deregister worker: %s", exc)
            try:
                await self._transactions.close()
            except Exception:
                log.exception("could not close the job transactions' pools")
            database.attach(None)
            await pool.close()
            self._runners.close()
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
        self._producer.wake()

    async def wait_stopped(self) -> None:
        """Wait until ``run()`` has finished shutting down (for code that runs it in a task)."""
        await self._stopped.wait()

    # -- events ----------------------------------------------------------------------------

    def _on_listening(self) -> None:
        # Connected (again): poll at once for what was enqueued while nobody listened.
        if self._listener is not None and self._listener.reconnects:
            self.signals.reconnected.fire()
        self.signals.listening.set()
        self._producer.wake()

    def _on_cancel(self, job_id: int) -> None:
        """cancel() was called on a job we hold: stop it if it is async and running, else flag it."""
        held = self.inflight.get(job_id)
        if held is None or held.cancelled or held.phase in (Phase.FINISHING, Phase.COMMITTING):
            return
        held.cancelled = True
        held.ctx._cancel_requested = True  # what a sync task can see
        task = self.tasks.get(held.job.task) or self.default_task
        if held.is_cancellable and held.task is not None and task is not None and task.is_async:
            log.info("job %s: cancelled on request; stopping it", job_id, extra=fields(held.job))
            held.task.cancel()

    def _on_signal(self, sig: int) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("received %s: stopping gracefully (again to stop at once)", signal.Signals(sig).name)
            self._stopping.set()
        else:
            log.warning("received %s again: stopping at once", signal.Signals(sig).name)
            self.forced = True
            self._runners.cancel_running()
        self._producer.wake()

    # -- execution -------------------------------------------------------------------------

    def _start(self, job: Job, lease_until: float) -> None:
        held = Held(
            job=job,
            ctx=JobContext(
                job=job, worker_id=self.worker_id, _tx_hook=self._transactions, _reads=self._reads
            ),
            lease_until=lease_until,
        )
        self.inflight.hold(held)
        self._runners.ready.put(held)

    async def _shutdown(self, acker: asyncio.Task[None]) -> None:
        loop = asyncio.get_running_loop()
        # Jobs claimed but not started are released at once, in one batch (no attempt spent).
        waiting = self._runners.ready.take_all()
        if waiting:
            self._runners.executed(len(waiting))
            await self._completer.release_unstarted(waiting)
        if not self.inflight.idle.is_set() and not self.forced:
            log.info("waiting up to %s for %s running jobs", self.grace_period, self.inflight.busy)
            deadline = loop.time() + max(0.0, self.grace_period.total_seconds())
            # Short slices so that a second signal (forced) ends the wait at once.
            while not self.inflight.idle.is_set() and not self.forced and loop.time() < deadline:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(
                        self.inflight.idle.wait(), timeout=min(0.2, deadline - loop.time())
                    )
        self._runners.cancel_running()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.inflight.idle.wait(), timeout=5)
        # Let the acker finish every flush, including one already in flight.
        self._completer.drain()
        if not acker.done():
            await asyncio.wait({acker}, timeout=None if not self.forced else 5)
