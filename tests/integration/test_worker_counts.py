"""A worker's counters against a real database: a lost lease raises LeaseLost in the task and is
counted and logged once; the jobs done show in skiplock.workers while a queue drains."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import timedelta

import pytest

import skiplock
from waiting import await_until

FAST = {"poll_interval": timedelta(milliseconds=50), "reap_interval": timedelta(hours=1)}


async def test_a_lost_lease_raises_lease_lost_in_the_task_and_counts_once(dsn, client, conn, caplog):
    """Pass: while a task runs, its job is taken from the worker (its lease token replaced, as a
    reap and a claim elsewhere would); the heartbeat finds out, set_progress() then raises
    LeaseLost in the task, and however many heartbeats pass before the task returns, the worker
    counts one lost lease, logs it once, and records nothing for the job."""
    taken = threading.Event()
    raised: list[BaseException] = []
    release = threading.Event()

    @skiplock.task(queue="q")
    def long_job() -> None:
        ctx = skiplock.current_job()
        taken.wait(30)
        while True:
            try:
                ctx.set_progress(50)
            except skiplock.LeaseLost as exc:
                raised.append(exc)
                break
            release.wait(0.02)  # a task's own work between two reports
        release.wait(30)  # several heartbeats pass while it finishes

    job = long_job.using(client=client).enqueue()
    worker = skiplock.AsyncWorker([long_job], dsn=dsn, lease=timedelta(milliseconds=600), **FAST)
    with caplog.at_level(logging.WARNING, logger="skiplock.worker"):
        async with worker:
            await await_until(
                lambda: asyncio.to_thread(
                    lambda: (
                        conn.execute(
                            "SELECT state::text FROM skiplock.job WHERE id = %s", [job.id]
                        ).fetchone()
                        == ("running",)
                    )
                ),
                what="the job running",
            )
            conn.execute("UPDATE skiplock.job SET lease_token = gen_random_uuid() WHERE id = %s", [job.id])
            taken.set()
            await await_until(lambda: asyncio.sleep(0, bool(raised)), what="LeaseLost raised in the task")
            beats = conn.execute("SELECT heartbeat_at FROM skiplock.worker").fetchone()[0]
            await await_until(
                lambda: asyncio.to_thread(
                    lambda: conn.execute("SELECT heartbeat_at > %s FROM skiplock.worker", [beats]).fetchone()[
                        0
                    ]
                ),
                what="another heartbeat",
            )
            release.set()
            await await_until(lambda: asyncio.sleep(0, worker.stats.lost == 1), what="the loss counted")
    assert isinstance(raised[0], skiplock.LeaseLost)
    assert f"job {job.id}" in str(raised[0])
    assert (worker.stats.lost, worker.stats.completed, worker.stats.failed) == (1, 0, 0)
    lost = [r for r in caplog.records if "lease lost" in r.getMessage()]
    assert len(lost) == 1, [r.getMessage() for r in caplog.records]
    assert conn.execute("SELECT state::text FROM skiplock.job WHERE id = %s", [job.id]).fetchone() == (
        "running",
    )


async def test_jobs_done_show_in_the_workers_view_while_a_queue_drains(dsn, client, conn):
    """Pass: with a 30 s lease (lease extensions every 10 s), the jobs a worker finished reach
    skiplock.workers within a couple of seconds, while it still runs the rest."""
    gate = threading.Event()

    @skiplock.task(queue="q")
    def step(i: int) -> None:
        if i >= 10:
            gate.wait(30)

    client.enqueue_many([skiplock.JobSpec(task="step", queue="q", args={"i": i}) for i in range(12)])
    worker = skiplock.AsyncWorker([step], dsn=dsn, concurrency=2, prefetch=0, **FAST)
    try:
        async with worker:
            loop = asyncio.get_running_loop()
            started = loop.time()
            await await_until(
                lambda: asyncio.to_thread(
                    lambda: (
                        conn.execute("SELECT coalesce(sum(jobs_done), 0) FROM skiplock.workers").fetchone()[0]
                        == 10
                    )
                ),
                timeout=8,
                what="10 jobs done in skiplock.workers",
            )
            assert loop.time() - started < 10  # before the first lease extension
            assert conn.execute("SELECT count(*) FROM skiplock.job WHERE state = 'running'").fetchone() == (
                2,
            )
            gate.set()
    finally:
        gate.set()


@pytest.mark.parametrize(
    ("row", "kind", "expected"),
    [
        ({"state": "completed", "attempt": 2, "worker_id": "W", "errors": []}, "complete", "completed"),
        (
            {"state": "completed", "attempt": 3, "worker_id": "X", "errors": []},
            "complete",
            None,
        ),  # someone else's
        ({"state": "running", "attempt": 3, "worker_id": "X", "errors": []}, "complete", None),
        (None, "complete", None),  # gone past retention: unknown, so not ours
        (
            {
                "state": "retryable",
                "attempt": 2,
                "worker_id": None,
                "errors": [{"attempt": 2, "worker_id": "W", "type": "E"}],
            },
            "fail",
            "retryable",
        ),
        (
            {
                "state": "running",
                "attempt": 3,
                "worker_id": "X",
                "errors": [{"attempt": 2, "worker_id": "W", "type": "E"}],
            },
            "fail",
            "retryable",
        ),
        (
            {
                "state": "failed",
                "attempt": 2,
                "worker_id": "W",
                "errors": [{"attempt": 2, "worker_id": "W", "type": "E"}],
            },
            "fail",
            "failed",
        ),
        (
            {
                "state": "retryable",
                "attempt": 2,
                "worker_id": None,
                "errors": [{"attempt": 2, "type": "LeaseExpired"}],
            },
            "fail",
            None,
        ),
        ({"state": "available", "attempt": 1, "worker_id": None, "errors": []}, "release", "available"),
        ({"state": "available", "attempt": 2, "worker_id": None, "errors": []}, "release", None),  # reaped
    ],
)
def test_which_outcomes_count_as_recorded(row, kind, expected):
    from uuid import UUID

    from skiplock._core.outcome import OutcomeKind, recorded

    me = UUID(int=1)
    ids = {"W": me, "X": UUID(int=2), None: None}
    if row is not None:
        row = {**row, "worker_id": ids[row["worker_id"]]}
        row["errors"] = [
            {**e, "worker_id": str(ids[e["worker_id"]])} if "worker_id" in e else e for e in row["errors"]
        ]
    assert recorded(row, 2, me, OutcomeKind(kind), "E") == expected
