"""The runners: ``concurrency`` long-lived coroutines that take claimed jobs and run them.

No asyncio task is created per job. A runner takes the next ready job without a trip through
the event loop when one is there, runs it through the executor (``executor.py``: ``def`` tasks
on up to ``concurrency`` threads (``threads.py``), ``async def`` tasks on the loop) and hands the
outcome to the completer. Ready jobs wake runners one at a time (:class:`ReadyJobs`), so a claim
of 500 instant jobs does not schedule 500 runners that would find nothing left to do.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from skiplock._core import tracing
from skiplock._core.outcome import CANCELLED, RELEASE, Outcome, OutcomeKind
from skiplock.errors import ConfigError
from skiplock.task import Task
from skiplock.worker import executor
from skiplock.worker.completer import Completer
from skiplock.worker.inflight import Held, InFlight, Phase, WorkerStats
from skiplock.worker.producer import Producer
from skiplock.worker.threads import TaskThreads, ThreadRun
from skiplock.worker.transactional import JobTransactions

__all__ = ["ReadyJobs", "Runners"]

log = logging.getLogger("skiplock.worker")


class ReadyJobs:
    """Claimed jobs waiting for a runner, first in first out.

    Unlike ``asyncio.Queue``, which wakes one waiting runner per job put, it keeps at most one
    runner woken and not yet running: a runner that takes a job while more are ready wakes the
    next one. A run of instant jobs is worked through by the runners already awake; every time a
    task awaits, another runner is woken to take the next job, so ``concurrency`` jobs that wait on
    I/O still run at once.
    """

    def __init__(self) -> None:
        self._jobs: collections.deque[Held] = collections.deque()
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._woken = False  # a runner was woken and has not taken a job yet

    def __len__(self) -> int:
        return len(self._jobs)

    def put(self, held: Held) -> None:
        self._jobs.append(held)
        if not self._woken:
            self._wake_one()

    async def take(self) -> Held:
        """The next job, at once (without yielding) when one is ready."""
        while not self._jobs:
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in self._waiting:
                    self._waiting.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    self._woken = False
                    if self._jobs:  # pass the wake-up on: the job it was for is still there
                        self._wake_one()
                raise
            self._woken = False
        held = self._jobs.popleft()
        if self._jobs and not self._woken:
            self._wake_one()  # more are ready: another runner takes the next if this one waits
        return held

    def take_all(self) -> list[Held]:
        """Every ready job, taken off (shutdown: they are released unrun)."""
        jobs = list(self._jobs)
        self._jobs.clear()
        return jobs

    def _wake_one(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._woken = True
                return


class Runners:
    """The worker's runners, its ready jobs and its task threads."""

    def __init__(
        self,
        inflight: InFlight,
        stats: WorkerStats,
        producer: Producer,
        completer: Completer,
        transactions: JobTransactions,
        *,
        tasks: Mapping[str, Task[Any]],
        default_task: Task[Any] | None,
        concurrency: int,
        lease_s: float,
        burst: bool,
        stopping: asyncio.Event,
        still_held: Callable[[Held], Awaitable[bool]],
    ) -> None:
        self.inflight = inflight
        self.stats = stats
        self.producer = producer
        self.completer = completer
        self.transactions = transactions
        self.tasks = tasks
        self.default_task = default_task
        self.concurrency = concurrency
        self.lease_s = lease_s
        self.burst = burst
        self.stopping = stopping
        self.still_held = still_held
        self.ready = ReadyJobs()
        self.threads: TaskThreads | None = None
        self.thread_runs: set[ThreadRun] = set()

    def start(self) -> list[asyncio.Task[None]]:
        """Start the task threads and the runners; return the runners' tasks."""
        self.threads = TaskThreads(self.concurrency)
        return [
            asyncio.create_task(self._run(), name=f"skiplock-runner-{i}") for i in range(self.concurrency)
        ]

    def close(self) -> None:
        """Let the task threads end without waiting: a thread past its timeout cannot be stopped."""
        if self.threads is not None:
            self.threads.shutdown()

    @property
    def has_stuck_threads(self) -> bool:
        return any(not r.done() for r in list(self.thread_runs))  # the set shrinks from threads

    def executed(self, n: int = 1) -> None:
        self.inflight.executed(n)
        self.producer.slots_freed()

    def cancel_running(self) -> None:
        for held in self.inflight.held():
            if held.is_cancellable and held.task is not None:
                held.ctx._cancel_requested = True
                held.task.cancel()

    async def _run(self) -> None:
        me = asyncio.current_task()
        producer, ready, inflight = self.producer, self.ready, self.inflight
        loop = asyncio.get_running_loop()
        lease_third = self.lease_s / 3
        ran = 0
        while True:
            held = await ready.take()
            inflight.take()
            if held.cancelled:
                outcome = CANCELLED
            elif (
                self.stopping.is_set()
                or held.ctx.lease_lost
                # Most of the lease left (the usual case) needs no check.
                or (held.lease_until - loop.time() < lease_third and not await self.still_held(held))
            ):
                # Not run: the worker is stopping, or the job was reaped while it waited for a
                # runner (someone else may run it now).
                outcome = RELEASE
            else:
                held.phase, held.task = Phase.RUNNING, me
                # _run_task absorbs the job's own cancellation (on request or at shutdown) and
                # takes it back from this runner's task, so the runner carries on.
                if producer.traced:  # a span per execution, child of the enqueue's (if traced)
                    job = held.job
                    with tracing.consumer_span(
                        job.task, job.queue, job.id, job.attempt, job.trace_parent
                    ) as span:
                        outcome = await self._run_task(held)
                        if outcome.kind is OutcomeKind.FAIL:
                            tracing.mark_failed(span, outcome.error or "failed")
                else:
                    outcome = await self._run_task(held)
            held.phase, held.task = Phase.FINISHING, None
            self.executed()
            try:
                tx = self.transactions.detach(held.ctx)
                if tx is None:
                    await self.completer.finish(held, outcome)
                else:
                    self.stats.transactions += 1
                    await self.completer.finish_in_transaction(held, outcome, tx)
            finally:
                inflight.put_down()
            if self.burst:
                producer.wake()  # burst mode exits once nothing is held
            ran += 1
            if ran % 64 == 0:
                await asyncio.sleep(0)  # a runner on a run of instant jobs lets the loop breathe

    async def _run_task(self, held: Held) -> Outcome:
        bound = executor.bind(self.tasks, self.default_task, held.job)
        if isinstance(bound, Outcome):
            return bound
        if self.threads is None:  # pragma: no cover - start() creates it first
            raise ConfigError("worker is not running")

        def on_thread(run: ThreadRun) -> None:
            held.thread = run
            self.thread_runs.add(run)
            run.add_done_callback(self.thread_runs.discard)

        return await executor.run(
            bound, held.ctx, threads=self.threads, on_thread=on_thread, cancelled=lambda: held.cancelled
        )
