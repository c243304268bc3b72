"""The `skiplock` command line, end to end on a real database."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb
from typer.testing import CliRunner

from skiplock._sql import migrations
from skiplock.cli import app

runner = CliRunner()
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/nowhere"


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def empty_dsn(dsn: str) -> Iterator[str]:
    """A database on the same server without the skiplock schema."""
    params = conninfo_to_dict(dsn)
    name = f"skiplock_empty_{uuid.uuid4().hex[:8]}"
    admin = make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(**{**params, "dbname": name})
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrate_applies_once_then_is_a_no_op(empty_dsn):
    versions = [m.version for m in migrations()]
    assert cli("migrate", "--dsn", empty_dsn) == (0, f"applied migrations {versions}\n")
    assert cli("migrate", "--dsn", empty_dsn) == (0, "already up to date\n")
    code, out = cli("migrate", "--status", "--dsn", empty_dsn)
    assert code == 0
    assert f"applied: {versions}" in out
    assert "pending: none" in out


def test_migrate_sql_output_installs_the_schema_when_piped_into_the_database(empty_dsn):
    code, script = cli("migrate", "--sql")
    assert code == 0
    assert "CREATE OR REPLACE FUNCTION skiplock.claim" in script
    with psycopg.connect(empty_dsn, autocommit=True) as c:
        c.execute(script)
        assert c.execute("SELECT count(*) FROM skiplock.enqueue('q', 't')").fetchone() == (1,)
    assert cli("migrate", "--dsn", empty_dsn) == (0, "already up to date\n")


def test_enqueue_then_inspect_retry_and_cancel_jobs(dsn):
    code, out = cli("enqueue", "send_welcome", "--args", '{"user_id": 7}', "--queue", "emails", "--dsn", dsn)
    assert code == 0
    job_id = int(out.split()[0])
    assert out.split()[1] == "available"
    code, out = cli("jobs", "list", "--queue", "emails", "--dsn", dsn)
    assert code == 0
    assert "send_welcome" in out
    code, out = cli("jobs", "show", str(job_id), "--dsn", dsn)
    assert code == 0
    assert '"user_id": 7' in out
    assert cli("jobs", "cancel", str(job_id), "424242", "--dsn", dsn) == (
        1,  # not every job could be cancelled
        f"{job_id} cancelled\n424242 not found\n",
    )
    code, out = cli("jobs", "retry", str(job_id), "--dsn", dsn)
    assert code == 0
    assert "retried 1 of 1" in out
    code, out = cli("jobs", "list", "--state", "available", "--dsn", dsn)
    assert str(job_id) in out


def test_jobs_show_escapes_control_characters_from_job_data(dsn, conn):
    (job_id,) = conn.execute(
        "SELECT id FROM skiplock.enqueue('q', 't', jsonb_build_object('x', E'\\x1b[31mred\\x07'))"
    ).fetchone()
    code, out = cli("jobs", "show", str(job_id), "--dsn", dsn)
    assert code == 0
    assert "\x1b" not in out
    assert "\x07" not in out


def test_jobs_show_lists_parents_and_children_and_queues_list_counts_waiting(dsn, conn):
    """Pass: a job's parents (with how many are unfinished) and children appear with their task,
    state and failure rule; queues list grows a waiting column only when jobs wait."""
    assert "wait" not in cli("queues", "list", "--dsn", dsn)[1]
    a, b, c = (
        r[0]
        for r in conn.execute(
            "SELECT * FROM skiplock.enqueue_many('{q}', '{extract,load,report}', depends_on => %s::jsonb[])",
            [[Jsonb([]), Jsonb([-1]), Jsonb([-1, {"job": -2, "on_failure": "run"}])]],
        )
    )
    code, out = cli("jobs", "show", str(b), "--dsn", dsn)
    assert code == 0
    assert "parents (1 not finished):" in out
    assert f"  {a}  extract available  on failure: cancel" in out
    assert f"  {c}  report waiting  on failure: run" in out
    code, out = cli("queues", "list", "--dsn", dsn)
    header, row = (
        out.splitlines()[1].split(),
        next(line.split() for line in out.splitlines() if line.startswith(" q ")),
    )
    assert header[1].startswith("wait")
    assert row[1:4] == ["2", "0", "1"]  # waiting, scheduled, ready


def test_enqueue_with_parents_from_the_command_line(dsn, conn):
    """Pass: --depends-on makes the job wait; a bad rule is one clear error and nothing written."""
    code, out = cli("enqueue", "extract", "--queue", "etl", "--dsn", dsn)
    parent = int(out.split()[0])
    out = cli("enqueue", "load", "--queue", "etl", "--depends-on", str(parent), "--dsn", dsn)[1]
    assert out.splitlines()[0].endswith(" waiting")  # then a warning: no worker serves etl
    code, out = cli(
        "enqueue", "load", "--depends-on", str(parent), "--on-parent-failure", "maybe", "--dsn", dsn
    )
    assert code == 1
    assert "on_parent_failure must be 'cancel' or 'run'" in out
    assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone() == (2,)


def test_queues_limit_sets_shows_and_removes_limits(dsn, conn):
    conn.execute("SELECT skiplock.enqueue('exports', 't')")
    assert cli("queues", "limit", "exports", "--concurrency", "2", "--rate", "0.5", "--dsn", dsn) == (
        0,
        "exports: max 2, 0.5/s (burst 1)\n",
    )
    code, out = cli("queues", "list", "--dsn", dsn)
    assert code == 0
    assert "max 2," in out
    assert "0.5/s" in out
    assert cli("queues", "limit", "exports", "--key-arg", "tenant", "--per-key", "3", "--dsn", dsn) == (
        0,
        "exports: max 3 per tenant\n",
    )
    assert cli(
        "queues",
        "limit",
        "exports",
        "--key-arg",
        "tenant",
        "--key-rate",
        "5",
        "--key-burst",
        "2",
        "--dsn",
        dsn,
    ) == (
        0,
        "exports: 5/s per tenant (key burst 2)\n",
    )
    code, out = cli("queues", "list", "--dsn", dsn)
    assert "5/s" in out  # the notes column wraps on narrow terminals
    assert "tenant" in out
    assert cli("queues", "limit", "exports", "--clear", "--dsn", dsn) == (0, "exports: no limits\n")
    code, out = cli("queues", "limit", "exports", "--concurrency", "0", "--dsn", dsn)
    assert code == 1
    assert "concurrency limit must be between 1 and 1000000" in out


def test_jobs_redrive_by_filter_and_purge(dsn, conn):
    conn.execute("SELECT skiplock.enqueue_many('{emails}', '{send,send,send}', max_attempts => '{1}')")
    for job_id, token in conn.execute(
        "SELECT id, lease_token FROM skiplock.claim('{emails}', gen_random_uuid(), 3)"
    ):
        conn.execute("SELECT skiplock.fail(%s, %s, 'boom')", [job_id, token])
    code, out = cli("jobs", "retry", "1", "--queue", "emails", "--dsn", dsn)
    assert code == 1
    assert "not both" in out
    assert cli("jobs", "retry", "--queue", "emails", "--limit", "2", "--dsn", dsn) == (
        0,
        "redrove 2 failed jobs\n",
    )
    code, out = cli("jobs", "purge", "--queue", "emails", "--dsn", dsn)
    assert code == 1
    assert "--yes" in out
    assert cli("jobs", "purge", "--queue", "emails", "--yes", "--dsn", dsn) == (0, "purged 1 job\n")
    assert conn.execute("SELECT state::text, count(*) FROM skiplock.jobs GROUP BY 1").fetchall() == [
        ("available", 2)
    ]


def test_workers_list_shows_registered_workers_and_what_they_hold(dsn, conn):
    assert cli("workers", "list", "--dsn", dsn)[1].strip().endswith("no workers registered")
    worker = "00000000-0000-4000-8000-0000000000aa"
    conn.execute("SELECT skiplock.register_worker(%s, 'host-a', 4242, '{emails}', 8)", [worker])
    conn.execute("SELECT skiplock.enqueue('emails', 't')")
    conn.execute("SELECT count(*) FROM skiplock.claim('{emails}', %s, 1)", [worker])
    code, out = cli("workers", "list", "--dsn", dsn)
    assert code == 0
    assert "host-a" in out
    assert "4242" in out
    assert "emails" in out
    row = conn.execute("SELECT running, stale FROM skiplock.workers WHERE pid = 4242").fetchone()
    assert row == (1, False)
    conn.execute("UPDATE skiplock.worker SET heartbeat_at = now() - interval '5 minutes'")
    assert "stale" in cli("workers", "list", "--dsn", dsn)[1]


def test_schedules_list_pause_resume_delete(dsn, client):
    client.schedule("nightly", "0 3 * * *", "report", queue="reports", tz="Europe/Paris")
    code, out = cli("schedules", "list", "--dsn", dsn)
    assert code == 0
    assert "nightly" in out
    assert "0 3 * * *" in out
    assert "Europe/Paris" in out
    assert cli("schedules", "pause", "nightly", "--dsn", dsn) == (0, "paused nightly\n")
    assert client.schedules()[0].paused
    assert cli("schedules", "resume", "nightly", "--dsn", dsn) == (0, "resumed nightly\n")
    assert cli("schedules", "delete", "nightly", "--dsn", dsn) == (0, "deleted nightly\n")
    code, out = cli("schedules", "delete", "nightly", "--dsn", dsn)
    assert code == 1
    assert "no schedule named 'nightly'" in out


def test_queues_pause_list_resume(dsn, conn):
    conn.execute("SELECT skiplock.enqueue('emails', 't')")
    assert cli("queues", "pause", "emails", "--dsn", dsn) == (0, "paused emails\n")
    code, out = cli("queues", "list", "--dsn", dsn)
    assert code == 0
    assert "emails" in out
    assert "paused" in out
    assert conn.execute("SELECT paused FROM skiplock.queue_stats WHERE queue = 'emails'").fetchone() == (
        True,
    )
    assert cli("queues", "resume", "emails", "--dsn", dsn) == (0, "resumed emails\n")
    assert conn.execute("SELECT paused FROM skiplock.queue_stats WHERE queue = 'emails'").fetchone() == (
        False,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("enqueue", "t", "--dsn", UNREACHABLE), "database unavailable"),
        (("jobs", "list", "--dsn", UNREACHABLE), "database unavailable"),
        (("migrate", "--dsn", UNREACHABLE), "database unavailable"),
        (("enqueue", "t", "--dsn", "not a dsn at all"), "error:"),
    ],
)
def test_unreachable_or_bad_dsn_is_one_line_and_exit_1(args, message):
    code, out = cli(*args)
    assert code == 1
    assert message in out
    assert "Traceback" not in out
    assert len(out.strip().splitlines()) == 1


def test_missing_schema_says_to_run_migrate(empty_dsn):
    code, out = cli("jobs", "list", "--dsn", empty_dsn)
    assert code == 1
    assert "skiplock migrate" in out
    assert len(out.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--args", "{bad"), "invalid JSON"),
        (("--args", "[1, 2]"), "must be a JSON object"),
        (("--queue", "bad queue; DROP TABLE x"), "invalid queue name"),
    ],
)
def test_bad_input_is_rejected_with_one_line_and_nothing_written(dsn, conn, args, message):
    code, out = cli("enqueue", "t", *args, "--dsn", dsn)
    assert code == 1
    assert message in out
    assert len(out.strip().splitlines()) == 1
    assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone() == (0,)


@pytest.mark.subprocess
def test_worker_burst_runs_a_module_and_exits(dsn, conn, tmp_path: Path):
    (tmp_path / "burst_tasks.py").write_text(
        textwrap.dedent(
            """
            from __future__ import annotations
            import skiplock

            @skiplock.task(queue="burst")
            def square(x: int) -> int:
                return x * x
            """
        )
    )
    conn.execute(
        "SELECT skiplock.enqueue_many('{burst}', '{square,square}', ARRAY['{\"x\": 3}', '{\"x\": 4}']::jsonb[])"
    )
    done = subprocess.run(
        [sys.executable, "-m", "skiplock", "worker", "burst_tasks", "--burst", "--dsn", dsn],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    results = conn.execute("SELECT result FROM skiplock.job_history ORDER BY id").fetchall()
    assert results == [(9,), (16,)]


@pytest.mark.subprocess
def test_worker_reports_an_unimportable_module_in_one_line(dsn, tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-m", "skiplock", "worker", "no_such_module_here", "--dsn", dsn],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "cannot import no_such_module_here" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.subprocess
def test_demo_runs_to_completion_on_a_given_database(dsn, conn):
    done = subprocess.run(
        [sys.executable, "-m", "skiplock", "demo", "--dsn", dsn, "--jobs", "200"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "200 jobs finished" in done.stdout
    live = conn.execute("SELECT count(*) FROM skiplock.job WHERE queue LIKE 'demo.%'").fetchone()
    assert live == (0,)


def test_jobs_list_pages_and_filters_by_time_and_show_has_a_timeline(dsn, conn):
    ids = [
        conn.execute(
            "SELECT id FROM skiplock.enqueue('pages', 't', jsonb_build_object('n', %s))", [n]
        ).fetchone()[0]
        for n in range(5)
    ]
    code, out = cli("jobs", "list", "--queue", "pages", "--limit", "2", "--dsn", dsn)
    assert code == 0
    assert f"next page: --before {ids[3]}" in out
    code, out = cli("jobs", "list", "--queue", "pages", "--limit", "2", "--before", str(ids[3]), "--dsn", dsn)
    assert f"next page: --before {ids[1]}" in out
    assert cli("jobs", "list", "--since", "2999-01-01T00:00:00+00:00", "--dsn", dsn)[1].count("pages") == 0
    job_id, token = conn.execute(
        "SELECT id, lease_token FROM skiplock.claim('{pages}', gen_random_uuid())"
    ).fetchone()
    conn.execute(
        "SELECT skiplock.fail(%s, %s, 'boom', error_type => 'ValueError', retry_in => '0 s')", [job_id, token]
    )
    code, out = cli("jobs", "show", str(job_id), "--dsn", dsn)
    assert code == 0
    timeline = out[out.index("timeline:") :]
    assert timeline.index("enqueued") < timeline.index("attempt 1 failed: ValueError")
