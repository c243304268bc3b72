"""The jobs a worker holds, and the counts that follow from them, in one place.

A job is held from its claim until its outcome is recorded (or found lost). While held it is
*active* until its task has finished executing: active jobs are what count against the worker's
capacity (``concurrency + prefetch``). A runner that took it keeps it *busy* until its outcome
is on its way; the worker is idle when none is.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from skiplock.context import JobContext
from skiplock.errors import ConfigError
from skiplock.models import Job
from skiplock.worker.threads import ThreadRun

__all__ = ["Held", "InFlight", "Phase", "WorkerStats", "fields", "token"]

log = logging.getLogger("skiplock.worker")


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
    transactions: int = 0  # jobs whose task opened its job transaction


class Phase(enum.Enum):
    """Where a held job is: waiting (for a runner) → running (user code) → finishing (recording
    the outcome), or committing (completing it on its job transaction: its row stays locked
    until the commit, so the heartbeat leaves it alone)."""

    WAITING = "waiting"
    RUNNING = "running"
    FINISHING = "finishing"
    COMMITTING = "committing"


@dataclass(slots=True)
class Held:
    job: Job
    ctx: JobContext
    # Only a running job is ever cancelled (its runner is, while it awaits user code):
    # cancelling while the outcome is being written could lose a release and later spend an
    # attempt it should not. Waiting jobs are taken off the ready queue and released in one
    # batch instead.
    phase: Phase = Phase.WAITING
    task: asyncio.Task[None] | None = None  # the runner running it
    cancelled: bool = False  # someone called cancel() on it: end it as cancelled, never release it
    thread: ThreadRun | None = None  # a def task's run in its thread
    # Loop time until which the lease surely holds: the claim's or the latest extension's
    # sending time plus the lease (the database's own expiry is later, never earlier).
    lease_until: float = 0.0

    @property
    def is_cancellable(self) -> bool:
        return self.phase is Phase.RUNNING and self.task is not None and not self.task.done()


class InFlight:
    """The held jobs by id, and the active, busy and recorded counts."""

    def __init__(self, stats: WorkerStats) -> None:
        self.stats = stats
        self.jobs: dict[int, Held] = {}
        self.active = 0  # claimed and not yet finished executing: what counts against capacity
        self.busy = 0  # taken by a runner and not yet finished (running or finishing)
        self.outcomes = 0  # outcomes recorded so far (burst mode: was a claim older than one?)
        self.idle = asyncio.Event()  # set whenever busy is 0
        self.idle.set()
        self.done_unreported = 0  # jobs finished since the worker's registry row was last told

    def __len__(self) -> int:
        return len(self.jobs)

    def get(self, job_id: int) -> Held | None:
        return self.jobs.get(job_id)

    def held(self) -> list[Held]:
        return list(self.jobs.values())

    def hold(self, held: Held) -> None:
        self.jobs[held.job.id] = held
        self.active += 1

    def take(self) -> None:
        """A runner took a job."""
        self.busy += 1
        self.idle.clear()

    def executed(self, n: int = 1) -> None:
        """``n`` jobs finished executing (or will not run): their slots are free."""
        self.active -= n

    def put_down(self) -> None:
        """A runner is done with its job (its outcome recorded or handed to the acker)."""
        self.busy -= 1
        if self.busy == 0:
            self.idle.set()

    def settle(self, jobs: Iterable[Held]) -> None:
        """These jobs' outcomes are recorded (or known lost): they are no longer held."""
        for held in jobs:
            self.jobs.pop(held.job.id, None)
            self.outcomes += 1

    def found_lost(self, held: Held) -> None:
        """Mark a job's lease lost (the heartbeat found it reaped) and log it, once; it is
        counted once, as its outcome."""
        if not held.ctx._lease_lost:
            held.ctx._lease_lost = True
            log.warning(
                "job %s: lease lost (reaped or finalized elsewhere)", held.job.id, extra=fields(held.job)
            )

    def lost(self, held: Held, when: str) -> None:
        """Count a lease the database refused (reaped, then maybe run elsewhere): once per job."""
        self.stats.lost += 1
        if not held.ctx._lease_lost:  # not found and logged already
            held.ctx._lease_lost = True
            log.warning("job %s: lease lost %s", held.job.id, when, extra=fields(held.job))


def fields(job: Job) -> dict[str, Any]:
    """The stable ``extra`` keys of every log record about a job (for JSON log formatters)."""
    return {"job_id": job.id, "task": job.task, "queue": job.queue, "attempt": job.attempt}


def token(job: Job) -> uuid.UUID:
    if job.lease_token is None:  # pragma: no cover - claim always sets it
        raise ConfigError(f"job {job.id} has no lease token")
    return job.lease_token
