"""Upgrades: a database of the pre-release layout, the repeatable files over live data, and two
migrations at once.

The pre-release migrations 0001-0018 were squashed into ``0001_baseline.sql``. Every database made
before the squash was migrated by them, so the first test builds one exactly as they did (the files
are read from the commit that last had them, and checked against ``legacy.sha256``), seeds a job in
every state plus a schedule, a webhook and limits through their functions, upgrades it with
today's migrator and checks that it is the schema a fresh install has and that every seeded thing
still works. Changed files of ``sql/functions`` are re-applied over live data the same way (second
test). Later versioned migrations get the same treatment by adding their version to
``UPGRADES_FROM``.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import skiplock
from skiplock._sql import legacy_migrations, migrations, routines, sql_root

ROOT = Path(__file__).resolve().parents[2]
#: The last commit whose sql/migrations held the pre-release files 0001-0018.
LEGACY_COMMIT = "3eef1e6"
LATER = "2100-01-01 00:00:00+00"  # a time at which every seeded delay has passed


@pytest.fixture
def empty(dsn: str) -> Iterator[str]:
    """A database on the test server without the skiplock schema."""
    name = f"skiplock_upgrade_{uuid.uuid4().hex[:8]}"
    admin = make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield make_conninfo(**{**conninfo_to_dict(dsn), "dbname": name})
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def legacy_files() -> list[tuple[int, str, str]]:
    """(version, name, text) of the pre-release migrations, checked against legacy.sha256."""
    files = []
    for version, (name, checksum) in sorted(legacy_migrations().items()):
        path = f"sql/migrations/{version:04d}_{name}.sql"
        text = subprocess.run(
            ["git", "show", f"{LEGACY_COMMIT}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout
        assert hashlib.sha256(text.encode()).hexdigest() == checksum, path
        files.append((version, name, text))
    return files


def migrate_as_before_the_squash(dsn: str, upto: int | None = None) -> None:
    """What the pre-release migrator did: each file in its own transaction, recorded with its checksum."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(
            "CREATE SCHEMA skiplock; CREATE TABLE skiplock.migration (version integer PRIMARY KEY,"
            " name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, name, text in legacy_files():
            if upto is not None and version > upto:
                break
            with c.transaction():
                c.execute(text.encode())
                c.execute(
                    "INSERT INTO skiplock.migration (version, name, checksum) VALUES (%s, %s, %s)",
                    [version, name, hashlib.sha256(text.encode()).hexdigest()],
                )


def seed(c: psycopg.Connection[Any]) -> tuple[dict[str, int], tuple[int, uuid.UUID]]:
    """A job in every state, a schedule, a webhook and limits, through the SQL API; returns the
    jobs' ids by state and the running job's (id, lease token)."""

    def one(sql: str, params: Any = None) -> Any:
        row = c.execute(sql, params).fetchone()
        assert row is not None
        return row[0]

    def enqueue(queue: str, **extra: Any) -> int:
        options = "".join(f", {k} => %({k})s" for k in extra)
        return int(one(f"SELECT (skiplock.enqueue(%(q)s, 't'{options})).id", {"q": queue, **extra}))

    def claim(queue: str) -> tuple[int, uuid.UUID]:
        row = c.execute(
            "SELECT id, lease_token FROM skiplock.claim(ARRAY[%s], gen_random_uuid())", [queue]
        ).fetchone()
        assert row is not None
        return row

    ids = {"available": enqueue("u_available"), "scheduled": enqueue("u_scheduled", delay=timedelta(hours=1))}
    ids["parent"] = enqueue("u_parent")
    ids["waiting"] = int(
        one("SELECT (skiplock.enqueue('u_child', 't', depends_on => %s::jsonb)).id", [f"[{ids['parent']}]"])
    )
    for state in ("running", "retryable", "failed", "completed", "cancelled"):
        ids[state] = enqueue(f"u_{state}", max_attempts=2 if state == "retryable" else 1)
    running = claim("u_running")
    retryable = claim("u_retryable")
    assert one("SELECT skiplock.fail(%s, %s, 'boom', retry_in => '1 hour')::text", retryable) == "retryable"
    failed = claim("u_failed")
    assert one("SELECT skiplock.fail(%s, %s, 'boom')::text", failed) == "failed"
    completed = claim("u_completed")
    c.execute("SELECT skiplock.complete(ARRAY[%s]::bigint[], ARRAY[%s]::uuid[])", completed)
    c.execute("SELECT skiplock.cancel(ARRAY[%s]::bigint[])", [ids["cancelled"]])
    c.execute("SELECT skiplock.upsert_schedule('u_every_minute', '* * * * *', 't', 'u_cron')")
    c.execute("SELECT skiplock.add_webhook('http://127.0.0.1:9/hook', repeat('s', 16), '{completed}')")
    c.execute("SELECT skiplock.set_queue_limits('u_available', concurrency => 3, rate => 5, burst => 10)")
    return ids, running


def states(c: psycopg.Connection[Any], ids: dict[str, int]) -> dict[str, str]:
    rows = dict(
        c.execute(
            "SELECT id, state::text FROM skiplock.jobs WHERE id = ANY(%s)", [list(ids.values())]
        ).fetchall()
    )
    return {k: rows[v] for k, v in ids.items()}


SEEDED = {
    "available": "available",
    "scheduled": "scheduled",
    "parent": "available",
    "waiting": "waiting",
    "running": "running",
    "retryable": "retryable",
    "failed": "failed",
    "completed": "completed",
    "cancelled": "cancelled",
}


def fingerprint(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """The schema as the catalogs describe it (daily partitions apart): what pg_dump would show."""
    queries = {
        "functions": """SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid)
                        FROM pg_proc AS p WHERE p.pronamespace = 'skiplock'::regnamespace ORDER BY 1, 2""",
        "relations": """SELECT c.relname, c.relkind::text, c.reloptions::text FROM pg_class AS c
                        WHERE c.relnamespace = 'skiplock'::regnamespace AND c.relname !~ '_p[0-9]{8}'
                        ORDER BY 1""",
        "columns": """SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                             pg_get_expr(d.adbin, d.adrelid)
                      FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid
                      LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                      WHERE c.relnamespace = 'skiplock'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
                        AND c.relname !~ '_p[0-9]{8}' ORDER BY 1, 2""",
        "constraints": """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
                          WHERE connamespace = 'skiplock'::regnamespace AND conrelid::regclass::text !~ '_p[0-9]{8}'
                          ORDER BY 1, 2""",
        "indexes": """SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'skiplock'
                      AND tablename !~ '_p[0-9]{8}' ORDER BY 1""",
        "views": """SELECT viewname, definition FROM pg_views WHERE schemaname = 'skiplock' ORDER BY 1""",
        # The webhook and event triggers exist only while webhooks or events are on: data, not schema.
        "triggers": r"""SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal
                       AND tgrelid::regclass::text LIKE 'skiplock.%'
                       AND tgfoid::regproc::text !~ '^skiplock\._(webhooks|events)_' ORDER BY 1""",
        "enum": """SELECT enumlabel FROM pg_enum WHERE enumtypid = 'skiplock.job_state'::regtype ORDER BY enumsortorder""",
    }
    with psycopg.connect(dsn) as c:
        return {name: c.execute(q).fetchall() for name, q in queries.items()}


def still_works(c: psycopg.Connection[Any], ids: dict[str, int], running: tuple[int, uuid.UUID]) -> None:
    """Every seeded job can go on: finish, be claimed when due, be brought back; the rest fires."""
    assert states(c, ids) == SEEDED
    assert c.execute(
        "SELECT skiplock.complete(ARRAY[%s]::bigint[], ARRAY[%s]::uuid[])", running
    ).fetchall() == [(running[0],)]
    parent = c.execute(
        "SELECT id, lease_token FROM skiplock.claim(ARRAY['u_parent'], gen_random_uuid())"
    ).fetchone()
    assert parent is not None
    assert parent[0] == ids["parent"]
    c.execute("SELECT skiplock.complete(ARRAY[%s]::bigint[], ARRAY[%s]::uuid[])", parent)
    # The child was released by its parent's completion; the delayed jobs are due later.
    claimed = {
        r[0]
        for r in c.execute(
            "SELECT id FROM skiplock.claim(ARRAY['u_available', 'u_child', 'u_scheduled', 'u_retryable'],"
            " gen_random_uuid(), max_jobs => 10, as_of => %s)",
            [LATER],
        )
    }
    assert claimed == {ids["available"], ids["waiting"], ids["scheduled"], ids["retryable"]}
    assert {
        r[0]
        for r in c.execute(
            "SELECT skiplock.retry(ARRAY[%s, %s]::bigint[])", [ids["failed"], ids["cancelled"]]
        )
    } == {
        ids["failed"],
        ids["cancelled"],
    }
    fired = c.execute(
        "SELECT tick FROM skiplock.fire_schedule('u_every_minute', ARRAY[now() + interval '1 minute'],"
        " as_of => now() + interval '2 minutes')"
    ).fetchall()
    assert len(fired) == 1
    # The webhook's trigger still enqueues a delivery when a job completes.
    assert c.execute("SELECT count(*) FROM skiplock.job WHERE queue = 'skiplock.webhooks'").fetchone() == (2,)
    limits = c.execute(
        "SELECT DISTINCT concurrency_limit, rate_limit FROM skiplock.queue_stats WHERE queue = 'u_available'"
    ).fetchall()
    assert limits == [(3, 5.0)]


def test_the_legacy_files_are_the_ones_legacy_sha256_names():
    """Pass: the pinned commit holds the pre-release files, byte for byte as their checksums say."""
    assert [v for v, _, _ in legacy_files()] == list(range(1, 19))


def test_a_database_of_the_pre_release_migrations_upgrades_to_the_fresh_schema(empty, dsn):
    """Pass: after the upgrade the schema is exactly a fresh install's, the migrator reports it
    current, and every seeded job, the schedule, the webhook and the limits still work."""
    migrate_as_before_the_squash(empty)
    with psycopg.connect(empty, autocommit=True) as c:
        ids, running = seed(c)
        before = states(c, ids)
    assert skiplock.Migrator(empty).status().legacy
    with pytest.raises(skiplock.SchemaOutdated):
        skiplock.Migrator(empty).check()  # a worker refuses the old layout until it is migrated
    assert skiplock.Migrator(empty).up() == [1]
    assert skiplock.Migrator(empty).up() == []
    status = skiplock.Migrator(empty).status()
    assert status.is_current
    assert status.applied == (1,)
    assert not status.legacy
    assert fingerprint(empty) == fingerprint(dsn)  # the test template: a fresh install
    with psycopg.connect(empty, autocommit=True) as c:
        assert states(c, ids) == before
        still_works(c, ids, running)


def test_a_database_part_way_through_the_pre_release_migrations_is_refused_unchanged(empty):
    """Pass: only the last pre-release state can be adopted; anything earlier gets one clear
    error and the database is left as it was."""
    migrate_as_before_the_squash(empty, upto=10)
    with pytest.raises(
        skiplock.SchemaOutdated, match="to migration 10; only a database at the last pre-release"
    ):
        skiplock.Migrator(empty).up()
    with psycopg.connect(empty) as c:
        assert c.execute("SELECT array_agg(version ORDER BY version) FROM skiplock.migration").fetchone() == (
            list(range(1, 11)),
        )
        assert c.execute("SELECT to_regclass('skiplock.migration_file')").fetchone() == (None,)


@pytest.mark.parametrize("version", [m.version for m in migrations()])
def test_changed_function_files_are_applied_over_live_jobs(empty, version):
    """Pass: a database at versioned migration N with a job in every state takes every file of
    sql/functions again (as after an upgrade that changed them all) and its jobs carry on."""
    assert version == migrations()[-1].version, "seed this version with the functions it had"
    assert skiplock.Migrator(empty).up(target=version) == [
        m.version for m in migrations() if m.version <= version
    ]
    with psycopg.connect(empty, autocommit=True) as c:
        ids, running = seed(c)
        c.execute("UPDATE skiplock.migration_file SET checksum = 'changed'")
    assert skiplock.Migrator(empty).status().routines_pending == tuple(r.name for r in routines())
    with pytest.raises(skiplock.SchemaOutdated, match=r"functions of common\.sql"):
        skiplock.Migrator(empty).check()
    assert skiplock.Migrator(empty).up() == []
    assert skiplock.Migrator(empty).status().is_current
    with psycopg.connect(empty, autocommit=True) as c:
        still_works(c, ids, running)


@pytest.mark.subprocess
def test_two_migrations_started_together_both_succeed_and_leave_one_schema(empty):
    """Pass: two `skiplock migrate` processes on one empty database both exit 0; one applied the
    schema and the other found it done, and the result is recorded once."""
    command = [sys.executable, "-m", "skiplock", "migrate", "--dsn", empty]
    runs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in runs]
    assert [p.returncode for p in runs] == [0, 0], outs
    assert sorted(out for out, _ in outs) == [
        "already up to date\n",
        f"applied migrations {[m.version for m in migrations()]}\n",
    ]
    with psycopg.connect(empty) as c:
        assert c.execute("SELECT count(*) FROM skiplock.migration").fetchone() == (len(migrations()),)
        assert c.execute("SELECT count(*) FROM skiplock.migration_file").fetchone() == (len(routines()),)
    assert skiplock.Migrator(empty).status().is_current


def test_every_routine_is_defined_once_outside_the_versioned_migrations():
    """Pass: each function, view and trigger has one definition, in sql/functions; the versioned
    migrations define none; and nothing the migrator runs creates a role."""
    definitions: dict[str, list[str]] = {}
    for routine in routines():
        for name in re.findall(
            r"^CREATE OR REPLACE (?:FUNCTION|VIEW|TRIGGER) (?:skiplock\.)?(\w+)", routine.text, re.M
        ):
            definitions.setdefault(name, []).append(routine.name)
        assert not re.search(r"^CREATE (?:FUNCTION|VIEW|TRIGGER)", routine.text, re.M), routine.name
    assert {n: f for n, f in definitions.items() if len(f) > 1} == {}
    assert {"claim", "complete", "enqueue_many", "fail", "jobs", "queue_stats", "_history_row"} <= set(
        definitions
    )
    for migration in migrations():
        assert not re.search(r"CREATE (?:OR REPLACE )?(?:FUNCTION|VIEW|TRIGGER|PROCEDURE)", migration.text), (
            migration.name
        )
    # Roles: only _create_roles creates them, and neither after_migrate.sql nor any routine calls it.
    after = (sql_root() / "after_migrate.sql").read_text()
    assert "_create_roles" not in after
    assert "CREATE ROLE" not in after
    assert sum(r.text.count("_create_roles(") for r in routines()) == 1  # its own definition
    assert [r.name for r in routines() if "CREATE ROLE" in r.text] == ["grants.sql"]
