"""The completer: records what became of each job, completions in batches.

Completions go to the acker, which flushes as soon as its previous flush returned: a lone job
is acknowledged at once and a busy worker sends large batches, on a pooled connection of their
own, so claims never wait behind them. Failures and releases are recorded one by one (they are
rare). A job whose task opened its job transaction is completed on that transaction, and both
commit together. Progress reports are sent in one batch a second. Every statement whose reply
may have been lost is checked against the job's row before the job is counted lost.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from skiplock._core import queries, statements
from skiplock._core.outcome import TX_ABORTED, TX_ENDED, Outcome, OutcomeKind, fail_statement, recorded
from skiplock.errors import SkiplockError
from skiplock.models import Json
from skiplock.task import Task
from skiplock.worker.database import WorkerDatabase
from skiplock.worker.inflight import Held, InFlight, Phase, WorkerStats, fields, token
from skiplock.worker.signals import WorkerSignals
from skiplock.worker.transactional import JobTransactions, TxConnection

__all__ = ["PROGRESS_INTERVAL_S", "Completer"]

log = logging.getLogger("skiplock.worker")

#: Progress reports are sent in one batch this often (a task may report in a hot loop).
PROGRESS_INTERVAL_S = 1.0


class Completer:
    def __init__(
        self,
        database: WorkerDatabase,
        inflight: InFlight,
        stats: WorkerStats,
        signals: WorkerSignals,
        transactions: JobTransactions,
        *,
        worker_id: uuid.UUID,
        tasks: dict[str, Task[Any]],
        default_task: Task[Any] | None,
        ack_batch: int,
        on_outcome: Callable[[], None] | None = None,
    ) -> None:
        self.database = database
        self.inflight = inflight
        self.stats = stats
        self.signals = signals
        self.transactions = transactions
        self.worker_id = worker_id
        self.tasks = tasks
        self.default_task = default_task
        self.ack_batch = ack_batch
        self.on_outcome = on_outcome  # burst mode: the producer checks whether anything is left
        self._acks: list[tuple[Held, Json]] = []
        self._acks_ready = asyncio.Event()
        self._draining = False  # shutdown: the acker exits once nothing is left to flush

    def drain(self) -> None:
        """Shutdown: the acker flushes what is left (and what is in flight), then returns."""
        self._draining = True
        self._acks_ready.set()

    async def finish(self, held: Held, outcome: Outcome) -> None:
        job = held.job
        if log.isEnabledFor(logging.DEBUG):  # per job: only when asked for
            log.debug(
                "job %s (%s) attempt %s ran: %s",
                job.id,
                job.task,
                job.attempt,
                outcome.kind.value,
                extra=fields(job),
            )
        if held.ctx.lease_lost:
            # The heartbeat found the lease lost and logged it: count it now, once, as the
            # job's outcome (whatever the task did, the database has refused it).
            self.inflight.settle([held])
            self.stats.lost += 1
            log.debug("job %s: outcome discarded (lease lost)", job.id, extra=fields(job))
            return
        if outcome.kind is OutcomeKind.COMPLETE:
            self._acks.append((held, outcome.result))
            self._acks_ready.set()
            return
        try:
            if outcome.kind is OutcomeKind.RELEASE:
                rows, retried = await self.database.tried(
                    queries.release(job_ids=[job.id], lease_tokens=[token(job)]), attempts=3
                )
                if rows or (retried and await self.recorded(held, OutcomeKind.RELEASE)):
                    self.stats.released += 1
                else:
                    self.inflight.lost(held, "before it was released")
                return
            rows, retried = await self.database.tried(fail_statement(job.id, token(job), outcome))
            state = rows[0]["state"] if rows else None
            if state is None and retried:  # the first try may have landed and its reply been lost
                state = await self.recorded(held, OutcomeKind.FAIL, outcome.error_type)
            if state is None:
                self.inflight.lost(held, "before its failure was recorded")
            elif state == "retryable":
                self.stats.retried += 1
                log.info(
                    "job %s (%s) failed attempt %s: %s",
                    job.id,
                    job.task,
                    job.attempt,
                    outcome.error,
                    extra=fields(job),
                )
            else:
                self.stats.failed += 1
                log.warning("job %s (%s) %s: %s", job.id, job.task, state, outcome.error, extra=fields(job))
        except SkiplockError as exc:
            log.error(
                "job %s: could not record its outcome (%s); its lease will expire",
                job.id,
                exc,
                extra=fields(job),
            )
        finally:
            self.inflight.settle([held])

    async def finish_in_transaction(self, held: Held, outcome: Outcome, tx: TxConnection) -> None:
        """Finish a job whose task opened its job transaction: complete it on that transaction
        and commit both, or roll the task's writes back and take the usual way."""
        job = held.job
        if outcome.kind is not OutcomeKind.COMPLETE or held.ctx.lease_lost:
            await self.transactions.abort(tx, held.thread)
            await self.finish(held, outcome)
            return
        held.phase = Phase.COMMITTING
        try:
            verdict = await self.transactions.commit_completion(
                tx, statements.complete([job.id], [token(job)], [outcome.result])
            )
        except Exception as exc:
            self.inflight.settle([held])
            log.error(
                "job %s: could not commit its transaction (%s); its writes and its completion stand"
                " or fall together: unless the commit landed, its lease will expire and it runs again",
                job.id,
                exc,
                extra=fields(job),
            )
            return
        if verdict == "aborted":  # retried like an exception of the task, with its policy
            task = self.tasks.get(job.task) or self.default_task
            delay = None if task is None else task.retry_delay(job)
            await self.finish(held, replace(TX_ABORTED, retry_in=delay))
            return
        if verdict == "ended":
            await self.finish(held, TX_ENDED)
            return
        self.inflight.settle([held])
        if verdict == "committed":
            self.stats.completed += 1
            self.inflight.done_unreported += 1
        else:
            self.inflight.lost(held, "before completion was recorded; its transaction was rolled back")

    async def run(self) -> None:
        # Natural batching: while one flush is in flight, finished jobs pile up for the next.
        while True:
            await self._acks_ready.wait()
            self._acks_ready.clear()
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
            [h.job.id for h, _ in batch], [token(h.job) for h, _ in batch], [r for _, r in batch]
        )
        unknown = False
        try:
            # Completions are retried until they land (or a forced stop): the work is done, and
            # an unrecorded completion would only run the job again once its lease expires.
            rows, retried = await self.database.tried(stmt, attempts=None, tuples=True)
        except SkiplockError as exc:
            log.error("could not acknowledge %s jobs (%s); their leases will expire", len(batch), exc)
            rows, retried, unknown = [], False, True
        done = {r[0] for r in rows}
        for held, _ in batch:
            if held.job.id in done or unknown:
                continue
            # A retried complete finds nothing for jobs the first try completed (its reply was
            # lost on the way): those are ours, not lost.
            if retried and await self.recorded(held, OutcomeKind.COMPLETE):
                done.add(held.job.id)
            else:
                self.inflight.lost(held, "before completion was recorded")
        self.inflight.settle(h for h, _ in batch)
        self.stats.completed += len(done)
        self.inflight.done_unreported += len(done)
        self.signals.acked.fire()
        if self.on_outcome is not None:
            self.on_outcome()

    async def run_progress(self) -> None:
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
            for h in self.inflight.held()
            if h.ctx._progress is not h.ctx._progress_sent and h.phase is not Phase.COMMITTING
        ]
        reports = [(h, p) for h, p in fresh if p is not None]
        if not reports:
            return
        await self.database.rows(
            queries.set_progress(
                job_ids=[h.job.id for h, _ in reports],
                lease_tokens=[token(h.job) for h, _ in reports],
                progress=[p[0] for _, p in reports],
                messages=[p[1] for _, p in reports],
            ),
            attempts=1,
        )
        self.stats.progress_batches += 1
        for h, p in reports:
            h.ctx._progress_sent = p

    async def release_unstarted(self, waiting: list[Held]) -> None:
        try:
            rows, retried = await self.database.tried(
                queries.release(
                    job_ids=[h.job.id for h in waiting], lease_tokens=[token(h.job) for h in waiting]
                ),
                attempts=3,
            )
            released = {int(r["id"]) for r in rows}
            for h in waiting:
                if h.job.id in released or (retried and await self.recorded(h, OutcomeKind.RELEASE)):
                    self.stats.released += 1
                else:
                    self.inflight.lost(h, "before it was released")
        except SkiplockError as exc:
            log.error("could not release %s unstarted jobs (%s); their leases will expire", len(waiting), exc)
        finally:
            self.inflight.settle(waiting)

    async def recorded(self, held: Held, kind: OutcomeKind, error_type: str | None = None) -> str | None:
        """Whether this worker's ``kind`` of outcome for ``held`` is in the database: after a
        retried statement found no job, the first try may have been committed and its reply
        lost. A read of the job (live or in history); returns its state then, else None."""
        try:
            rows = await self.database.rows(queries.get_job(job_id=held.job.id), attempts=3)
        except SkiplockError as exc:
            log.warning("job %s: could not check its outcome (%s)", held.job.id, exc, extra=fields(held.job))
            return None
        return recorded(rows[0] if rows else None, held.job.attempt, self.worker_id, kind, error_type)
