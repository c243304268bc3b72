"""The worker registry: skiplock.register_worker, worker_heartbeat and deregister_worker.

register_worker records a worker (host cut to 255 characters) as started and last heard from at
``as_of``; registering an id again only refreshes when it was last heard from. worker_heartbeat
adds ``jobs_done`` to the worker's count and refreshes it, returning true; it returns false for
a worker the registry does not know (one reap forgot: it must register again). deregister_worker
removes a worker; the jobs it holds keep their leases (reap takes them back when those run out).
A worker without an id, host, pid, queues or concurrency is refused (23502), writing nothing.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from jobrows import WORKER, Conn, at, running, where
from psycopg.rows import dict_row

REGISTER = "SELECT skiplock.register_worker(%s, %s, %s, %s, %s, as_of => %s)"


def register(conn: Conn, worker: uuid.UUID = WORKER, host: str = "host-1", as_of=None, queues=("q",)) -> None:
    conn.execute(REGISTER, [worker, host, 4242, list(queues), 8, as_of or at(0)])


def worker_row(conn: Conn, worker: uuid.UUID = WORKER) -> dict | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM skiplock.worker WHERE id = %s", [worker]).fetchone()


def heartbeat(conn: Conn, worker: uuid.UUID = WORKER, jobs_done: int = 0, as_of=None) -> bool:
    return conn.execute(
        "SELECT skiplock.worker_heartbeat(%s, %s, as_of => %s)", [worker, jobs_done, as_of or at(10)]
    ).fetchone()[0]


def test_a_registered_worker_is_recorded_at_as_of(conn):
    register(conn, host="h" * 300, as_of=at(3))
    row = worker_row(conn)
    assert row == {
        "id": WORKER,
        "host": "h" * 255,
        "pid": 4242,
        "queues": ["q"],
        "concurrency": 8,
        "started_at": at(3),
        "heartbeat_at": at(3),
        "jobs_done": 0,
    }


def test_registering_again_only_refreshes_when_it_was_last_heard_from(conn):
    register(conn, host="first", as_of=at(0))
    heartbeat(conn, jobs_done=5, as_of=at(1))
    register(conn, host="second", as_of=at(9), queues=("other",))
    row = worker_row(conn)
    assert (row["host"], row["queues"], row["started_at"], row["heartbeat_at"], row["jobs_done"]) == (
        "first",
        ["q"],
        at(0),
        at(9),
        5,
    )


def test_a_heartbeat_counts_jobs_done_and_refreshes_the_worker(conn):
    register(conn)
    assert heartbeat(conn, jobs_done=3, as_of=at(10)) is True
    assert heartbeat(conn, jobs_done=4, as_of=at(20)) is True
    row = worker_row(conn)
    assert (row["jobs_done"], row["heartbeat_at"], row["started_at"]) == (7, at(20), at(0))


def test_a_heartbeat_from_a_forgotten_worker_returns_false(conn):
    register(conn, as_of=at(0))
    assert conn.execute("SELECT count(*) FROM skiplock.reap(as_of => %s)", [at(601)]).fetchone() == (0,)
    assert heartbeat(conn, as_of=at(602)) is False
    assert worker_row(conn) is None  # a heartbeat does not bring it back; registering does
    register(conn, as_of=at(603))
    assert heartbeat(conn, as_of=at(604)) is True


def test_deregistering_removes_the_worker_and_leaves_its_jobs_leased(conn):
    job_id, token = running(conn)  # claimed by WORKER
    register(conn)
    other = uuid.uuid4()
    register(conn, other)
    conn.execute("SELECT skiplock.deregister_worker(%s)", [WORKER])
    assert worker_row(conn) is None
    assert worker_row(conn, other) is not None
    assert where(conn, job_id) == ("job", "running")
    assert conn.execute("SELECT lease_token FROM skiplock.job WHERE id = %s", [job_id]).fetchone() == (token,)
    conn.execute("SELECT skiplock.deregister_worker(%s)", [uuid.uuid4()])  # unknown: nothing to do
    assert worker_row(conn, other) is not None


@pytest.mark.parametrize("missing", range(5))
def test_a_worker_missing_a_field_is_refused(conn, missing):
    values: list[object] = [uuid.uuid4(), "host", 1, ["q"], 1]
    values[missing] = None
    with pytest.raises(psycopg.errors.NotNullViolation):
        conn.execute(REGISTER, [*values, at(0)])
    assert conn.execute("SELECT count(*) FROM skiplock.worker").fetchone() == (0,)
