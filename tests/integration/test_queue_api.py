"""The BullMQ-shaped layer (skiplock.Queue, QueueWorker) on the real database."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

import skiplock
from skiplock import ConfigError, JobState

FAST = {"poll_interval": timedelta(milliseconds=50), "reap_interval": timedelta(milliseconds=100)}


def test_add_maps_bullmq_options_onto_jobs(client):
    """Pass: delay (ms), priority (1 highest, none first), attempts, backoff and job_id become
    run_at, priority, max_attempts, a stored retry policy and a dedupe key."""
    q = skiplock.Queue("emails", client=client)
    plain = q.add("welcome", {"user_id": 1})
    urgent = q.add("welcome", {"user_id": 2}, priority=1)
    later = q.add("welcome", {"user_id": 3}, priority=5, delay=60_000, attempts=4,
                  backoff={"type": "exponential", "delay": 1000})  # fmt: skip
    same = q.add("welcome", {"user_id": 4}, job_id="welcome-4")
    again = q.add("welcome", {"user_id": 4}, job_id="welcome-4")
    assert (plain.priority, urgent.priority, later.priority) == (0, -1, -5)
    assert later.state is JobState.SCHEDULED
    assert later.max_attempts == 4
    assert later.retry_policy == {
        "kind": "exponential",
        "base": 1.0,
        "factor": 2.0,
        "cap": 3600.0,
        "jitter": False,
    }
    assert later.run_at - later.created_at == timedelta(seconds=60)
    assert again.id == same.id
    with pytest.raises(ConfigError, match="priority must be an int from 1"):
        q.add("welcome", {}, priority=-3)
    with pytest.raises(ConfigError, match=r"unknown job option\(s\) \['removeOnComplete'\]"):
        q.add("welcome", {}, removeOnComplete=True)
    with pytest.raises(ConfigError, match="backoff must be"):
        q.add("welcome", {}, backoff={"type": "linear"})


async def test_a_worker_processes_jobs_in_bullmq_priority_order_with_one_processor(dsn, client):
    """Pass: one processor handles every job name of the queue, in BullMQ's order (no priority
    first, then 1, then 5), gets name/data/attempts_made, and its return value is the result; a
    failing job retries with its backoff and skiplock.Fail ends it for good."""
    q = skiplock.Queue("mail", client=client)
    ids = q.add_bulk(
        [
            {"name": "digest", "data": {"n": 5}, "opts": {"priority": 5}},
            {"name": "welcome", "data": {"n": 1}, "opts": {"priority": 1}},
            {"name": "welcome", "data": {"n": 0}},
            {"name": "flaky", "data": {"n": 7}, "opts": {"attempts": 3, "backoff": 0}},
            {"name": "broken", "data": {"n": 9}, "opts": {"attempts": 5}},
        ]
    )
    seen: list[tuple[str, int, int]] = []

    async def process(job: skiplock.QueueJob) -> int:
        seen.append((job.name, job.data["n"], job.attempts_made))
        job.update_progress(50)
        if job.name == "flaky" and job.attempts_made == 0:
            raise RuntimeError("try again")
        if job.name == "broken":
            raise skiplock.Fail("cannot ever work")
        return job.data["n"] * 10

    await skiplock.QueueWorker("mail", process, dsn=dsn, burst=True, **FAST).arun()
    # Without a priority first (in the order added), then 1, then 5; flaky retries whenever due.
    assert [s[:2] for s in seen if s[0] != "flaky"] == [
        ("welcome", 0),
        ("broken", 9),
        ("welcome", 1),
        ("digest", 5),
    ]
    assert ("flaky", 7, 1) in seen
    results = {i: client.get_job(i) for i in ids}
    assert [results[i].result for i in ids[:4]] == [50, 10, 0, 70]
    assert results[ids[4]].state is JobState.FAILED
    assert results[ids[4]].attempt == 1


def test_sync_processor_pause_resume_and_job_counts(dsn, client):
    """Pass: get_job_counts reports BullMQ's states (paused while paused), a sync processor runs
    in the worker's threads, and a job added inside a rolled-back transaction never existed."""
    q = skiplock.Queue("reports", client=client)
    q.add("build", {"n": 1})
    q.add("build", {"n": 2}, delay=3_600_000)
    with psycopg.connect(dsn) as tx:
        q.add("build", {"n": 3}, conn=tx)
        tx.rollback()
    assert q.get_job_counts("waiting", "delayed", "paused") == {"waiting": 1, "delayed": 1, "paused": 0}
    q.pause()
    assert q.is_paused()
    assert q.get_job_counts("waiting", "paused") == {"waiting": 0, "paused": 1}
    q.resume()

    def process(job: skiplock.QueueJob) -> str:
        return f"report {job.data['n']}"

    skiplock.QueueWorker("reports", process, dsn=dsn, burst=True, **FAST).run()
    counts = q.get_job_counts()
    assert counts == {
        "waiting": 0, "active": 0, "delayed": 1, "waiting-children": 0, "completed": 1, "failed": 0,
        "cancelled": 0, "paused": 0,
    }  # fmt: skip
    with pytest.raises(ConfigError, match="unknown job state"):
        q.get_job_counts("stalled")
