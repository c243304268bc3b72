"""`skiplock demo` as a newcomer runs it: it says which database it uses, tells a server that refuses
from no server at all, and ends with commands that work."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from waiting import wait_until

pytestmark = pytest.mark.subprocess

SKIPLOCK = str(Path(sys.executable).with_name("skiplock"))


def demo(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skiplock", "demo", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def bare_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No SKIPLOCK_DSN / DATABASE_URL / PG* from the caller: only what the test says."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PG", "SKIPLOCK_")) and k != "DATABASE_URL"
    }
    env.update(HOME=str(tmp_path), COLUMNS="200", **extra)
    return env


def server_of(dsn: str) -> dict[str, str]:
    params = conninfo_to_dict(dsn)
    return {"PGHOST": str(params.get("host", "127.0.0.1")), "PGPORT": str(params.get("port", 5432))}


def test_on_a_given_database_it_names_it_and_prints_commands_that_work(dsn: str, tmp_path: Path):
    done = demo("--dsn", dsn, "--jobs", "100", env=bare_env(tmp_path))
    assert done.returncode == 0, done.stderr
    dbname = conninfo_to_dict(dsn)["dbname"]
    assert re.search(rf"Using database '{dbname}' as user '\w+' on \S+ \(PostgreSQL [\d.]+\)", done.stdout)
    commands = [line.strip() for line in done.stdout.splitlines() if line.startswith("  skiplock jobs list")]
    assert len(commands) == 1, done.stdout
    assert "canary" not in done.stdout  # the password stays out of printed commands
    words = shlex.split(commands[0])
    env = bare_env(tmp_path, PGPASSWORD=str(conninfo_to_dict(dsn).get("password") or ""))
    listed = subprocess.run([SKIPLOCK, *words[1:]], capture_output=True, text=True, env=env, timeout=60)
    assert listed.returncode == 0, listed.stderr


@pytest.mark.parametrize(
    ("variable", "refusal"),
    [("PGDATABASE", 'database "{name}" does not exist'), ("PGUSER", 'role "{name}" does not exist')],
)
def test_a_server_that_refuses_the_login_is_an_error_not_a_switch_to_embedded(
    dsn: str, tmp_path: Path, variable: str, refusal: str
):
    name = f"nosuch_{uuid.uuid4().hex[:8]}"
    done = demo("--jobs", "10", env=bare_env(tmp_path, **server_of(dsn), **{variable: name}))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr  # one line
    assert "refused the demo" in done.stderr
    assert refusal.format(name=name) in done.stderr
    assert "embedded" not in done.stdout


def test_an_explicit_dsn_that_does_not_answer_is_an_error(tmp_path: Path):
    dead = f"host={tmp_path / 'no-socket-here'} dbname=app"
    done = demo("--jobs", "10", env=bare_env(tmp_path, SKIPLOCK_DSN=dead))
    assert done.returncode == 1
    assert "cannot be reached" in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "embedded" not in done.stdout


@pytest.mark.slow
def test_with_no_server_it_starts_an_embedded_one_and_suggests_nothing_against_it(tmp_path: Path):
    done = demo("--jobs", "100", env=bare_env(tmp_path, PGHOST=str(tmp_path / "no-socket-here")))
    assert done.returncode == 0, done.stderr
    match = re.search(r"Using an embedded PostgreSQL [\d.]+ in (\S+) \(removed", done.stdout)
    assert match, done.stdout
    assert "100 jobs finished" in done.stdout
    assert "stopped and removed" in done.stdout
    assert "SELECT" not in done.stdout
    assert "--dsn host=" not in done.stdout
    assert not Path(match.group(1)).exists()


@pytest.mark.slow
def test_embedded_is_forced_even_when_a_server_answers(dsn: str, tmp_path: Path):
    done = demo("--embedded", "--jobs", "20", env=bare_env(tmp_path, **server_of(dsn)))
    assert done.returncode == 0, done.stderr
    assert "Using an embedded PostgreSQL" in done.stdout


def test_embedded_and_dsn_exclude_each_other(dsn: str, tmp_path: Path):
    done = demo("--embedded", "--dsn", dsn, env=bare_env(tmp_path))
    assert done.returncode == 1
    assert "--embedded and --dsn exclude each other" in done.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_in_a_terminal_the_embedded_server_stays_up_for_the_printed_commands_until_ctrl_c(tmp_path: Path):
    name = f"skiplock-demo-{uuid.uuid4().hex[:8]}"
    env = bare_env(tmp_path)
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    command = f"env {exports} {shlex.quote(sys.executable)} -m skiplock demo --embedded --jobs 30; sleep 600"
    subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "250", "-y", "50", command], check=True)

    def screen() -> str:
        return subprocess.run(
            ["tmux", "capture-pane", "-p", "-J", "-t", name], capture_output=True, text=True, check=True
        ).stdout

    try:
        wait_until(lambda: "until you press Ctrl-C" in screen(), timeout=180, what="the demo's commands")
        text = screen()
        root = re.search(r"embedded PostgreSQL [\d.]+ in (\S+) \(removed", text)
        assert root, text
        lines = [ln.strip() for ln in text.splitlines()]
        listing = next(ln for ln in lines if ln.startswith("skiplock jobs list"))
        listed = subprocess.run(
            [SKIPLOCK, *shlex.split(listing)[1:]], capture_output=True, text=True, timeout=60
        )
        assert listed.returncode == 0, listed.stderr
        query = next(ln for ln in lines if ln.startswith("psql "))
        dsn = shlex.split(query)[1]
        with psycopg.connect(dsn) as conn:  # the very server the demo used, still running
            row = conn.execute("SELECT count(*) FROM skiplock.jobs WHERE queue LIKE 'demo.%'").fetchone()
            assert row is not None
            assert row[0] == 30
        subprocess.run(["tmux", "send-keys", "-t", name, "C-c"], check=True)
        wait_until(lambda: "Stopping the embedded server." in screen(), timeout=60, what="the demo to stop")
        wait_until(lambda: not Path(root.group(1)).exists(), timeout=60, what="the cluster removed")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], check=False)
