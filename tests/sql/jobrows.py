"""Helpers for the per-routine contract tests: put a job in a known state and read it back.

Time is explicit: every helper runs at ``T0`` (or a given ``as_of``), so the tests state what a
routine does at a moment, never what the wall clock happened to be.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[Any]

T0 = datetime(2030, 1, 1, tzinfo=UTC)
WORKER = uuid.UUID("00000000-0000-4000-8000-000000000001")


def at(seconds: float) -> datetime:
    """The moment ``seconds`` after T0."""
    return T0 + timedelta(seconds=seconds)


def enqueue(
    conn: Conn,
    *,
    queue: str = "q",
    task: str = "t",
    max_attempts: int = 10,
    run_at: datetime | None = None,
    dedupe_key: str | None = None,
    retry_policy: dict[str, Any] | None = None,
) -> int:
    """Enqueue one job at T0 and return its id."""
    row = conn.execute(
        "SELECT id FROM skiplock.enqueue(%s, %s, max_attempts => %s, run_at => %s, dedupe_key => %s,"
        " retry_policy => %s, as_of => %s)",
        [queue, task, max_attempts, run_at, dedupe_key, Jsonb(retry_policy) if retry_policy else None, T0],
    ).fetchone()
    assert row is not None
    return int(row[0])


def claim(
    conn: Conn,
    *,
    queue: str = "q",
    as_of: datetime = T0,
    lease: str = "30 seconds",
    worker: uuid.UUID = WORKER,
) -> tuple[int, uuid.UUID]:
    """Claim exactly one job of ``queue`` and return its id and lease token."""
    rows = conn.execute(
        "SELECT id, lease_token FROM skiplock.claim(ARRAY[%s], %s, 1, %s::interval, %s)",
        [queue, worker, lease, as_of],
    ).fetchall()
    assert len(rows) == 1, f"expected one job to claim, got {rows}"
    return int(rows[0][0]), rows[0][1]


def running(conn: Conn, **options: Any) -> tuple[int, uuid.UUID]:
    """Enqueue one job (with ``options``) and claim it at T0: its id and lease token."""
    queue = options.get("queue", "q")
    job_id = enqueue(conn, **options)
    got = claim(conn, queue=queue)
    assert got[0] == job_id
    return got


def live(conn: Conn, job_id: int) -> dict[str, Any] | None:
    """The job's row in skiplock.job, or None."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM skiplock.job WHERE id = %s", [job_id]).fetchone()


def finished(conn: Conn, job_id: int) -> dict[str, Any] | None:
    """The job's row in skiplock.job_history, or None."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("SELECT * FROM skiplock.job_history WHERE id = %s", [job_id]).fetchall()
    assert len(rows) <= 1, f"job {job_id} is in history {len(rows)} times"
    return rows[0] if rows else None


def where(conn: Conn, job_id: int) -> tuple[str, str] | None:
    """('job' or 'history', state) of a job; it must not be in both."""
    row, old = live(conn, job_id), finished(conn, job_id)
    assert not (row and old), f"job {job_id} is both live and finished"
    if row:
        return ("job", row["state"])
    if old:
        return ("history", old["state"])
    return None


@contextmanager
def listening(conn: Conn, dsn: str, channel: str) -> Iterator[list[str]]:
    """Collect the payloads sent on ``channel`` by what the block commits, and nothing else.

    On leaving the block a sentinel is sent from ``conn``: notifications are delivered in commit
    order, so everything the block sent has arrived once the sentinel has (no waiting on time).
    """
    got: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute(f"LISTEN {channel}")
        yield got
        sentinel = f"sentinel-{uuid.uuid4()}"
        conn.execute("SELECT pg_notify(%s, %s)", [channel, sentinel])
        for note in listener.notifies(timeout=10):
            if note.payload == sentinel:
                break
            got.append(note.payload)
        else:
            raise AssertionError(f"the sentinel on {channel} never arrived")
