"""The worker's maintenance services: the reaper, partition upkeep and the cron scheduler.

Each runs on a timer of its own as an asyncio task (``start``/``stop``), and one round of it is
``run_once(as_of=None)``: what the timer calls, and what a test or an operator can call with a
time of their choosing. A round's failure is logged and the next round runs as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from skiplock._core import queries, statements
from skiplock._core.claiming import poll_delay_s
from skiplock._core.cron import MAX_TICKS
from skiplock._core.cron import due_ticks as cron_ticks
from skiplock._core.cron import next_tick as next_cron_tick
from skiplock._core.cron import problem as cron_problem
from skiplock._core.text import ESCAPE_ARGS
from skiplock.cron import CronSpec
from skiplock.errors import InvalidInput, SkiplockError
from skiplock.task import Task
from skiplock.worker.database import WorkerDatabase
from skiplock.worker.signals import Signal

__all__ = ["MAX_SCHEDULER_SLEEP_S", "PartitionKeeper", "Reaper", "Scheduler", "Service"]

log = logging.getLogger("skiplock.worker")
log.addFilter(ESCAPE_ARGS)  # schedule names and errors are logged escaped, on one line

#: The scheduler wakes at the next tick of any schedule, and at least this often (schedules
#: added or changed elsewhere are seen within it).
MAX_SCHEDULER_SLEEP_S = 5.0
#: Fire a tick this long after it is due by our reading of the database clock, so that the
#: database (whose clock decides) agrees that it is due.
SCHEDULER_MARGIN_S = 0.005


class Service:
    """A round of work every ``interval`` (±20%, so that workers do not run in step)."""

    name = "service"
    #: Run a round at start (else the first one runs after an interval).
    runs_at_start = False

    def __init__(self, db: WorkerDatabase, interval: timedelta, signal: Signal) -> None:
        self.db = db
        self.interval = interval
        self.signal = signal
        self._task: asyncio.Task[None] | None = None

    async def run_once(self, as_of: datetime | None = None) -> float | None:
        """One round; may return how long to wait before the next (else ``interval``)."""
        raise NotImplementedError

    async def run(self) -> None:
        wait: float | None = None
        if not self.runs_at_start:
            await asyncio.sleep(self._delay(None))
        while True:
            try:
                wait = await self.run_once()
            except SkiplockError as exc:
                wait = None
                log.warning("%s failed: %s", self.name, exc)
            except Exception:  # the loop must outlive any one round
                wait = None
                log.exception("unexpected error in %s", self.name)
            finally:
                self.signal.fire()
            await asyncio.sleep(self._delay(wait))

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self.run(), name=f"skiplock-{self.name}")
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _delay(self, wait: float | None) -> float:
        return wait if wait is not None else poll_delay_s(self.interval.total_seconds(), jitter=0.2)


class Reaper(Service):
    """``skiplock.reap()``: expired leases go back to their queue, or fail when out of attempts
    (safe from many workers at once)."""

    name = "reaper"

    async def run_once(self, as_of: datetime | None = None) -> float | None:
        rows = await self.db.rows(queries.reap(max_jobs=1000, as_of=as_of), attempts=1)
        if rows:
            log.info("reaped %s jobs with expired leases", len(rows))
        return None


class PartitionKeeper(Service):
    """History partitions: created a few days ahead, dropped once past ``retention``."""

    name = "partition maintenance"
    runs_at_start = True

    def __init__(
        self, db: WorkerDatabase, interval: timedelta, signal: Signal, *, retention: timedelta
    ) -> None:
        super().__init__(db, interval, signal)
        self.retention = retention

    async def run_once(self, as_of: datetime | None = None) -> float | None:
        await self.db.rows(queries.ensure_partitions(days_ahead=3, as_of=as_of), attempts=1)
        dropped = await self.db.rows(
            queries.drop_partitions(retention=self.retention, as_of=as_of), attempts=1
        )
        if dropped:
            log.info("dropped history partitions %s", [r["name"] for r in dropped])
        return None


class Scheduler(Service):
    """Cron: stores the schedules of this worker's tasks, then hands every schedule's due ticks
    to the database, which enqueues each tick exactly once whichever worker fires it."""

    name = "scheduler"
    runs_at_start = True

    def __init__(
        self, db: WorkerDatabase, signal: Signal, *, specs: list[CronSpec], tasks: dict[str, Task[Any]]
    ) -> None:
        super().__init__(db, timedelta(seconds=MAX_SCHEDULER_SLEEP_S), signal)
        self.specs = specs
        self.tasks = tasks
        # Stored schedules that cannot fire, as (name, cron, tz): each is logged once.
        self._bad: set[tuple[str, str, str]] = set()

    async def run(self) -> None:
        await self.store()
        await super().run()

    async def store(self) -> None:
        """Store (or update) the ``@skiplock.cron`` schedules of the tasks this worker runs."""
        for spec in self.specs:
            task = self.tasks.get(spec.task)
            if task is None:
                continue
            stmt = statements.upsert_schedule(
                spec.name, spec.cron, spec.task, queue=spec.queue, args=spec.args, tz=spec.tz,
                priority=task.priority, max_attempts=task.max_attempts, catch_up=spec.catch_up,
            )  # fmt: skip
            try:
                await self.db.rows(stmt)
            except SkiplockError as exc:
                log.error("could not store schedule %s: %s", spec.name, exc)

    async def run_once(self, as_of: datetime | None = None) -> float | None:
        """Fire every schedule's due ticks (as of ``as_of``, else the database's clock); return
        how long to sleep until the next one is due."""
        wait = MAX_SCHEDULER_SLEEP_S
        rows = await self.db.rows(queries.list_schedules(), attempts=1)
        # Forget what was reported about schedules since fixed or deleted: reported again if broken again.
        self._bad &= {(r["name"], r["cron"], r["tz"]) for r in rows}
        for row in rows:
            if row["paused"]:
                continue
            now, name = (as_of or row["db_now"]), row["name"]
            key = (name, row["cron"], row["tz"])
            # One schedule that cannot be read (written by another client, or by an older
            # version of the database's checks) must not stop the others: skip it, say so once.
            why = cron_problem(row["cron"], row["tz"], now)
            if why is not None:
                self._report(
                    key,
                    f"schedule {name} cannot fire and is skipped: {why}; fix it with"
                    f" skiplock.upsert_schedule() or delete it (skiplock schedules delete {name})",
                )
                continue
            # Ticks older than catch_up would be skipped by the database anyway: start after them.
            ticks = cron_ticks(row["cron"], row["tz"], max(row["last_tick"], now - row["catch_up"]), now)
            if ticks:
                try:
                    fired = await self.db.rows(
                        queries.fire_schedule(name=name, ticks=ticks, as_of=as_of), attempts=1
                    )
                except InvalidInput as exc:  # its task, queue or args refused: the others go on
                    self._report(key, f"schedule {name} cannot fire and is skipped: {exc}")
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

    def _report(self, key: tuple[str, str, str], message: str) -> None:
        if key not in self._bad:
            self._bad.add(key)
            log.error("%s", message)
