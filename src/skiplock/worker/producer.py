"""The producer: claims jobs in batches when there is room, and sleeps until there is work.

It claims up to ``concurrency + prefetch - active`` jobs in one call, then waits for a NOTIFY,
a freed slot or the poll floor, whichever comes first. A claim that fails (the database is
away) is retried with its own backoff. Rate limits and slot limits are read here too: they
decide how soon a short claim is worth repeating.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from skiplock._core import queries, tracing
from skiplock._core.claiming import batch_cap, claim_size, poll_delay_s, rate_poll_s, refill_threshold
from skiplock._core.rows import job_from_claim
from skiplock._driver.errors import is_transient
from skiplock.errors import SkiplockError
from skiplock.models import Job
from skiplock.settings import MAX_BATCH
from skiplock.worker.database import WorkerDatabase
from skiplock.worker.inflight import InFlight, WorkerStats
from skiplock.worker.signals import WorkerSignals

__all__ = ["Producer"]

log = logging.getLogger("skiplock.worker")


class Producer:
    def __init__(
        self,
        database: WorkerDatabase,
        inflight: InFlight,
        stats: WorkerStats,
        signals: WorkerSignals,
        *,
        queues: Sequence[str],
        worker_id: uuid.UUID,
        concurrency: int,
        prefetch: int,
        lease: timedelta,
        poll_interval: timedelta,
        burst: bool,
        stopping: asyncio.Event,
        start: Callable[[Job, float], None],
    ) -> None:
        self.database = database
        self.inflight = inflight
        self.stats = stats
        self.signals = signals
        self.queues = list(queues)
        self.worker_id = worker_id
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.lease = lease
        self.poll_interval_s = poll_interval.total_seconds()
        self.burst = burst
        self.stopping = stopping
        self.start = start
        self.refill_at = refill_threshold(concurrency=concurrency, prefetch=prefetch)
        self.batch_cap = batch_cap(concurrency=concurrency, prefetch=prefetch, max_batch=MAX_BATCH)
        self.wakeup = asyncio.Event()
        self.starved = False  # waiting for free slots
        # Rate-limited queues: claim again this soon after a short claim (see rate_poll_s), while
        # claims keep finding jobs; refreshed with every heartbeat.
        self.rate_poll: float | None = None
        # Queues limited by running jobs (concurrency, per key): a finished job frees a slot.
        self.slot_limited: frozenset[str] = frozenset()
        self.last_hit = 0.0  # loop time of the last claim that returned jobs
        # Whether spans go anywhere (an OpenTelemetry provider is set): asked once per claim,
        # not per job (the question costs an environment lookup).
        self.traced = tracing.enabled()

    # -- wake-ups ----------------------------------------------------------------------------

    def wake(self) -> None:
        self.wakeup.set()

    def on_notify(self, queue: str) -> None:
        self.wakeup.set()

    def on_done(self, queue: str) -> None:
        # Jobs finished somewhere in the fleet: a queue limited by running jobs has free slots now
        # (for other queues a finished job changes nothing a claim could use).
        if queue in self.slot_limited:
            self.wakeup.set()

    def slots_freed(self) -> None:
        if self.starved and self.concurrency + self.prefetch - self.inflight.active >= self.refill_at:
            self.wakeup.set()  # enough slots are free for a worthwhile claim

    async def refresh_limits(self) -> None:
        rows = await self.database.rows(queries.rate_limits(queues=self.queues), attempts=1)
        buckets = [
            (float(r["rate_limit"]), int(r["rate_burst"])) for r in rows if r["rate_limit"] is not None
        ]
        buckets += [
            (float(r["key_rate_limit"]), int(r["key_rate_burst"])) for r in rows if r["key_rate_limit"]
        ]
        self.rate_poll = rate_poll_s(buckets, self.poll_interval_s)
        self.slot_limited = frozenset(r["name"] for r in rows if r["slot_limited"])

    # -- the claim loop ----------------------------------------------------------------------

    async def run(self) -> None:
        """Claim until the worker stops (or, in burst mode, until nothing is due or held)."""
        inflight, lease_s = self.inflight, self.lease.total_seconds()
        loop = asyncio.get_running_loop()
        backoff = 0.1
        while not self.stopping.is_set():
            n = claim_size(
                concurrency=self.concurrency,
                in_flight=inflight.active,
                prefetch=self.prefetch,
                max_batch=self.batch_cap,
            )
            if n < self.refill_at:
                # Too little room for a worthwhile claim. Clear first: a set Event returns from
                # wait() without yielding, and old wake-ups (NOTIFYs) mean nothing while full.
                self.wakeup.clear()
                self.starved = True
                # Finishing jobs wake us at the refill threshold; the poll floor is a safety net.
                await self._sleep(self.poll_interval_s)
                self.starved = False
                continue
            self.wakeup.clear()
            outcomes_before = inflight.outcomes
            try:
                sent = loop.time()
                rows = await self.database.driver.tuples(
                    queries.claim(queues=self.queues, worker_id=self.worker_id, max_jobs=n, lease=self.lease)
                )
            except SkiplockError as exc:
                if not is_transient(exc):
                    raise
                log.warning("claim failed (%s); retrying in %.1fs", exc, backoff)
                await self._sleep(backoff)
                backoff = min(5.0, backoff * 2)
                continue
            backoff = 0.1
            jobs = [job_from_claim(r) for r in rows]
            if jobs:
                self.traced = tracing.enabled()
            if len(jobs) > 1:
                jobs.sort(key=_claim_order)
            self.stats.claimed += len(jobs)
            for job in jobs:
                self.start(job, sent + lease_s)
            now = loop.time()
            if jobs:
                self.last_hit = now
                self.signals.claimed.fire()
                self.signals.claimed_jobs.fire(len(jobs))
            if len(jobs) < n:
                # Burst mode ends when nothing is due: only trust a claim that started after every
                # outcome was recorded (a retry due now may have been written while it ran).
                if (
                    self.burst
                    and not len(inflight)
                    and not inflight.active
                    and inflight.outcomes == outcomes_before
                ):
                    return
                # Nothing more is due: sleep until NOTIFY, a freed slot (burst) or the poll floor;
                # sooner while a rate limit, not an empty queue, is what cut claims short.
                delay = poll_delay_s(self.poll_interval_s)
                if self.rate_poll is not None and now - self.last_hit < 2 * self.poll_interval_s:
                    delay = min(delay, self.rate_poll)
                self.signals.idle.fire()
                await self._sleep(delay)

    async def _sleep(self, timeout: float | None) -> None:
        # asyncio.timeout, not wait_for: no task is created per wait (a NOTIFY wakes us sooner).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.wakeup.wait()


def _claim_order(job: Job) -> tuple[int, Any, int]:
    return (-job.priority, job.run_at, job.id)
