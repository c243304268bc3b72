"""docs/cli.md, docs/monitor.md's doctor example and getting-started.md's current_job(): what
they say the command line and a task see is what a user gets."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

import skiplock
from skiplock.cli import app

DOCS = Path(__file__).resolve().parents[2] / "docs"
SKIPLOCK = Path(sys.executable).with_name("skiplock")


def _tasks_module() -> str:
    """The `myapp/tasks.py` of getting-started.md, which docs/cli.md's examples enqueue to."""
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "getting-started.md").read_text(), flags=re.S)
    return next(b for b in blocks if b.startswith("# myapp/tasks.py"))


def test_cli_examples_run_as_documented(dsn, conn, tmp_path):
    """Pass: every example of docs/cli.md runs with the installed `skiplock` (the worker in burst
    mode), `enqueue --module` puts resize on its declared queue, and `jobs retry` of ids that do
    not exist says so per id and exits 1."""
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "tasks.py").write_text(_tasks_module())
    block = re.search(r"Examples:\n\n```bash\n(.*?)```", (DOCS / "cli.md").read_text(), flags=re.S)
    assert block is not None
    commands = [line.split("   #")[0] for line in block[1].splitlines() if line.strip()]
    assert len(commands) >= 8
    env = {**os.environ, "SKIPLOCK_DSN": dsn}
    for command in commands:
        args = shlex.split(command)[1:]
        if args[0] == "worker":
            args.append("--burst")  # the documented worker runs until stopped
        done = subprocess.run(
            [str(SKIPLOCK), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        if args[:2] == ["jobs", "retry"]:
            assert done.returncode == 1, (command, done.stdout, done.stderr)
            assert done.stdout == "42 not found\n43 not found\nretried 0 of 2\n"
        else:
            assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert conn.execute("SELECT queue, task FROM skiplock.jobs ORDER BY id").fetchall() == [
        ("emails", "send_welcome"),
        ("images", "resize"),
    ]


def test_the_usage_error_cli_md_shows_is_what_skiplock_prints():
    line = re.search(r"\(`(error: No such option: .*?)`\)", (DOCS / "cli.md").read_text())
    assert line is not None
    result = CliRunner().invoke(app, ["enqueue", "t", "--quue", "emails"])
    assert result.exit_code == 2
    assert result.stderr == line[1] + "\n"


def test_monitor_md_doctor_shows_the_schema_line_doctor_prints(dsn):
    """Fails when a migration is added and docs/monitor.md's doctor example is not updated."""
    result = CliRunner().invoke(app, ["doctor", "--dsn", dsn])
    schema = next(line for line in result.stdout.splitlines() if "schema:" in line)
    assert schema.startswith("ok       schema: migration")
    assert schema.endswith("applied, functions current")
    assert f"\n{schema}\n" in (DOCS / "monitor.md").read_text(), f"docs/monitor.md should show: {schema}"


def test_current_job_has_what_getting_started_says(dsn, client):
    """Pass: every attribute getting-started.md names on current_job() (and on its .job) exists in
    a running task, the context is a JobContext, and .attempt is 1 on the first run."""
    text = (DOCS / "getting-started.md").read_text()
    paragraph = next(p for p in text.split("\n\n") if "current_job()" in p)
    names = re.findall(r"`\.([a-z_]+)(?:\.([a-z_]+))?", paragraph)
    assert len(names) >= 9
    seen: dict[str, object] = {}

    @skiplock.task(queue="docs")
    def probe() -> None:
        ctx = skiplock.current_job()
        for top, sub in names:
            value = getattr(ctx, top)
            if sub:
                getattr(value, sub)
        seen.update(context=type(ctx), job=type(ctx.job), attempt=ctx.attempt, id=ctx.job.id)

    job = probe.using(client=client).enqueue()
    asyncio.run(skiplock.AsyncWorker([probe], dsn=dsn, burst=True).run())
    assert client.get_job(job.id).state is skiplock.JobState.COMPLETED, client.get_job(job.id).errors
    assert seen == {"context": skiplock.JobContext, "job": skiplock.Job, "attempt": 1, "id": job.id}
    assert "`JobContext`" in paragraph
