"""Least privilege (sql/functions/grants.sql): the permission matrix of the three group roles.

Each test logs in as real LOGIN roles made members of skiplock_producer, skiplock_worker or
skiplock_monitor, and shows that each can do its job end to end and nothing else: every refusal
is PostgreSQL's insufficient_privilege (42501). The test database is migrated by the superuser,
so one test migrates a database of its own as a plain owner (no CREATEROLE, no superuser), the
way production runs, where SECURITY DEFINER functions run without a superuser behind them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from typer.testing import CliRunner

import skiplock
from skiplock import JobSpec, JobState
from skiplock._core import copying
from skiplock._sql import migrations
from skiplock.cli import app
from waiting import await_until

PRODUCER, WORKER, MONITOR = "skiplock_producer", "skiplock_worker", "skiplock_monitor"
FAST = {"poll_interval": timedelta(milliseconds=50), "reap_interval": timedelta(milliseconds=100)}

#: The functions each role may execute: exactly these (a new function fails this test until its
#: migration decides who may run it, in skiplock._grant_roles()).
EXECUTE = {
    PRODUCER: {"enqueue", "enqueue_many", "stage_jobs", "enqueue_staged", "job_graph", "parent_results"},
    WORKER: {
        "claim",
        "complete",
        "fail",
        "heartbeat",
        "release",
        "set_progress",
        "reap",
        "register_worker",
        "worker_heartbeat",
        "deregister_worker",
        "upsert_schedule",
        "fire_schedule",
        "ensure_partitions",
        "drop_partitions",
        "enqueue",
        "enqueue_many",
        "stage_jobs",
        "enqueue_staged",
        "job_graph",
        "parent_results",
        "backoff",
        "retry_delay",
        "_check_job",
        "_check_cron",
        "_cron_error",
        "_check_tz",
        "_error_entry",
        "_invalid",
        "_is_queue_name",
        "_is_task_name",
        "_limit_key",
        "_notify",
        "_notify_done",
        "_setting",
        "_show",
        "_at",
        "_history_row",
    },
    MONITOR: {"job_graph", "parent_results"},
}
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
#: Privileges on the schema's tables and views (history partitions apart), per role.
TABLES: dict[str, dict[str, set[str]]] = {
    PRODUCER: {"migration": {"SELECT"}, "migration_file": {"SELECT"}, "jobs": {"SELECT"}},
    WORKER: {
        "migration": {"SELECT"},
        "migration_file": {"SELECT"},
        "job": {"SELECT", "UPDATE", "DELETE"},
        "job_history": {"SELECT", "INSERT"},
        "queue": {"SELECT", "UPDATE"},
        "queue_key_bucket": {"SELECT", "INSERT", "UPDATE", "DELETE"},
        "worker": {"SELECT", "INSERT", "UPDATE", "DELETE"},
        "schedule": {"SELECT", "INSERT", "UPDATE"},
        "jobs": {"SELECT"},
        "queue_stats": {"SELECT"},
        "workers": {"SELECT"},
        "webhook": {"SELECT"},  # to sign deliveries with the secret
    },
}
MAIN_RELATIONS = (
    "job", "job_history", "job_dependency", "queue", "queue_key_bucket", "worker", "schedule", "migration",
    "migration_file", "jobs", "queue_stats", "workers", "queue_activity", "task_stats", "recent_failures", "health", "webhooks",
)  # fmt: skip
TABLES[MONITOR] = {name: {"SELECT"} for name in MAIN_RELATIONS}

#: Writes and admin calls that only the owner may run; producers and monitors may run none.
ADMIN = {
    "cancel": "SELECT * FROM skiplock.cancel(ARRAY[1]::bigint[])",
    "retry": "SELECT * FROM skiplock.retry(ARRAY[1]::bigint[])",
    "retry_failed": "SELECT * FROM skiplock.retry_failed()",
    "purge": "SELECT skiplock.purge(before => now())",
    "pause_queue": "SELECT * FROM skiplock.pause_queue('q')",
    "resume_queue": "SELECT * FROM skiplock.resume_queue('q')",
    "set_queue_limits": "SELECT * FROM skiplock.set_queue_limits('q', concurrency => 1)",
    "delete_schedule": "SELECT skiplock.delete_schedule('s')",
    "pause_schedule": "SELECT skiplock.pause_schedule('s')",
    "delete history": "DELETE FROM skiplock.job_history",
    "truncate job": "TRUNCATE skiplock.job",
    "create table": "CREATE TABLE skiplock.intruder (x integer)",
    "create function": "CREATE FUNCTION skiplock.intruder() RETURNS integer LANGUAGE sql AS 'SELECT 1'",
    "drop history": "DROP TABLE skiplock.job_history",
    "alter job": "ALTER TABLE skiplock.job ADD COLUMN intruder integer",
    "grant roles": "SELECT * FROM skiplock._grant_roles()",
    "create roles": "SELECT skiplock._create_roles()",
}
#: What the worker does through functions only; as plain SQL it is refused to producers and monitors.
WORKER_CALLS = {
    "claim": "SELECT * FROM skiplock.claim(ARRAY['q'], gen_random_uuid())",
    "complete": "SELECT * FROM skiplock.complete(ARRAY[1]::bigint[], ARRAY[gen_random_uuid()])",
    "fail": "SELECT skiplock.fail(1, gen_random_uuid(), 'boom')",
    "heartbeat": "SELECT * FROM skiplock.heartbeat(ARRAY[1]::bigint[], ARRAY[gen_random_uuid()])",
    "release": "SELECT * FROM skiplock.release(ARRAY[1]::bigint[], ARRAY[gen_random_uuid()])",
    "reap": "SELECT * FROM skiplock.reap()",
    "ensure_partitions": "SELECT * FROM skiplock.ensure_partitions()",
    "drop_partitions": "SELECT * FROM skiplock.drop_partitions()",
    "upsert_schedule": "SELECT * FROM skiplock.upsert_schedule('s', '* * * * *', 't')",
    "update job": "UPDATE skiplock.job SET state = 'completed'",
    "delete job": "DELETE FROM skiplock.job",
    "insert job": "INSERT INTO skiplock.job (queue, task, state) VALUES ('q', 't', 'running')",
    "update queue": "UPDATE skiplock.queue SET paused_at = now()",
}


@pytest.fixture(autouse=True)
def roles(dsn: str) -> None:
    """The group roles exist and hold their privileges: migrating creates no role, `skiplock
    migrate --roles` (Migrator.grant_roles) does."""
    assert skiplock.Migrator(dsn).grant_roles() == {PRODUCER: True, WORKER: True, MONITOR: True}


@pytest.fixture
def login(conn: psycopg.Connection[Any], dsn: str) -> Iterator[Callable[..., str]]:
    """Make LOGIN roles, members of a group role; return a DSN that connects as the new role.

    Roles are cluster-wide: each gets a unique name and is dropped at the end, with what it owns.
    """
    made: list[str] = []

    def make(group: str | None = None, *, target: str | None = None, **attributes: bool) -> str:
        name = f"skiplock_t_{uuid.uuid4().hex[:12]}"
        options = sql.SQL(" ").join(sql.SQL(k.upper()) for k, on in attributes.items() if on)
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN {}").format(sql.Identifier(name), options))
        made.append(name)
        if group is not None:
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(name)))
        return make_conninfo(target or dsn, user=name, password=None)

    yield make
    for name in reversed(made):
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [name])
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def refused(dsn: str, statement: str) -> None:
    """Assert that ``statement`` fails with insufficient_privilege for the user of ``dsn``."""
    with psycopg.connect(dsn, autocommit=True) as c, pytest.raises(errors.InsufficientPrivilege):
        c.execute(statement)


def run(dsn: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as c:
        return c.execute(statement, params).fetchall()


def test_security_definer_functions_pin_search_path(conn):
    """Pass: the SECURITY DEFINER functions are exactly the twelve meant to be, and each pins
    search_path to pg_catalog then pg_temp, so no caller's schema or temp object can stand in for
    what their bodies call."""
    rows = conn.execute(
        """
        SELECT p.proname, COALESCE(p.proconfig, '{}')
        FROM pg_proc AS p
        WHERE p.pronamespace = 'skiplock'::regnamespace AND p.prosecdef
        """
    ).fetchall()
    assert {name for name, _ in rows} == {
        "enqueue", "enqueue_many", "stage_jobs", "enqueue_staged", "ensure_partitions", "drop_partitions",
        "_webhooks_enqueue", "_webhooks_enqueue_inserted", "_webhooks_enqueue_updated",
        "_resolve_dependents", "job_graph", "parent_results",
    }  # fmt: skip
    for name, config in rows:
        paths = [c for c in config if c.startswith("search_path=")]
        assert paths == ["search_path=pg_catalog, pg_temp"], name


def test_public_executes_no_skiplock_function(conn):
    """Pass: PostgreSQL's default EXECUTE for PUBLIC is revoked on every function of the schema."""
    open_to_all = conn.execute(
        """
        SELECT p.proname
        FROM pg_proc AS p, aclexplode(COALESCE(p.proacl, acldefault('f', p.proowner))) AS a
        WHERE p.pronamespace = 'skiplock'::regnamespace AND a.grantee = 0
        """
    ).fetchall()
    assert open_to_all == []


@pytest.mark.parametrize("role", [PRODUCER, WORKER, MONITOR])
def test_each_role_holds_exactly_its_privileges(conn, role):
    """Pass: the functions a role may execute and its privileges on every table and view are the
    matrix above, no more and no less; it may use the schema but create nothing in it."""
    functions = conn.execute(
        """
        SELECT p.proname FROM pg_proc AS p
        WHERE p.pronamespace = 'skiplock'::regnamespace AND has_function_privilege(%s, p.oid, 'EXECUTE')
        """,
        [role],
    ).fetchall()
    assert {f for (f,) in functions} == EXECUTE[role]
    held: dict[str, set[str]] = {}
    for relname, ispartition in conn.execute(
        """
        SELECT c.relname, c.relispartition FROM pg_class AS c
        WHERE c.relnamespace = 'skiplock'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
        """
    ).fetchall():
        privileges = {
            p
            for p in (("SELECT", "UPDATE", "USAGE") if relname.endswith("_seq") else TABLE_PRIVILEGES)
            if conn.execute(
                "SELECT has_table_privilege(%s, %s, %s)"
                if not relname.endswith("_seq")
                else "SELECT has_sequence_privilege(%s, %s, %s)",
                [role, f"skiplock.{relname}", p],
            ).fetchone()[0]
        }
        if ispartition:  # read through job_history; only the monitor may read a partition directly
            assert privileges == ({"SELECT"} if role == MONITOR else set()), relname
        elif privileges:
            held[relname] = privileges
    assert held == TABLES[role]
    schema = conn.execute(
        "SELECT has_schema_privilege(%s, 'skiplock', 'USAGE'), has_schema_privilege(%s, 'skiplock', 'CREATE')",
        [role, role],
    ).fetchone()
    assert schema == (True, False)


async def test_producer_enqueues_and_reads_jobs_but_changes_nothing_else(conn, dsn, login):
    """Pass: a producer enqueues single jobs and batches with dedupe keys (a repeated key returns
    the holder; a key within its window returns the completed job), reads them back and waits on
    them; every other write, as a function call or plain SQL, is refused."""
    producer = login(PRODUCER)
    async with skiplock.AsyncClient(producer) as client:
        first = await client.enqueue("send", {"n": 1}, queue="mail", dedupe_key="mail-1")
        again = await client.enqueue("send", {"n": 1}, queue="mail", dedupe_key="mail-1")
        assert again.id == first.id
        ids = await client.enqueue_many(
            [
                JobSpec(task="send", args={"n": 2}, queue="mail", dedupe_key="mail-2"),
                JobSpec(task="send", args={"n": 3}, queue="mail"),
                JobSpec(task="send", args={"n": 1}, queue="mail", dedupe_key="mail-1"),
            ]
        )
        assert len(set(ids)) == 3
        assert ids[2] == first.id
        fetched = await client.get_job(first.id)
        assert (fetched.state, fetched.args) == (JobState.AVAILABLE, {"n": 1})
        assert {j.id for j in await client.list_jobs(queue="mail")} == set(ids)

        # The owner finishes the job; within its window the key still answers with it, from history.
        claimed, token = conn.execute(
            "SELECT id, lease_token FROM skiplock.claim(ARRAY['mail'], gen_random_uuid())"
        ).fetchone()
        assert claimed == first.id  # the oldest of equal priority
        conn.execute("SELECT skiplock.complete(ARRAY[%s]::bigint[], ARRAY[%s]::uuid[])", [first.id, token])
        done = await client.enqueue(
            "send", queue="mail", dedupe_key="mail-1", dedupe_window=timedelta(hours=1)
        )
        assert (done.id, done.state) == (first.id, JobState.COMPLETED)
        assert (await client.wait(first.id, timeout=5)).state is JobState.COMPLETED

    for statement in [*WORKER_CALLS.values(), *ADMIN.values(), "SELECT * FROM skiplock.job"]:
        refused(producer, statement)
    counts = conn.execute("SELECT state::text, count(*) FROM skiplock.jobs GROUP BY 1 ORDER BY 1").fetchall()
    assert counts == [("available", 2), ("completed", 1)]


async def test_worker_drains_fires_schedules_and_keeps_partitions_but_cannot_purge_or_run_ddl(
    conn, dsn, login, caplog
):
    """Pass: as a worker role, a burst drain completes, retries and dead-letters jobs; a second
    worker stores and fires a cron schedule and runs partition maintenance (the new partition is
    owned by the schema owner, an expired one is dropped); the same role cannot create, alter or
    drop tables, delete or purge history, or run admin functions."""
    worker = login(WORKER)
    caplog.set_level(logging.WARNING, logger="skiplock")

    @skiplock.task(queue="roles")
    def double(n: int) -> int:
        return n * 2

    @skiplock.task(queue="roles", max_attempts=3)
    async def flaky() -> str:
        if skiplock.current_job().attempt == 1:
            raise skiplock.Retry(after=timedelta(0))
        return "second time"

    @skiplock.task(queue="roles")
    def broken() -> None:
        raise skiplock.Fail("not today")

    with skiplock.Client(dsn) as owner:
        ok = owner.enqueue("double", {"n": 21}, queue="roles")
        retried = owner.enqueue("flaky", queue="roles")
        dead = owner.enqueue("broken", queue="roles")
    await skiplock.AsyncWorker(
        [double, flaky, broken], dsn=worker, burst=True, maintenance=False, schedules=False, **FAST
    ).run()
    rows = dict(
        (i, (s, a, r))
        for i, s, a, r in conn.execute(
            "SELECT id, state::text, attempt, result FROM skiplock.jobs"
        ).fetchall()
    )
    assert rows[ok.id] == ("completed", 1, 42)
    assert rows[retried.id] == ("completed", 2, "second time")
    assert rows[dead.id][:2] == ("failed", 1)
    assert conn.execute("SELECT count(*) FROM skiplock.worker").fetchone()[0] == 0  # deregistered

    # Partition maintenance: one expired day to drop, one day ahead to create.
    old, ahead = conn.execute(
        """
        SELECT 'job_history_p' || to_char((now() AT TIME ZONE 'UTC')::date - 30, 'YYYYMMDD'),
               'job_history_p' || to_char((now() AT TIME ZONE 'UTC')::date + 3, 'YYYYMMDD')
        """
    ).fetchone()
    conn.execute("SELECT skiplock.ensure_partitions(days_ahead => 0, as_of => now() - interval '30 days')")
    conn.execute(sql.SQL("DROP TABLE IF EXISTS skiplock.{}").format(sql.Identifier(ahead)))

    def partitions() -> set[str]:
        return {
            r for (r,) in conn.execute("SELECT relname::text FROM pg_class WHERE relname ~ '^job_history_p'")
        }

    assert old in partitions()
    assert ahead not in partitions()
    ticks: list[int] = []

    @skiplock.cron("* * * * * *", name="roles-tick")
    @skiplock.task(queue="roles-cron")
    async def tick() -> None:
        ticks.append(skiplock.current_job().job.id)

    scheduler = skiplock.AsyncWorker(
        [tick], dsn=worker, maintenance_interval=timedelta(milliseconds=200), **FAST
    )
    running = asyncio.create_task(scheduler.run())
    try:
        await await_until(
            lambda: _now(bool(ticks) and ahead in partitions() and old not in partitions()),
            timeout=30,
            what="a cron tick run and partitions maintained",
        )
    finally:
        await scheduler.stop()
        await running
    owner_of = conn.execute(
        """
        SELECT pg_get_userbyid(c.relowner), pg_get_userbyid(p.proowner)
        FROM pg_class AS c, pg_proc AS p
        WHERE c.relname = %s AND p.oid = 'skiplock.ensure_partitions(integer, timestamptz)'::regprocedure
        """,
        [ahead],
    ).fetchone()
    assert owner_of[0] == owner_of[1]  # created as the function's owner, not as the worker
    assert conn.execute("SELECT task FROM skiplock.schedule").fetchall() == [("tick",)]
    assert not [r.getMessage() for r in caplog.records if "permission denied" in r.getMessage()]

    for statement in [
        "CREATE TABLE skiplock.intruder (x integer)",
        "DROP TABLE skiplock.job_history",
        sql.SQL("DROP TABLE skiplock.{}").format(sql.Identifier(ahead)).as_string(conn),
        "ALTER TABLE skiplock.job ADD COLUMN intruder integer",
        "TRUNCATE skiplock.job",
        "DELETE FROM skiplock.job_history",
        "UPDATE skiplock.job_history SET state = 'completed'",
        "SELECT skiplock.purge(before => now(), states => '{completed,failed,cancelled}')",
        "INSERT INTO skiplock.job (queue, task) VALUES ('roles', 'double')",
        "SELECT * FROM skiplock.cancel(ARRAY[1]::bigint[])",
        "SELECT * FROM skiplock.retry(ARRAY[1]::bigint[])",
        "SELECT * FROM skiplock.pause_queue('roles')",
        "SELECT * FROM skiplock._grant_roles()",
    ]:
        refused(worker, statement)
    assert conn.execute("SELECT count(*) FROM skiplock.job_history WHERE queue = 'roles'").fetchone()[0] == 3


def test_monitor_reads_everything_and_writes_nothing(conn, dsn, login):
    """Pass: a monitor role reads every table and view (history partitions too), lists queues,
    jobs, workers and schedules through the client and the CLI, and checks the schema; every write
    and every function call is refused, and nothing changed."""
    with skiplock.Client(dsn) as owner:
        job = owner.enqueue("send", {"n": 1}, queue="mail")
        owner.pause_queue("mail")
        owner.schedule("nightly", "0 3 * * *", "send", queue="mail")
    monitor = login(MONITOR)
    relations = [
        r
        for (r,) in conn.execute(
            "SELECT relname::text FROM pg_class WHERE relnamespace = 'skiplock'::regnamespace"
            " AND relkind IN ('r', 'p', 'v')"
        )
    ]
    assert set(MAIN_RELATIONS) <= set(relations)
    with psycopg.connect(monitor, autocommit=True) as c:
        for relname in relations:
            if relname == "webhook":  # the secrets: the monitor reads the webhooks view instead
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    c.execute("SELECT secret FROM skiplock.webhook LIMIT 1")
                continue
            c.execute(sql.SQL("SELECT * FROM skiplock.{} LIMIT 1").format(sql.Identifier(relname)))
    with skiplock.Client(monitor) as client:
        assert client.get_job(job.id).state is JobState.AVAILABLE
        assert {(s.queue, s.state, s.paused) for s in client.queue_stats()} == {
            ("mail", JobState.AVAILABLE, True)
        }
        assert client.workers() == []
        assert [s.name for s in client.schedules()] == ["nightly"]
    assert skiplock.Migrator(monitor).status().is_current
    result = CliRunner().invoke(app, ["queues", "list", "--dsn", monitor])
    assert result.exit_code == 0, result.output
    assert "mail" in result.output
    assert "paused" in result.output

    enqueue_calls = {
        "enqueue": "SELECT * FROM skiplock.enqueue('mail', 'send')",
        "enqueue_many": "SELECT * FROM skiplock.enqueue_many('{mail}', '{send}')",
        "update history": "UPDATE skiplock.job_history SET result = NULL",
        "insert queue": "INSERT INTO skiplock.queue (name) VALUES ('other')",
        "update migration": "UPDATE skiplock.migration SET checksum = ''",
    }
    for statement in [*enqueue_calls.values(), *WORKER_CALLS.values(), *ADMIN.values()]:
        refused(monitor, statement)
    assert conn.execute("SELECT count(*), min(state::text) FROM skiplock.jobs").fetchone() == (1, "available")
    assert conn.execute("SELECT paused_at IS NOT NULL FROM skiplock.queue").fetchone() == (True,)


def test_grant_roles_reapplies_the_matrix_and_takes_back_extra_privileges(conn, dsn):
    """Pass: `skiplock migrate --roles` reports every role with its privileges applied, and a
    privilege granted to a group by hand is gone afterwards (the matrix is the whole of it)."""
    conn.execute("GRANT DELETE ON skiplock.job_history TO skiplock_worker")
    conn.execute("GRANT EXECUTE ON FUNCTION skiplock.purge TO skiplock_worker")
    assert conn.execute(
        "SELECT has_table_privilege('skiplock_worker', 'skiplock.job_history', 'DELETE')"
    ).fetchone()[0]
    result = CliRunner().invoke(app, ["migrate", "--roles", "--dsn", dsn])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "already up to date",
        "skiplock_producer: privileges applied",
        "skiplock_worker: privileges applied",
        "skiplock_monitor: privileges applied",
    ]
    assert conn.execute(
        "SELECT has_table_privilege('skiplock_worker', 'skiplock.job_history', 'DELETE'),"
        " has_function_privilege('skiplock_worker', 'skiplock.purge(text, text, timestamptz, skiplock.job_state[], integer)', 'EXECUTE'),"
        " has_function_privilege('skiplock_worker', 'skiplock.claim(text[], uuid, integer, interval, timestamptz)', 'EXECUTE')"
    ).fetchone() == (False, False, True)
    assert skiplock.Migrator(dsn).grant_roles() == {PRODUCER: True, WORKER: True, MONITOR: True}


async def test_a_plain_owner_migrates_and_its_roles_work(conn, dsn, login, monkeypatch):
    """Pass: an owner without superuser or CREATEROLE migrates a database of its own (the group
    roles exist already, so their privileges are applied); there a producer enqueues (a batch
    through COPY too: the staging table is the owner's, the producer may insert), a worker
    drains and creates history partitions, which belong to the owner; the owner may not
    create roles, and a user who does not own the schema cannot re-apply the privileges."""
    owner = login()
    owner_name = str(conninfo_to_dict(owner)["user"])
    dbname = f"skiplock_roles_{uuid.uuid4().hex[:12]}"
    conn.execute(
        sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(dbname), sql.Identifier(owner_name))
    )
    try:
        owned = make_conninfo(owner, dbname=dbname)
        assert skiplock.Migrator(owned).up()[-1] == migrations()[-1].version  # all of them
        assert skiplock.Migrator(owned).grant_roles() == {PRODUCER: True, WORKER: True, MONITOR: True}
        producer = login(PRODUCER, target=owned)
        worker = login(WORKER, target=owned)
        ids = [
            r[0]
            for r in run(
                producer,
                "SELECT e.id FROM skiplock.enqueue_many('{roles}', '{double}', ARRAY['{\"n\": 1}', '{\"n\": 2}']::jsonb[]) AS e(id)",
            )
        ]

        # A batch through COPY: the staging table belongs to the plain owner, the producer fills it.
        monkeypatch.setattr(copying, "COPY_MIN_BATCH", 10)
        with skiplock.Client(producer) as client:
            copied = client.enqueue_many(
                [JobSpec(task="copied", args={"n": n}, queue="roles_copy") for n in range(10)]
            )
        assert run(
            owned, "SELECT id, (args ->> 'n')::int FROM skiplock.jobs WHERE queue = 'roles_copy' ORDER BY id"
        ) == [(i, n) for n, i in enumerate(copied)]

        @skiplock.task(queue="roles")
        def double(n: int) -> int:
            return n * 2

        await skiplock.AsyncWorker(
            [double], dsn=worker, burst=True, maintenance=False, schedules=False, **FAST
        ).run()
        assert run(owned, "SELECT id, result FROM skiplock.jobs WHERE queue = 'roles' ORDER BY id") == [
            (ids[0], 2),
            (ids[1], 4),
        ]
        made = run(worker, "SELECT * FROM skiplock.ensure_partitions(days_ahead => 10)")
        assert made
        assert run(
            owned,
            "SELECT DISTINCT pg_get_userbyid(relowner)::text FROM pg_class WHERE relname = ANY(%s)",
            [[m for (m,) in made]],
        ) == [(owner_name,)]
        refused(worker, "DROP TABLE skiplock.job_history")
        with psycopg.connect(owned, autocommit=True) as c, pytest.raises(errors.InsufficientPrivilege):
            c.execute("CREATE ROLE skiplock_t_not_allowed NOLOGIN")
        with pytest.raises(skiplock.SkiplockError, match="permission denied for function _create_roles"):
            skiplock.Migrator(worker).grant_roles()
    finally:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


async def _now(value: bool) -> bool:
    return value
