"""Job dependencies in SQL (sql/functions/workflow.sql): waiting, release by the last parent, cascades,
validation, races between a child's enqueue and its parent's completion, and fan-in cost."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from waiting import wait_until

Conn = psycopg.Connection[Any]


def graph(conn: Conn, tasks: list[str], deps: list[list[Any]], **extra: Any) -> list[int]:
    """enqueue_many one batch on queue q: tasks[i] with parents deps[i] (JSON refs)."""
    more = "".join(f", {k} => %({k})s" for k in extra)
    rows = conn.execute(
        "SELECT * FROM skiplock.enqueue_many('{q}', %(tasks)s, depends_on => %(deps)s::jsonb[]" + more + ")",
        {"tasks": tasks, "deps": [Jsonb(d) for d in deps], **extra},
    ).fetchall()
    return [r[0] for r in rows]


def states(conn: Conn, ids: list[int]) -> list[str]:
    found = dict(
        conn.execute("SELECT id, state::text FROM skiplock.jobs WHERE id = ANY(%s)", [ids]).fetchall()
    )
    return [found.get(i, "gone") for i in ids]


def claim(conn: Conn, n: int = 100, as_of: str | None = None) -> dict[int, Any]:
    sql = "SELECT id, lease_token FROM skiplock.claim('{q}', gen_random_uuid(), %s, '30 seconds'"
    sql += ", as_of => %s)" if as_of else ")"
    return dict(conn.execute(sql, [n, as_of] if as_of else [n]).fetchall())


def complete(conn: Conn, leases: dict[int, Any]) -> list[int]:
    rows = conn.execute(
        "SELECT * FROM skiplock.complete(%s::bigint[], %s::uuid[])", [list(leases), list(leases.values())]
    ).fetchall()
    return [r[0] for r in rows]


def fail_for_good(conn: Conn, job_id: int, token: Any) -> str:
    return conn.execute(
        "SELECT skiplock.fail(%s, %s, 'boom', retryable => false)::text", [job_id, token]
    ).fetchone()[0]


def waits_for_a_lock(conn: Conn, what: str) -> None:
    """Wait until exactly one skiplock call of another session waits for a lock."""
    wait_until(
        lambda: (
            conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%skiplock.%'"
            ).fetchone()[0]
            == 1
        ),
        what=what,
    )


def test_a_chain_runs_one_step_at_a_time(conn: Conn):
    """Pass: b waits for a, c for b; each becomes claimable exactly when its parent completes."""
    a, b, c = graph(conn, ["a", "b", "c"], [[], [-1], [-2]])
    assert states(conn, [a, b, c]) == ["available", "waiting", "waiting"]
    leases = claim(conn)
    assert list(leases) == [a]  # waiting jobs are never claimed
    assert complete(conn, leases) == [a]
    assert states(conn, [b, c]) == ["available", "waiting"]
    leases = claim(conn)
    assert list(leases) == [b]
    complete(conn, leases)
    assert states(conn, [c]) == ["available"]


def test_the_last_parent_releases_the_child_and_wakes_its_queue(conn: Conn, dsn: str):
    """Pass: a child of three parents stays waiting (pending count 3, 2, 1) until the last one
    completes; that completion's commit notifies the child's queue."""
    *parents, child = graph(conn, ["p", "p", "p", "child"], [[], [], [], [-1, -2, -3]])
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN skiplock_insert")
        leases = claim(conn)
        for i, p in enumerate(parents):
            assert conn.execute(
                "SELECT pending_parents FROM skiplock.job WHERE id = %s", [child]
            ).fetchone() == (3 - i,)
            assert states(conn, [child]) == ["waiting"]
            complete(conn, {p: leases[p]})
        assert states(conn, [child]) == ["available"]
        assert any(n.payload == "q" for n in listener.notifies(timeout=5, stop_after=1))


def test_a_failed_parent_cancels_its_descendants_in_the_same_transaction(conn: Conn):
    """Pass: with the default rule, a parent failing for good cancels its children and theirs
    (a chain of 200) in the failing transaction, each with a ParentFailed error naming its parent;
    a child on a 'run' edge becomes due instead."""
    deps: list[list[Any]] = [[]] + [[-k] for k in range(1, 200)] + [[{"job": -1, "on_failure": "run"}]]
    ids = graph(conn, ["step"] * 200 + ["cleanup"], deps)
    leases = claim(conn, 1)
    with conn.transaction():
        assert fail_for_good(conn, ids[0], leases[ids[0]]) == "failed"
        inside = states(conn, ids)
    assert inside[1:200] == ["cancelled"] * 199
    assert inside[200] == "available"
    errors = dict(
        conn.execute(
            "SELECT id, errors -> -1 FROM skiplock.job_history WHERE id = ANY(%s) AND state = 'cancelled'",
            [ids],
        ).fetchall()
    )
    assert errors[ids[1]]["type"] == "ParentFailed"
    assert errors[ids[5]]["error"] == f"parent job {ids[4]} did not complete"


def test_cascaded_cancellations_send_events(conn: Conn, dsn: str):
    """Pass: with events on, a parent failing sends `failed` and its cascade sends `cancelled`."""
    conn.execute("SELECT skiplock.enable_events()")
    parent, child = graph(conn, ["p", "c"], [[], [-1]])
    token = claim(conn)[parent]
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN skiplock_event")
        fail_for_good(conn, parent, token)
        got = {n.payload for n in listener.notifies(timeout=5, stop_after=2)}
    assert got == {"failed:q", "cancelled:q"}
    assert states(conn, [child]) == ["cancelled"]


def test_a_cancelled_waiting_job_takes_its_descendants_with_it(conn: Conn):
    a, b, c = graph(conn, ["a", "b", "c"], [[], [-1], [-2]])
    assert conn.execute("SELECT state::text FROM skiplock.cancel(%s)", [[b]]).fetchall() == [("cancelled",)]
    assert states(conn, [a, b, c]) == ["available", "cancelled", "cancelled"]


def test_per_edge_rules_override_the_jobs_default(conn: Conn):
    """Pass: on_parent_failure sets a job's default; an object edge overrides it for one parent."""
    ok, bad = graph(conn, ["ok", "bad"], [[], []])
    tolerant, strict = graph(
        conn,
        ["tolerant", "strict"],
        [[ok, bad], [ok, {"job": bad, "on_failure": "cancel"}]],
        on_parent_failure=["run"],
    )
    leases = claim(conn)
    complete(conn, {ok: leases[ok]})
    fail_for_good(conn, bad, leases[bad])
    assert states(conn, [tolerant, strict]) == ["available", "cancelled"]


def test_parents_already_finished_decide_at_enqueue(conn: Conn):
    """Pass: a completed parent does not hold a new child; a failed one cancels it at once
    (returned cancelled) or, on a 'run' edge, lets it run; a future run_at makes it scheduled."""
    done, dead = graph(conn, ["done", "dead"], [[], []])
    leases = claim(conn)
    complete(conn, {done: leases[done]})
    fail_for_good(conn, dead, leases[dead])

    def one(deps: Any, **kw: Any) -> str:
        more = "".join(f", {k} => %({k})s" for k in kw)
        return conn.execute(
            "SELECT (skiplock.enqueue('q', 'c', depends_on => %(d)s" + more + ")).state::text",
            {"d": Jsonb(deps), **kw},
        ).fetchone()[0]

    assert one([done]) == "available"
    assert one([done], delay="1 hour") == "scheduled"
    assert one([dead]) == "cancelled"
    assert one([dead], on_parent_failure="run") == "available"


BAD_GRAPHS = [
    ([[-1]], "the job at batch position 1 depends on itself"),
    ([[-2], []], "the job at batch position 1 depends on batch position 2, which does not come before it"),
    ([[], [-2]], "the job at batch position 2 depends on itself"),
    ([[], [999_999]], "the job at batch position 2 depends on job 999999, which does not exist"),
    ([["x"]], "a parent must be a job id"),
    ([[1.5]], "a parent must be a job id"),
    ([[0]], "a parent must be a job id"),
    ([[{"job": -1, "on_failure": "sometimes"}]], "a parent must be a job id"),
    ([[{"job": 1, "extra": 1}]], "a parent must be a job id"),
    ([{"not": "a list"}], "depends_on must be a JSON array of jobs, got object (batch position 1)"),
]


@pytest.mark.parametrize(("deps", "message"), BAD_GRAPHS)
def test_bad_graphs_are_rejected_with_nothing_written(conn: Conn, deps: list[Any], message: str):
    """Pass: cycles (self or forward references), unknown jobs and malformed parents raise 22023
    naming the job, and the batch writes nothing."""
    graph(conn, ["seed"], [[]])  # job 1 exists, so positive references to it are known
    before = conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone()
    with pytest.raises(
        psycopg.errors.InvalidParameterValue, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        graph(conn, ["t"] * len(deps), deps)
    assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone() == before
    assert conn.execute("SELECT count(*) FROM skiplock.job_dependency").fetchone() == (0,)


def test_bad_rules_and_lone_batch_references_are_rejected(conn: Conn):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="on_parent_failure must be cancel or run"):
        graph(conn, ["t"], [[]], on_parent_failure=["maybe"])
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="can only depend on existing job ids"):
        conn.execute("SELECT skiplock.enqueue('q', 't', depends_on => '[-1]')")
    with (
        pytest.raises(psycopg.errors.InvalidParameterValue, match="more than the limit of 3"),
        conn.transaction(),
    ):
        conn.execute("SET LOCAL skiplock.max_parents = 3")
        graph(conn, ["a", "b", "c", "d", "e"], [[], [], [], [], [-1, -2, -3, -4]])


def test_a_reaped_parent_cancels_its_children(conn: Conn):
    """Pass: a parent whose worker died is reaped to failed once its attempts are used up, and the
    reaper's transaction cancels its children: none is left waiting."""
    ids = graph(conn, ["parent", "child", "grandchild"], [[], [-1], [-2]], max_attempts=[1])
    claim(conn, 1)
    reaped = conn.execute(
        "SELECT job_id, state::text FROM skiplock.reap(as_of => now() + interval '1 minute')"
    )
    assert reaped.fetchall() == [(ids[0], "failed")]
    assert states(conn, ids) == ["failed", "cancelled", "cancelled"]
    assert conn.execute("SELECT count(*) FROM skiplock.job WHERE state = 'waiting'").fetchone() == (0,)


def test_a_child_enqueued_while_its_parent_completes_is_never_stranded(conn: Conn, dsn: str):
    """Pass: in both orders of a producer enqueueing a child of a running parent and a worker
    completing that parent, in overlapping transactions, the child ends up due."""
    for producer_first in (True, False):
        (parent,) = graph(conn, ["parent"], [[]])
        token = claim(conn)[parent]
        first = psycopg.connect(dsn)
        done: list[Any] = []

        def second(sql: str, params: list[Any], done: list[Any] = done) -> None:
            with psycopg.connect(dsn, autocommit=True) as c:
                done.append(c.execute(sql, params).fetchone()[0])

        enqueue_child = ("SELECT (skiplock.enqueue('q', 'child', depends_on => %s)).id", [Jsonb([parent])])
        complete_parent = (
            "SELECT * FROM skiplock.complete(ARRAY[%s::bigint], ARRAY[%s::uuid])",
            [parent, token],
        )
        head, tail = (enqueue_child, complete_parent) if producer_first else (complete_parent, enqueue_child)
        first_result = first.execute(*head).fetchone()[0]
        waiter = threading.Thread(target=second, args=tail)
        waiter.start()
        waits_for_a_lock(conn, "the second transaction waits for the first")
        first.commit()
        first.close()
        waiter.join(30)
        child = first_result if producer_first else done[0]
        assert states(conn, [parent, child]) == ["completed", "available"], producer_first
        complete(conn, claim(conn))


def test_a_producer_enqueueing_a_child_never_stalls_its_parents_heartbeat(conn: Conn, dsn: str):
    """Pass: while a producer's transaction that enqueued a child of a running job is open (it
    holds FOR KEY SHARE on the parent), the worker's heartbeat and progress report for that job
    return at once; only the parent's completion waits for the producer to commit."""
    (parent,) = graph(conn, ["parent"], [[]])
    token = claim(conn)[parent]
    with psycopg.connect(dsn) as producer:
        producer.execute("SELECT skiplock.enqueue('q', 'child', depends_on => %s)", [Jsonb([parent])])
        conn.execute("SET statement_timeout = '3s'")
        try:
            beat = conn.execute(
                "SELECT * FROM skiplock.heartbeat(ARRAY[%s::bigint], ARRAY[%s::uuid], '1 minute')",
                [parent, token],
            ).fetchall()
            progress = conn.execute(
                "SELECT * FROM skiplock.set_progress(ARRAY[%s::bigint], ARRAY[%s::uuid], '{50}')",
                [parent, token],
            ).fetchall()
        finally:
            conn.execute("RESET statement_timeout")
        assert beat == progress == [(parent,)]
        done: list[int] = []

        def complete_parent() -> None:
            with psycopg.connect(dsn, autocommit=True) as worker:
                done.extend(complete(worker, {parent: token}))

        waiter = threading.Thread(target=complete_parent)
        waiter.start()
        waits_for_a_lock(conn, "the parent's completion waits for the producer")
        producer.commit()
    waiter.join(30)
    assert done == [parent]
    assert conn.execute("SELECT state::text FROM skiplock.job WHERE task = 'child'").fetchone() == (
        "available",
    )


def test_parents_completing_concurrently_count_down_once_each(conn: Conn, dsn: str):
    """Pass: two transactions completing different parents of one child at the same time both
    count it down (the second waits on the child's row lock and sees the first's count)."""
    a, b, child = graph(conn, ["a", "b", "child"], [[], [], [-1, -2]])
    leases = claim(conn)
    first = psycopg.connect(dsn)
    first.execute("SELECT * FROM skiplock.complete(ARRAY[%s::bigint], ARRAY[%s::uuid])", [a, leases[a]])

    def complete_b() -> None:
        with psycopg.connect(dsn, autocommit=True) as other:
            complete(other, {b: leases[b]})

    waiter = threading.Thread(target=complete_b)
    waiter.start()
    waits_for_a_lock(conn, "the second completion waits on the child")
    first.commit()
    first.close()
    waiter.join(30)
    assert states(conn, [child]) == ["available"]
    assert conn.execute("SELECT pending_parents FROM skiplock.job WHERE id = %s", [child]).fetchone() == (0,)


def updates(conn: Conn) -> tuple[int, int]:
    """Rows updated in skiplock.job and skiplock.job_dependency, as this backend counts them."""
    return conn.execute(
        "SELECT sum(n_tup_upd) FILTER (WHERE relname = 'job'),"
        " sum(n_tup_upd) FILTER (WHERE relname = 'job_dependency')"
        " FROM pg_stat_xact_user_tables WHERE schemaname = 'skiplock'"
    ).fetchone()


def test_a_fan_in_of_10000_costs_one_child_update_per_completion_batch(conn: Conn):
    """Pass: 10,000 parents and one child; completing them 1,000 at a time updates the child row
    once per batch (the count goes down by 1,000) and each edge once: linear, not a recount.
    The child becomes due with the last batch."""
    parents = [
        r[0]
        for r in conn.execute(
            "SELECT * FROM skiplock.enqueue_many('{q}', '{p}', array_fill('{}'::jsonb, '{10000}'))"
        )
    ]
    (child,) = graph(conn, ["child"], [parents])
    assert conn.execute("SELECT pending_parents FROM skiplock.job WHERE id = %s", [child]).fetchone() == (
        10_000,
    )
    leases = claim(conn, 10_000)
    assert len(leases) == 10_000
    items = list(leases.items())
    for k in range(10):
        batch = dict(items[k * 1000 : (k + 1) * 1000])
        with conn.transaction():  # the backend's pending counters: read them around the call
            before = updates(conn)
            complete(conn, batch)
            after = updates(conn)
        assert (after[0] - before[0], after[1] - before[1]) == (1, 1000)
        expected = "available" if k == 9 else "waiting"
        assert states(conn, [child]) == [expected]
    assert conn.execute(
        "SELECT count(*) FROM skiplock.job_dependency WHERE child_id = %s AND resolved", [child]
    ).fetchone() == (10_000,)


def test_retry_of_a_cancelled_child_waits_for_its_live_parents_again(conn: Conn):
    """Pass: a child cancelled by its failed parent comes back with the parent (retry of both)
    and waits for it again; completing the parent then releases it."""
    parent, child = graph(conn, ["parent", "child"], [[], [-1]])
    fail_for_good(conn, parent, claim(conn)[parent])
    assert states(conn, [parent, child]) == ["failed", "cancelled"]
    conn.execute("SELECT * FROM skiplock.retry(%s)", [[parent, child]])
    assert states(conn, [parent, child]) == ["available", "waiting"]
    complete(conn, claim(conn))
    assert states(conn, [child]) == ["available"]


def test_a_deduplicated_child_keeps_its_own_parents(conn: Conn):
    """Pass: enqueueing a job whose dedupe key a live job holds returns that job and adds no edge
    to it; the parents it was enqueued with still decide when it runs."""
    (first,) = graph(conn, ["p"], [[]])
    (other,) = graph(conn, ["p"], [[]])
    (child,) = graph(conn, ["c"], [[first]], dedupe_keys=["k"])
    again = graph(conn, ["p2", "c"], [[], [-1]], dedupe_keys=[None, "k"])
    assert again[1] == child
    assert conn.execute(
        "SELECT parent_id FROM skiplock.job_dependency WHERE child_id = %s", [child]
    ).fetchall() == [(first,)]
    assert other not in (first, child)


def test_job_graph_and_parent_results_show_the_workflow(conn: Conn):
    """Pass: job_graph from any member returns every job of the workflow with its parents and rules;
    parent_results gives the child each parent's state, result and last error."""
    a, b, c = graph(conn, ["a", "b", "c"], [[], [], [-1, {"job": -2, "on_failure": "run"}]])
    leases = claim(conn)
    conn.execute(
        "SELECT * FROM skiplock.complete(ARRAY[%s::bigint], ARRAY[%s::uuid], ARRAY['{\"n\": 1}'::jsonb])",
        [a, leases[a]],
    )
    fail_for_good(conn, b, leases[b])
    for member in (a, b, c):
        rows = conn.execute(
            "SELECT id, task, state::text, parents, on_failure, pending_parents FROM skiplock.job_graph(%s)",
            [member],
        ).fetchall()
        assert rows == [
            (a, "a", "completed", [], [], 0),
            (b, "b", "failed", [], [], 0),
            (c, "c", "available", [a, b], ["cancel", "run"], 0),
        ]
    assert conn.execute("SELECT * FROM skiplock.parent_results(%s)", [c]).fetchall() == [
        (a, "a", "completed", {"n": 1}, None, "cancel"),
        (b, "b", "failed", None, "boom", "run"),
    ]


def test_drop_partitions_prunes_edges_of_finished_workflows(conn: Conn):
    """Pass: edges older than the retention go once their child has finished; a waiting child's
    edges stay whatever their age."""
    done_parent, done_child = graph(conn, ["a", "b"], [[], [-1]])
    complete(conn, claim(conn))
    complete(conn, claim(conn))
    live_parent, live_child = graph(conn, ["c", "d"], [[], [-1]])
    conn.execute("UPDATE skiplock.job_dependency SET created_at = now() - interval '30 days'")
    conn.execute("SELECT * FROM skiplock.drop_partitions('7 days')")
    assert conn.execute("SELECT parent_id, child_id FROM skiplock.job_dependency").fetchall() == [
        (live_parent, live_child)
    ]
    assert done_parent < done_child
