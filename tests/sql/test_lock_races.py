"""Batched calls that wait on a row another transaction is changing still act on its new version.

complete, heartbeat, release and set_progress lock their rows first (in id order), then change
them. A row updated by a transaction that commits while the call waits for its lock must still
be completed / extended / released: the lease is the caller's all along.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from waiting import wait_until

CALLS = {
    "complete": "SELECT * FROM skiplock.complete(ARRAY[%s::bigint], ARRAY[%s::uuid])",
    "heartbeat": "SELECT * FROM skiplock.heartbeat(ARRAY[%s::bigint], ARRAY[%s::uuid], '1 hour')",
    "release": "SELECT * FROM skiplock.release(ARRAY[%s::bigint], ARRAY[%s::uuid])",
    "set_progress": "SELECT * FROM skiplock.set_progress(ARRAY[%s::bigint], ARRAY[%s::uuid], '{50}', '{half}')",
}
FIRST = {
    "heartbeat": "SELECT * FROM skiplock.heartbeat(ARRAY[%s::bigint], ARRAY[%s::uuid], '10 minutes')",
    "set_progress": "SELECT * FROM skiplock.set_progress(ARRAY[%s::bigint], ARRAY[%s::uuid], '{10}', '{start}')",
}


@pytest.mark.parametrize("first", sorted(FIRST))
@pytest.mark.parametrize("second", sorted(CALLS))
def test_a_call_waiting_on_a_concurrent_update_acts_on_the_new_version(dsn, conn, first, second):
    conn.execute("SELECT skiplock.enqueue('q', 't')")
    job_id, token = conn.execute(
        "SELECT id, lease_token FROM skiplock.claim('{q}', gen_random_uuid())"
    ).fetchone()
    holder = psycopg.connect(dsn)
    holder.execute(FIRST[first], [job_id, token])  # row updated, transaction still open
    got: list[Any] = []

    def call() -> None:
        with psycopg.connect(dsn, autocommit=True) as c:
            got.append(c.execute(CALLS[second], [job_id, token]).fetchall())

    waiter = threading.Thread(target=call)
    waiter.start()
    wait_until(
        lambda: (
            conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%skiplock.%'"
            ).fetchone()[0]
            == 1
        ),
        what="the second call waits for the row lock",
    )
    holder.commit()
    holder.close()
    waiter.join(30)
    assert got == [[(job_id,)]]  # it acted on the job, whose lease it still holds
