"""The lease keeper: every held job's lease extended every lease/3, the worker's registry row
kept alive, and the riders of that schedule (the cancellation fallback, the limits' refresh).

A heartbeat that finds a lease gone marks the job lost: its outcome will be refused by the
database, and its runner does not start it if it has not started yet.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

from skiplock._core import queries
from skiplock._core.statements import BoundStatement
from skiplock.errors import SkiplockError
from skiplock.worker.database import WorkerDatabase
from skiplock.worker.inflight import Held, InFlight, Phase, token

__all__ = ["DONE_INTERVAL_S", "LeaseKeeper"]

log = logging.getLogger("skiplock.worker")

#: Between lease extensions, the jobs a worker finished are reported this often.
DONE_INTERVAL_S = 1.0


class LeaseKeeper:
    def __init__(
        self,
        database: WorkerDatabase,
        inflight: InFlight,
        *,
        worker_id: uuid.UUID,
        queues: Sequence[str],
        concurrency: int,
        lease: timedelta,
        on_cancel: Callable[[int], None],
        riders: Sequence[tuple[str, Callable[[], Awaitable[None]]]] = (),
    ) -> None:
        self.database = database
        self.inflight = inflight
        self.worker_id = worker_id
        self.queues = list(queues)
        self.concurrency = concurrency
        self.lease = lease
        self.on_cancel = on_cancel
        self.riders = list(riders)

    async def register(self) -> None:
        await self.database.rows(self._registration(), attempts=5)

    async def deregister(self) -> None:
        await self.database.rows(queries.deregister_worker(worker_id=self.worker_id), attempts=1)

    async def run(self) -> None:
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
                    await self.beat()
                elif self.inflight.done_unreported:
                    await self.report_done()
            except SkiplockError as exc:
                log.warning("could not report the jobs done: %s", exc)
            except Exception:  # a dead heartbeat loop would get every job reaped
                log.exception("unexpected error in heartbeat")

    async def beat(self) -> None:
        """Extend every held lease, then run the riders, each on its own: a failure of a rider
        never costs a lease extension."""
        # Not a job being committed on its job transaction: that transaction holds its row
        # (the reaper skips it) and the heartbeat would wait for the commit.
        held = [h for h in self.inflight.held() if h.phase is not Phase.COMMITTING]
        sent = asyncio.get_running_loop().time()
        try:
            if held:
                rows = await self.database.rows(
                    queries.heartbeat(
                        job_ids=[h.job.id for h in held],
                        lease_tokens=[token(h.job) for h in held],
                        lease=self.lease,
                    ),
                    attempts=1,
                )
                extended = {int(r["id"]) for r in rows}
                for h in held:
                    if h.job.id in extended:
                        h.lease_until = sent + self.lease.total_seconds()
                    # A finishing job's outcome may have been recorded while this heartbeat ran:
                    # its own complete/fail reports whether the lease was really lost.
                    elif self.inflight.get(h.job.id) is not None and h.phase is not Phase.FINISHING:
                        self.inflight.found_lost(h)
            await self.report_done()
        except SkiplockError as exc:
            log.warning("heartbeat failed: %s", exc)
        try:
            if held:
                # Polling fallback for cancellations whose NOTIFY we missed.
                flagged = await self.database.rows(
                    queries.cancel_requested(job_ids=[h.job.id for h in held]), attempts=1
                )
                for r in flagged:
                    self.on_cancel(int(r["id"]))
        except SkiplockError as exc:
            log.warning("could not check for cancellations: %s", exc)
        for what, rider in self.riders:
            try:
                await rider()
            except SkiplockError as exc:
                log.warning("could not %s: %s", what, exc)

    async def report_done(self) -> None:
        """Beat the worker's own row with the jobs finished since the last report (re-register
        if the row is gone)."""
        done, self.inflight.done_unreported = self.inflight.done_unreported, 0
        try:
            alive = await self.database.rows(
                queries.worker_heartbeat(worker_id=self.worker_id, jobs_done=done), attempts=1
            )
        except SkiplockError:
            self.inflight.done_unreported += done  # reported with the next beat
            raise
        if alive and not alive[0]["alive"]:
            await self.database.rows(self._registration(), attempts=1)

    async def still_held(self, held: Held) -> bool:
        """Whether a job about to start, whose lease has less than a third of its time left (the
        worker was frozen, or its heartbeats failed), is still ours: one heartbeat of the job
        tells, and extends it. A worker never starts a job someone else may be running."""
        sent = asyncio.get_running_loop().time()
        try:
            rows = await self.database.rows(
                queries.heartbeat(job_ids=[held.job.id], lease_tokens=[token(held.job)], lease=self.lease),
                attempts=3,
            )
        except SkiplockError:
            return True  # unknown: run it, as if the check had not been made; the outcome tells
        if rows:
            held.lease_until = sent + self.lease.total_seconds()
            return True
        self.inflight.found_lost(held)
        return False

    def _registration(self) -> BoundStatement:
        return queries.register_worker(
            worker_id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=self.queues,
            concurrency=self.concurrency,
        )
