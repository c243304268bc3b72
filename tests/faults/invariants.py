"""The promises every fault scenario is checked against, from the job tables and the ledger.

skiplock promises: every job runs at least once; every job reaches exactly one final state, once;
a worker that lost its lease can never finalize, extend or steal back a job; nothing is lost.
The ledger is the side-effect record the test tasks write (one row per execution, with the
database clock), so the checker sees what really ran, not only what the queue recorded.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

LEDGER_DDL = """
CREATE TABLE ledger (
    n           bigserial   PRIMARY KEY,
    job_id      bigint      NOT NULL,
    attempt     integer     NOT NULL,
    lease_token uuid        NOT NULL,
    pid         integer     NOT NULL,
    started     timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished    timestamptz
)
"""


@dataclass
class Report:
    """What a scenario did, for its assertions and the docs' measured results."""

    jobs: int = 0
    completed: int = 0
    failed: int = 0
    executions: int = 0
    reruns: int = 0  # executions beyond the first of each job
    lease_expired: int = 0  # attempts ended by the reaper
    violations: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.jobs} jobs: {self.completed} completed, {self.failed} failed; {self.executions} executions, "
            f"{self.reruns} re-runs, {self.lease_expired} leases reaped"
        )


def check(
    conn: psycopg.Connection[Any],
    ids: Sequence[int],
    *,
    may_fail: Collection[int] = (),
    releases_rerun: bool = False,
    ledger: psycopg.Connection[Any] | None = None,
) -> Report:
    """Check every promise for the jobs ``ids``, which must all have reached a final state.

    ``ledger``: where the ledger is, when not beside the queue (a scenario that crashes the queue's
    server keeps its ledger on another). ``may_fail``: jobs allowed to end ``failed`` (poison pills). ``releases_rerun``: a scenario that
    releases running jobs (a shutdown past its grace period) may rerun them at the same attempt.
    Raises AssertionError listing every violation; returns the report otherwise.
    """
    report = Report(jobs=len(ids))
    bad = report.violations
    live = {r[0] for r in conn.execute("SELECT id FROM skiplock.job WHERE id = ANY(%s)", [list(ids)])}
    history: dict[int, list[tuple[str, int, int, list[dict[str, Any]], datetime]]] = collections.defaultdict(
        list
    )
    for job_id, state, attempt, max_attempts, errors, finished_at in conn.execute(
        "SELECT id, state::text, attempt, max_attempts, errors, finished_at FROM skiplock.job_history"
        " WHERE id = ANY(%s)",
        [list(ids)],
    ):
        history[job_id].append((state, attempt, max_attempts, errors, finished_at))
    executions: dict[int, list[tuple[int, datetime, datetime | None]]] = collections.defaultdict(list)
    for job_id, attempt, started, finished in (ledger or conn).execute(
        "SELECT job_id, attempt, started, finished FROM ledger WHERE job_id = ANY(%s) ORDER BY started",
        [list(ids)],
    ):
        executions[job_id].append((attempt, started, finished))

    for job_id in ids:
        finals = history.get(job_id, [])
        if job_id in live:
            bad.append(f"job {job_id} never reached a final state")
            continue
        if not finals:
            bad.append(f"job {job_id} was lost: neither live nor in history")
            continue
        if len(finals) > 1:
            bad.append(f"job {job_id} was finalized {len(finals)} times: {[f[0] for f in finals]}")
        state, attempt, max_attempts, errors, finished_at = finals[0]
        report.completed += state == "completed"
        report.failed += state == "failed"
        if state == "failed" and job_id not in may_fail:
            bad.append(f"job {job_id} failed: {errors[-1] if errors else 'no error recorded'}")
        if state not in ("completed", "failed"):
            bad.append(f"job {job_id} ended {state}")
        if attempt > max_attempts:
            bad.append(f"job {job_id} used {attempt} attempts of {max_attempts}")
        runs = executions.get(job_id, [])
        report.executions += len(runs)
        report.reruns += max(0, len(runs) - 1)
        report.lease_expired += sum(e.get("type") == "LeaseExpired" for e in errors)
        if not runs and state == "completed":
            bad.append(f"job {job_id} completed without running")
        # One lease per attempt: an attempt number is never handed to two executions, unless a
        # release gave the attempt back.
        tokens_per_attempt = collections.Counter(a for a, _, _ in runs)
        twice = [a for a, n in tokens_per_attempt.items() if n > 1]
        if twice and not releases_rerun:
            bad.append(f"job {job_id}: attempts {twice} ran more than once")
        # Re-execution only where a lease was genuinely lost or an attempt failed: the attempt
        # before each re-run ended in a recorded error, written before the re-run started (so
        # two leases never overlapped).
        ended = {e["attempt"]: datetime.fromisoformat(e["at"]) for e in errors}
        for (prev_attempt, _, _), (next_attempt, started, _) in itertools.pairwise(runs):
            if next_attempt == prev_attempt and releases_rerun:
                continue
            end = ended.get(prev_attempt)
            if end is None:
                bad.append(f"job {job_id}: ran again after attempt {prev_attempt}, which recorded no failure")
            elif started < end:
                bad.append(
                    f"job {job_id}: attempt {next_attempt} started before attempt {prev_attempt} ended"
                )
        # Only the latest lease holder finalizes: a completed job's final attempt is its last run,
        # and that run had finished when the job was completed (no stale holder completed it).
        if state == "completed" and runs:
            last = max(a for a, _, _ in runs)
            if last != attempt:
                bad.append(f"job {job_id} completed as attempt {attempt} but attempt {last} ran")
            elif not any(a == attempt and f is not None and f <= finished_at for a, _, f in runs):
                bad.append(f"job {job_id} was completed before its final attempt {attempt} finished running")
    if bad:
        shown = "\n  ".join(bad[:20])
        raise AssertionError(f"{len(bad)} promise(s) broken ({report}):\n  {shown}")
    return report
