"""Workflows from Python: depends_on, chains, groups with callbacks, graphs in one enqueue_many,
run by real workers on the real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

import skiplock
from skiplock import ConfigError, Dependency, JobState

FAST = {"poll_interval": timedelta(milliseconds=50), "reap_interval": timedelta(milliseconds=100)}


def history(conn: psycopg.Connection) -> dict[int, tuple[str, object, object]]:
    """id -> (state, attempted_at, finished_at) of every finished job."""
    rows = conn.execute(
        "SELECT id, state::text, attempted_at, finished_at FROM skiplock.job_history"
    ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


async def test_a_diamond_runs_each_job_after_all_its_parents(dsn, client, conn):
    """Pass: fetch -> (resize, thumbnail) -> publish on 4 concurrent slots: every job starts after
    each of its parents finished, and each runs once."""
    ran: list[str] = []
    started: dict[str, datetime] = {}

    @skiplock.task(queue="media")
    async def step(name: str) -> str:
        # The task's own clock (the server's, on this host): a job's attempted_at is its claim's
        # transaction start, which may precede a parent's finished_at when the claim began just
        # before that completion and saw it commit part-way through.
        started[name] = datetime.now(UTC)
        ran.append(name)
        return name

    fetch = step.spec(name="fetch")
    resize = step.using(depends_on=[fetch]).spec(name="resize")
    thumb = step.using(depends_on=[fetch]).spec(name="thumbnail")
    publish = step.using(depends_on=[resize, thumb]).spec(name="publish")
    # Any order: the client sends parents first.
    ids = client.enqueue_many([publish, thumb, resize, fetch])
    assert [client.get_job(i).state for i in ids] == [JobState.WAITING] * 3 + [JobState.AVAILABLE]
    await skiplock.AsyncWorker([step], dsn=dsn, concurrency=4, burst=True, **FAST).run()
    done = history(conn)
    p, t, r, f = ids
    assert all(done[i][0] == "completed" for i in ids)
    names = {p: "publish", t: "thumbnail", r: "resize", f: "fetch"}
    for child, parents in ((r, [f]), (t, [f]), (p, [r, t])):
        assert all(started[names[child]] >= done[parent][2] for parent in parents)
    assert sorted(ran) == ["fetch", "publish", "resize", "thumbnail"]
    assert ran[0] == "fetch"
    assert ran[-1] == "publish"


async def test_a_group_callback_sees_every_members_outcome(dsn, client):
    """Pass: the callback of a group runs once, after all members, even though one failed, and
    reads each member's state, result and error (a def task, from its thread)."""
    seen = []

    @skiplock.task(queue="g", max_attempts=1)
    def member(n: int) -> int:
        if n == 2:
            raise ValueError("two is bad")
        return n * 10

    @skiplock.task(queue="g")
    def summary() -> int:
        results = skiplock.current_job().parent_results()
        seen.append([(r.state, r.result, r.error) for r in results])
        return sum(r.result or 0 for r in results)

    *members, callback = client.enqueue_group([member.spec(n=n) for n in (1, 2, 3)], summary.spec())
    assert client.get_job(callback).pending_parents == 3
    await skiplock.AsyncWorker([member, summary], dsn=dsn, burst=True, **FAST).run()
    assert client.get_job(callback).result == 40
    assert seen == [
        [
            (JobState.COMPLETED, 10, None),
            (JobState.FAILED, None, "two is bad"),
            (JobState.COMPLETED, 30, None),
        ]
    ]
    assert [n.parents for n in client.job_graph(members[0]) if n.id == callback] == [members]


async def test_async_tasks_await_their_parent_results(dsn, client):
    """Pass: an async callback awaits aparent_results(); the sync spelling tells it so; the
    client reads the same outcomes."""
    seen = []

    @skiplock.task(queue="g")
    async def member(n: int) -> int:
        return n

    @skiplock.task(queue="g")
    async def gather() -> list[int]:
        ctx = skiplock.current_job()
        with pytest.raises(ConfigError, match="aparent_results"):
            ctx.parent_results()
        seen.append(True)
        return [r.result for r in await ctx.aparent_results()]

    *members, callback = client.enqueue_group([member.spec(n=n) for n in (5, 6)], gather.spec())
    await skiplock.AsyncWorker([member, gather], dsn=dsn, burst=True, **FAST).run()
    assert client.get_job(callback).result == [5, 6]
    assert seen == [True]
    assert [r.parent_id for r in client.parent_results(callback)] == members
    with pytest.raises(ConfigError, match="needs a job run by a skiplock worker"):
        skiplock.JobContext(
            job=client.get_job(callback), worker_id=client.get_job(callback).worker_id
        ).parent_results()


async def test_a_chain_stops_at_the_step_that_fails(dsn, client):
    """Pass: in a chain, a step failing for good cancels the steps after it; they never run."""
    ran = []

    @skiplock.task(queue="c", max_attempts=1)
    def step(n: int) -> None:
        ran.append(n)
        if n == 2:
            raise RuntimeError("stop")

    ids = client.enqueue_many(skiplock.chain(*(step.spec(n=n) for n in range(1, 6))))
    await skiplock.AsyncWorker([step], dsn=dsn, burst=True, **FAST).run()
    assert ran == [1, 2]
    assert [client.get_job(i).state for i in ids] == [JobState.COMPLETED, JobState.FAILED] + [
        JobState.CANCELLED
    ] * 3
    assert client.get_job(ids[2]).errors[-1]["type"] == "ParentFailed"


async def test_a_rule_for_the_whole_graph(dsn, client):
    """Pass: enqueue_many(on_parent_failure="run") applies to every job that sets no rule of its
    own: after a failed root, its plain child runs while a child that asked to be cancelled is."""

    @skiplock.task(queue="r", max_attempts=1)
    def work(fail: bool = False) -> None:
        if fail:
            raise RuntimeError("no")

    root = work.spec(fail=True)
    runs = work.using(depends_on=[root]).spec()
    strict = work.using(depends_on=[root], on_parent_failure="cancel").spec()
    ids = client.enqueue_many([strict, runs, root], on_parent_failure="run")
    await skiplock.AsyncWorker([work], dsn=dsn, burst=True, **FAST).run()
    assert [client.get_job(i).state for i in ids] == [JobState.CANCELLED, JobState.COMPLETED, JobState.FAILED]
    with pytest.raises(ConfigError, match="on_parent_failure"):
        client.enqueue_many([root], on_parent_failure="maybe")


async def test_depends_on_existing_jobs_and_per_edge_rules(dsn, client):
    """Pass: a job enqueued alone can wait on existing jobs (ids or Jobs); Dependency(...,
    on_failure="run") lets it run past that parent's failure while another edge cancels."""

    @skiplock.task(queue="e", max_attempts=1)
    def work(fail: bool = False) -> None:
        if fail:
            raise RuntimeError("no")

    ok = work.using(client=client).enqueue()
    bad = work.using(client=client).enqueue(fail=True)
    tolerant = work.using(client=client, depends_on=[ok, Dependency(bad.id, on_failure="run")]).enqueue()
    strict = work.using(client=client, depends_on=[ok.id, bad]).enqueue()
    assert tolerant.state is JobState.WAITING
    assert tolerant.pending_parents == 2
    await skiplock.AsyncWorker([work], dsn=dsn, burst=True, **FAST).run()
    assert client.get_job(tolerant.id).state is JobState.COMPLETED
    assert client.get_job(strict.id).state is JobState.CANCELLED


def test_graphs_larger_than_a_round_trip_go_in_one_transaction(client, dsn):
    """Pass: a fan-in of 10,000 members goes out in several statements (parents in later chunks
    named by id) inside one transaction; rolled back, nothing of it remains."""

    @skiplock.task(queue="big")
    def member(n: int) -> None: ...

    @skiplock.task(queue="big")
    def done() -> None: ...

    specs = skiplock.group([member.spec(n=n) for n in range(10_000)], then=done.spec())
    with psycopg.connect(dsn) as tx:
        ids = client.enqueue_many(specs, conn=tx)
        (pending,) = tx.execute(
            "SELECT pending_parents FROM skiplock.job WHERE id = %s", [ids[-1]]
        ).fetchone()
        assert pending == 10_000
        tx.rollback()
    assert client.list_jobs(queue="big") == []
    ids = client.enqueue_many(specs)
    assert client.get_job(ids[-1]).pending_parents == 10_000
    assert len(set(ids)) == 10_001


def test_cycles_and_foreign_specs_are_refused_before_anything_is_sent(client):
    """Pass: a cycle is named task by task; a JobSpec outside the batch and bad rules are refused;
    nothing is written."""

    @skiplock.task(queue="x")
    def t(n: int) -> None: ...

    a = t.spec(n=1)
    b = t.using(depends_on=[a]).spec(n=2)
    c = t.using(depends_on=[b]).spec(n=3)
    cyclic_a = t.using(depends_on=[c]).spec(n=1)
    b2 = t.using(depends_on=[cyclic_a]).spec(n=2)
    c2 = t.using(depends_on=[b2]).spec(n=3)
    # a -> b -> c -> a cannot be built from immutable specs; a spec naming one outside its batch can.
    with pytest.raises(ConfigError, match="not in this batch"):
        client.enqueue_many([cyclic_a, b2, c2])
    loop = skiplock.JobSpec(task="t", queue="x")
    looped = skiplock.JobSpec(task="t", queue="x", depends_on=(loop,))
    object.__setattr__(loop, "depends_on", (looped,))  # the only way to tie the knot
    with pytest.raises(
        ConfigError,
        match=r"dependency cycle: t \(batch position 1\) -> t \(batch position 2\) -> t \(batch position 1\)",
    ):
        client.enqueue_many([loop, looped])
    with pytest.raises(ConfigError, match="on_parent_failure"):
        client.enqueue_many([t.using(on_parent_failure="sometimes").spec(n=1)])
    with pytest.raises(ConfigError, match="a parent must be a job id"):
        client.enqueue("t", depends_on=[-3])
    assert client.list_jobs(queue="x") == []
