"""The DSN's password never shows: not in reprs, errors, CLI output or worker logs.

Every test's DSN carries the canary password (tests/conftest.py), and every log record of the
suite is checked for it; these tests drive the places a password could slip out on purpose.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from typer.testing import CliRunner

import skiplock
from skiplock.cli import app
from skiplock.settings import redact, scrub

CANARY = "canary-Zx9q-secret"
runner = CliRunner()


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_the_suite_dsn_carries_the_canary(dsn):
    assert conninfo_to_dict(dsn)["password"] == CANARY  # so the suite-wide log check means something


def test_reprs_show_the_dsn_without_its_password(dsn):
    with skiplock.Client(dsn) as client:
        assert CANARY not in repr(client)
        assert "***" in repr(client)
    worker = skiplock.Worker([skiplock.task(lambda: None, name="noop")], dsn=dsn)
    assert CANARY not in repr(worker)
    assert CANARY not in repr(skiplock.Migrator(dsn))


def test_cli_output_never_shows_the_password(dsn):
    outputs = [
        cli("migrate", "--status", "--dsn", dsn),
        cli("enqueue", "t", "--dsn", dsn),
        cli("jobs", "list", "--dsn", dsn),
        cli("jobs", "show", "1", "--dsn", dsn),
        cli("queues", "list", "--dsn", dsn),
        cli("workers", "list", "--dsn", dsn),
        cli("schedules", "list", "--dsn", dsn),
        cli("jobs", "show", "999", "--dsn", dsn),  # an error path
    ]
    assert [code for code, _ in outputs][:7] == [0] * 7
    assert all(CANARY not in out for _, out in outputs)


@pytest.mark.parametrize(
    "bad",
    [
        f"host=127.0.0.1 port=1 password={CANARY} connect_timeout=2",  # nothing listens there
        f"host=127.0.0.1 password={CANARY} nonsense",  # libpq quotes the rest back
        f"host=127.0.0.1 password='{CANARY} with spaces' bogus_option=1",
        f"postgresql://postgres:{CANARY}@127.0.0.1:notaport/db",
        f"postgresql://postgres:{CANARY}@127.0.0.1:1/db?connect_timeout=2",
        f"postgresql://postgres:{CANARY}@127.0.0.1:5432/no_such_database",
    ],
)
def test_connection_errors_never_show_the_password(bad):
    code, out = cli("queues", "list", "--dsn", bad)
    assert code == 1
    assert out.startswith("error:")
    assert CANARY not in out
    with pytest.raises(skiplock.SkiplockError) as info, skiplock.Client(bad) as client:
        client.queue_stats()
    assert CANARY not in scrub(str(info.value), bad)


def test_redact_and_scrub_handle_every_form_of_a_password():
    url = "postgresql://u:p%40ss%20w@h/db"
    assert redact(url) == "postgresql://u:***@h/db"
    assert scrub("auth failed for p@ss w and p%40ss%20w", url) == "auth failed for *** and ***"
    kv = "host=h password='it\\'s quoted' dbname=d"
    assert "quoted" not in redact(kv)
    assert redact("host=h dbname=d") == "host=h dbname=d"


def test_a_worker_logging_at_debug_never_shows_the_password(dsn, conn, tmp_path: Path):
    (tmp_path / "secrettasks.py").write_text(
        textwrap.dedent(
            """
            import skiplock

            @skiplock.task(queue="s")
            def boom() -> None:
                raise RuntimeError("task failed")
            """
        )
    )
    conn.execute("SELECT skiplock.enqueue('s', 'boom', max_attempts => 1)")
    env = {**os.environ, "SKIPLOCK_DSN": dsn}
    ran = subprocess.run(
        [sys.executable, "-m", "skiplock", "worker", "secrettasks", "--burst", "--log-level", "DEBUG"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    assert "task failed" in ran.stdout + ran.stderr  # it did log, at length
    assert CANARY not in ran.stdout + ran.stderr
    bad = make_conninfo(dsn, port="1", connect_timeout="2")
    failed = subprocess.run(
        [
            sys.executable,
            "-m",
            "skiplock",
            "worker",
            "secrettasks",
            "--burst",
            "--log-level",
            "DEBUG",
            "--dsn",
            bad,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode != 0
    assert CANARY not in failed.stdout + failed.stderr
