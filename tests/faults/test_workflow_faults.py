"""Workflows under real worker processes: many workers racing on a graph, and a parent whose
worker crashes mid-run."""

from __future__ import annotations

import signal
from typing import Any

import psycopg
from invariants import check
from psycopg.types.json import Jsonb

from conftest import Fleet, scalar, size
from waiting import wait_until


def diamonds(conn: psycopg.Connection[Any], n: int, **columns: Any) -> list[list[int]]:
    """Enqueue ``n`` diamonds a -> (b, c) -> d of work jobs on queue faults; return their ids."""
    out: list[list[int]] = []
    extra = "".join(f", {k} => %({k})s" for k in columns)
    for lo in range(0, n, 2000):
        count = min(2000, n - lo)
        deps = []
        for k in range(count):
            base = 4 * k  # positions are 1-based: a = base+1
            deps += [[], [-(base + 1)], [-(base + 1)], [-(base + 2), -(base + 3)]]
        rows = conn.execute(
            "SELECT * FROM skiplock.enqueue_many('{faults}', '{work}',"
            " ARRAY(SELECT jsonb_build_object('i', k) FROM generate_series(1, %(jobs)s) AS k),"
            " depends_on => %(deps)s::jsonb[]" + extra + ")",
            {"jobs": 4 * count, "deps": [Jsonb(d) for d in deps], **columns},
        ).fetchall()
        ids = [r[0] for r in rows]
        out += [ids[i : i + 4] for i in range(0, len(ids), 4)]
    return out


def test_racing_workers_never_start_a_child_before_its_parents_complete(fleet: Fleet, ledger):
    """Pass: 3 worker processes (8 slots each) drain diamonds a -> (b, c) -> d; every execution of
    a child starts after each of its parents' completion committed (ledger start vs history
    finished_at, both database clock), every job completes exactly once, and the shared invariants
    hold."""
    graphs = diamonds(ledger, size(150, 2500))
    ids = [i for g in graphs for i in g]
    for _ in range(3):
        fleet.start(CONCURRENCY=8, LEASE=10)
    wait_until(
        lambda: scalar(ledger, "SELECT count(*) FROM skiplock.job") == 0,
        timeout=size(120, 900),
        what="drained",
    )
    check(ledger, ids)
    early = scalar(
        ledger,
        """
        SELECT count(*)
        FROM skiplock.job_dependency AS d
        JOIN skiplock.job_history AS p ON p.id = d.parent_id
        JOIN ledger AS c ON c.job_id = d.child_id
        WHERE d.child_id = ANY(%s) AND c.started < p.finished_at
        """,
        [ids],
    )
    assert early == 0
    assert scalar(ledger, "SELECT count(DISTINCT pid) FROM ledger") == 3  # they really raced


def test_a_parent_whose_worker_crashes_is_reaped_and_cancels_its_descendants(fleet: Fleet, ledger):
    """Pass: the root of a diamond kills its worker (os._exit) with one attempt allowed; once the
    lease expires another worker's reaper fails it, and in that transaction its descendants are
    cancelled; nothing is left waiting, and an unrelated diamond completes normally."""
    (doomed,) = [
        r[0]
        for r in ledger.execute(
            "SELECT * FROM skiplock.enqueue_many('{faults}', '{work}', ARRAY['{\"i\": 0, \"poison\": \"exit\"}']::jsonb[],"
            " max_attempts => '{1}')"
        )
    ]
    children = [
        r[0]
        for r in ledger.execute(
            "SELECT * FROM skiplock.enqueue_many('{faults}', '{work}', ARRAY['{\"i\": 1}', '{\"i\": 2}', '{\"i\": 3}']::jsonb[],"
            " depends_on => %s::jsonb[])",
            [[Jsonb([doomed]), Jsonb([doomed]), Jsonb([-1, -2])]],
        )
    ]
    (healthy,) = diamonds(ledger, 1)
    victim = fleet.start(CONCURRENCY=1, PREFETCH=0, LEASE=2)
    assert victim.wait(60) == 3  # the poison pill took the worker down
    assert scalar(ledger, "SELECT state::text FROM skiplock.job WHERE id = %s", [doomed]) == "running"
    rescuer = fleet.start(CONCURRENCY=4, LEASE=2, REAP_INTERVAL=0.5)
    wait_until(
        lambda: scalar(ledger, "SELECT count(*) FROM skiplock.job") == 0,
        timeout=60,
        what="reaped and drained",
    )
    assert fleet.stop(rescuer, signal.SIGTERM) == 0, fleet.logs()
    final = dict(ledger.execute("SELECT id, state::text FROM skiplock.job_history").fetchall())
    assert final[doomed] == "failed"
    assert [final[c] for c in children] == ["cancelled"] * 3
    assert [final[h] for h in healthy] == ["completed"] * 4
    assert scalar(ledger, "SELECT count(*) FROM ledger WHERE job_id = ANY(%s)", [children]) == 0  # never ran
    check(ledger, healthy)
