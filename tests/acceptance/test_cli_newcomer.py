"""The mistakes a newcomer makes on the command line, each answered with one clear line.

Run as a user runs them: typer's CliRunner on the real app (stdout and stderr apart), or the
installed ``skiplock`` in a subprocess, against this test's fresh database.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from typer.testing import CliRunner

from skiplock.cli import app

runner = CliRunner()
SKIPLOCK = Path(sys.executable).with_name("skiplock")  # the console script of this environment


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def one_error_line(err: str) -> str:
    """The single line an error must be; fails unless stderr is exactly that."""
    assert err.endswith("\n")
    assert not err.endswith("\n\n"), repr(err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


def failed_job(conn, queue: str = "q", traceback: str | None = None) -> int:
    """A job dead-lettered after one attempt."""
    (job_id,) = conn.execute(
        "SELECT id FROM skiplock.enqueue(%s, 't', max_attempts => 1)", [queue]
    ).fetchone()
    (token,) = conn.execute(
        "SELECT lease_token FROM skiplock.claim(ARRAY[%s], gen_random_uuid())", [queue]
    ).fetchone()
    conn.execute(
        "SELECT skiplock.fail(%s, %s, 'boom', error_type => 'ValueError', traceback => %s)",
        [job_id, token, traceback],
    )
    return int(job_id)


def completed_job(conn, queue: str = "q") -> int:
    (job_id,) = conn.execute("SELECT id FROM skiplock.enqueue(%s, 't')", [queue]).fetchone()
    (token,) = conn.execute(
        "SELECT lease_token FROM skiplock.claim(ARRAY[%s], gen_random_uuid())", [queue]
    ).fetchone()
    conn.execute(
        "SELECT skiplock.complete(ARRAY[%s]::bigint[], ARRAY[%s]::uuid[], ARRAY['1']::jsonb[])",
        [job_id, token],
    )
    return int(job_id)


def register_worker(conn, queues: list[str], *, stale: bool = False) -> None:
    worker = uuid.uuid4()
    conn.execute("SELECT skiplock.register_worker(%s, 'host-a', 4242, %s, 4)", [worker, queues])
    if stale:
        conn.execute(
            "UPDATE skiplock.worker SET heartbeat_at = now() - interval '5 minutes' WHERE id = %s", [worker]
        )


# -- item 7: the queue a job goes to -------------------------------------------------------------


@pytest.mark.subprocess
def test_enqueue_with_module_takes_the_tasks_declared_queue_priority_and_attempts(dsn, conn, tmp_path):
    """Pass: `--module` imports the tasks as the worker does, so the job lands on the task's queue
    with its max_attempts and priority (explicit options still win); arguments that do not fit the
    task and names it does not declare are refused with one line and nothing enqueued."""
    (tmp_path / "newcomer_tasks.py").write_text(
        textwrap.dedent(
            """
            import skiplock

            @skiplock.task(queue="images", max_attempts=3, priority=5)
            def resize(path: str, width: int = 640) -> None:
                pass
            """
        )
    )

    def enqueue(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SKIPLOCK), "enqueue", "resize", "--module", "newcomer_tasks", *args, "--dsn", dsn],
            cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    done = enqueue("--args", '{"path": "a.png"}')
    assert done.returncode == 0, done.stderr
    first = int(done.stdout.split()[0])
    done = enqueue("--args", '{"path": "b.png"}', "--queue", "bulk", "--max-attempts", "7")
    assert done.returncode == 0, done.stderr
    second = int(done.stdout.split()[0])
    rows = conn.execute("SELECT id, queue, max_attempts, priority FROM skiplock.jobs ORDER BY id").fetchall()
    assert rows == [(first, "images", 3, 5), (second, "bulk", 7, 5)]

    done = enqueue("--args", '{"size": 3}')
    assert done.returncode == 1
    assert "bad arguments for task 'resize'" in one_error_line(done.stderr)
    done = subprocess.run(
        [str(SKIPLOCK), "enqueue", "rezise", "--module", "newcomer_tasks", "--dsn", dsn],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "no task named 'rezise' in newcomer_tasks (tasks declared: resize)" in one_error_line(done.stderr)
    assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone() == (2,)


def test_enqueue_warns_when_no_live_worker_serves_the_queue(dsn, conn):
    """Pass: one warning line on stderr (the job is enqueued, exit 0) while no live worker serves
    the queue; none once one does. A stale worker does not count."""
    code, out, err = run("enqueue", "resize", "--dsn", dsn)
    assert code == 0
    assert out.endswith(" available\n")
    assert (
        err
        == "warning: no live worker serves queue 'default' (no worker is running): the job waits until one does\n"
    )
    register_worker(conn, ["images", "emails"])
    register_worker(conn, ["default"], stale=True)
    code, out, err = run("enqueue", "resize", "--dsn", dsn)
    assert code == 0
    assert "no live worker serves queue 'default' (live workers serve emails, images)" in err
    code, out, err = run("enqueue", "resize", "--queue", "images", "--dsn", dsn)
    assert (code, err) == (0, "")
    assert conn.execute("SELECT queue, count(*) FROM skiplock.jobs GROUP BY 1 ORDER BY 1").fetchall() == [
        ("default", 2),
        ("images", 1),
    ]


# -- item 8: unknown queues ----------------------------------------------------------------------


def test_pause_and_resume_refuse_a_queue_nothing_names(dsn, conn):
    """Pass: a typo is exit 1 and one line (with the close name) and creates nothing; --create
    pauses a new queue, which resume then knows; a queue a worker serves is known."""
    conn.execute("SELECT skiplock.enqueue('emails', 't')")
    code, out, err = run("queues", "pause", "emials", "--dsn", dsn)
    assert (code, out) == (1, "")
    assert "no queue named 'emials'" in one_error_line(err)
    assert "did you mean 'emails'?" in err
    assert "--create" in err
    code, _, err = run("queues", "resume", "nosuchqueue", "--dsn", dsn)
    assert code == 1
    assert "no queue named 'nosuchqueue'" in one_error_line(err)
    assert conn.execute("SELECT count(*) FROM skiplock.queue").fetchone() == (0,)

    assert run("queues", "pause", "reports", "--create", "--dsn", dsn)[:2] == (0, "paused reports\n")
    assert run("queues", "resume", "reports", "--dsn", dsn)[:2] == (0, "resumed reports\n")
    register_worker(conn, ["imports"])
    assert run("queues", "pause", "imports", "--dsn", dsn)[:2] == (0, "paused imports\n")
    failed_job(conn, "dead")  # only dead letters left: still a queue
    assert run("queues", "pause", "dead", "--dsn", dsn)[:2] == (0, "paused dead\n")


def test_queues_limit_without_options_shows_the_limits_and_clear_removes_them(dsn, conn):
    conn.execute("SELECT skiplock.enqueue('exports', 't')")
    assert run("queues", "limit", "exports", "--dsn", dsn)[:2] == (0, "exports: no limits\n")
    assert run("queues", "limit", "exports", "--concurrency", "2", "--rate", "0.5", "--dsn", dsn)[0] == 0
    assert run("queues", "limit", "exports", "--dsn", dsn)[:2] == (0, "exports: max 2, 0.5/s (burst 1)\n")
    assert run("queues", "limit", "exports", "--dsn", dsn)[:2] == (0, "exports: max 2, 0.5/s (burst 1)\n")
    code, _, err = run("queues", "limit", "exports", "--clear", "--rate", "1", "--dsn", dsn)
    assert code == 1
    assert "--clear" in one_error_line(err)
    assert run("queues", "limit", "exports", "--clear", "--dsn", dsn)[:2] == (0, "exports: no limits\n")
    assert run("queues", "limit", "exports", "--dsn", dsn)[:2] == (0, "exports: no limits\n")
    code, _, err = run("queues", "limit", "exprots", "--concurrency", "1", "--dsn", dsn)
    assert code == 1
    assert "no queue named 'exprots'" in one_error_line(err)


# -- item 9: partial results ---------------------------------------------------------------------


def test_jobs_retry_says_why_per_id_and_exits_1_unless_all_were_retried(dsn, conn):
    failed = failed_job(conn)
    done = completed_job(conn)
    code, out, _ = run("jobs", "retry", str(failed), str(done), "9999999", "--dsn", dsn)
    assert code == 1
    assert out.splitlines() == [
        f"{failed} retried",
        f"{done} not retried: it is completed (only failed, cancelled, scheduled or retryable jobs are)",
        "9999999 not found",
        "retried 1 of 3",
    ]
    again = failed_job(conn, "other")
    assert run("jobs", "retry", str(again), "--dsn", dsn)[:2] == (0, f"{again} retried\nretried 1 of 1\n")


def test_jobs_cancel_exits_1_unless_every_job_was_cancelled(dsn, conn):
    done = completed_job(conn)
    (queued,) = conn.execute("SELECT id FROM skiplock.enqueue('q', 't')").fetchone()
    code, out, _ = run("jobs", "cancel", str(queued), str(done), "9999999", "--dsn", dsn)
    assert code == 1
    assert out.splitlines() == [
        f"{queued} cancelled",
        f"{done} already completed: nothing to cancel",
        "9999999 not found",
    ]
    (other,) = conn.execute("SELECT id FROM skiplock.enqueue('q', 't')").fetchone()
    assert run("jobs", "cancel", str(other), "--dsn", dsn)[:2] == (0, f"{other} cancelled\n")


# -- item 10: messages ---------------------------------------------------------------------------


def test_jobs_retry_without_ids_or_filters_says_what_to_give(dsn):
    code, _, err = run("jobs", "retry", "--dsn", dsn)
    assert code == 1
    line = one_error_line(err)
    assert "not both" not in line
    assert "give the ids of the jobs to retry, or filters (--queue, --task, --since)" in line


def test_a_sqlalchemy_url_is_accepted(dsn, conn):
    p = conninfo_to_dict(dsn)
    url = f"postgresql+psycopg://{p['user']}:{p['password']}@{p['host']}:{p['port']}/{p['dbname']}"
    conn.execute("SELECT skiplock.enqueue('q', 'from_url')")
    code, out, err = run("jobs", "list", "--dsn", url)
    assert (code, err) == (0, "")
    assert "from_url" in out


@pytest.mark.parametrize("variable", ["SKIPLOCK_DSN", "DATABASE_URL"])
def test_a_bad_dsn_from_the_environment_names_its_variable(variable):
    env = {"SKIPLOCK_DSN": "", "DATABASE_URL": "", variable: "garbage"}
    code, _, err = run("jobs", "list", env=env)
    assert code == 1
    assert f"invalid connection string in {variable}: " in one_error_line(err)


def test_a_time_option_lists_the_forms_it_accepts(dsn, conn):
    code, out, err = run("jobs", "list", "--since", "yesterday", "--dsn", dsn)
    assert (code, out) == (2, "")
    line = one_error_line(err)
    assert "'yesterday' is not a time: give an ISO 8601 date or time, e.g. 2030-01-31" in line
    assert "(see skiplock jobs list --help)" in line
    conn.execute("SELECT skiplock.enqueue('q', 'recent')")
    assert "recent" in run("jobs", "list", "--since", "2000-01-01T00:00:00Z", "--dsn", dsn)[1]
    assert "recent" not in run("jobs", "list", "--since", "2999-01-01", "--dsn", dsn)[1]
    assert run("queues", "pause", "q", "--until", "2999-01-01T00:00:00Z", "--dsn", dsn)[0] == 0
    assert conn.execute("SELECT paused_until FROM skiplock.queue WHERE name = 'q'").fetchone()[0].year == 2999


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("jobs", "list", "--no-such-option"), "No such option: --no-such-option"),
        (("jobs", "lis"), "No such command 'lis'. Did you mean 'list'?"),
        (("jobs", "show", "forty-two"), "Invalid value for 'job_id'"),
        (("enqueue",), "Missing argument 'task'"),
        (("queues", "limit", "q", "--concurrency", "two"), "Invalid value for '--concurrency'"),
    ],
)
def test_usage_errors_are_one_line_with_a_pointer_to_help(args, says):
    code, out, err = run(*args)
    assert (code, out) == (2, "")
    line = one_error_line(err)
    assert says in line
    assert line.endswith("--help)")


@pytest.mark.parametrize(
    ("dsn", "says"),
    [
        ("postgresql://postgres@127.0.0.1:1/nowhere", "database unavailable: connection failed"),
        ("garbage", 'invalid connection string: missing "=" after "garbage"'),  # libpq ends it with \n
    ],
)
def test_a_connection_error_is_one_line_without_a_blank_line_after_it(dsn, says):
    code, out, err = run("jobs", "list", "--dsn", dsn)
    assert (code, out) == (1, "")
    assert says in one_error_line(err)


@pytest.mark.parametrize("command", ["metrics", "worker"])
def test_help_shows_square_brackets_as_written(command):
    code, out, _ = run(command, "--help")
    assert code == 0
    assert "skiplock[metrics]" in " ".join(out.split())


def test_events_says_so_when_events_are_disabled(dsn, client):
    code, out, err = run("events", "--timeout", "30", "--dsn", dsn)
    assert (code, out) == (1, "")
    assert "events are disabled" in one_error_line(err)
    assert "skiplock events --enable" in err
    client.enable_events()
    assert run("events", "--timeout", "0.1", "--dsn", dsn) == (0, "", "")


@pytest.mark.parametrize("delay", ["-5", "nan", "inf", "1e300"])
def test_a_bad_delay_is_refused_before_anything_is_sent(dsn, conn, delay):
    code, _, err = run("enqueue", "t", "--delay", delay, "--dsn", dsn)
    assert code == 1
    assert "--delay must be a number of seconds from 0 up" in one_error_line(err)
    assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone() == (0,)


# -- item 11: jobs show, migrate --sql -----------------------------------------------------------


def test_jobs_show_prints_every_stored_traceback_indented_and_escaped(dsn, conn):
    """Pass: each error's traceback follows it, every line indented: a line of it that reads like a
    field (or carries an escape) stays visibly part of the traceback."""
    traceback = 'Traceback (most recent call last):\n  File "tasks.py", line 3, in t\nstate: completed\x1b[2J\nValueError: boom'
    job_id = failed_job(conn, traceback=traceback)
    code, out, _ = run("jobs", "show", str(job_id), "--dsn", dsn)
    assert code == 0
    lines = out.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("error attempt 1 at ")))
    shown = lines[start + 1 : start + 5]
    assert shown[:2] == ["    Traceback (most recent call last):", '      File "tasks.py", line 3, in t']
    assert shown[2].startswith("    state: completed")  # the escape follows, made visible
    assert shown[3] == "    ValueError: boom"
    assert [line for line in lines if line.startswith("state:")] == ["state: failed"]
    assert "\x1b" not in out


def test_migrate_sql_has_no_empty_statement():
    code, script, _ = run("migrate", "--sql")
    assert code == 0
    assert ";;" not in script


def test_enqueue_by_a_role_that_may_not_read_workers_enqueues_without_a_warning(dsn, conn):
    """Pass: the unserved-queue check is advice: a producer that may not read skiplock.workers
    still gets its job and exit 0, with nothing on stderr."""
    name = f"skiplock_t_{uuid.uuid4().hex[:12]}"
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    try:
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA skiplock TO {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION skiplock.enqueue TO {}").format(sql.Identifier(name)))
        producer = make_conninfo(dsn, user=name)
        with psycopg.connect(producer) as c, pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT * FROM skiplock.workers")
        code, out, err = run("enqueue", "t", "--dsn", producer)
        assert (code, err) == (0, "")
        assert out.endswith(" available\n")
        assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone() == (1,)
    finally:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [name])
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_a_group_run_bare_prints_its_help_on_stdout():
    code, out, err = run("queues")
    assert (code, err) == (2, "")
    assert out.startswith("Usage: skiplock queues [OPTIONS] COMMAND [ARGS]...")
    assert "pause" in out


def test_jobs_retry_looks_up_the_reason_of_the_first_100_misses_only(dsn):
    ids = [str(n) for n in range(9_000_001, 9_000_102)]
    code, out, _ = run("jobs", "retry", *ids, "--dsn", dsn)
    assert code == 1
    lines = out.splitlines()
    assert lines[:100] == [f"{n} not found" for n in ids[:100]]
    assert lines[100:] == [f"{ids[100]} not retried", "retried 0 of 101"]
