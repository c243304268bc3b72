"""Hostile input: each gets one clear error before anything is written, client side and SQL side,
or is clamped as documented."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import psycopg
import pytest

import skiplock
from conftest import size

NAMES = [
    "it's",  # a quote
    'say "hi"',
    "q; DROP TABLE skiplock.job; --",  # a semicolon
    "q\u202etxt",  # right-to-left override
    "q\u200b",  # zero-width space
    "q\u0430",  # a Cyrillic a that looks Latin
    "q" * 64,  # one more than a queue name may hold
    "",
    " q",
]


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def nothing_written(conn: psycopg.Connection[Any]) -> None:
    assert conn.execute("SELECT count(*) FROM skiplock.job").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM skiplock.queue").fetchone() == (0,)


@pytest.mark.parametrize("name", NAMES)
def test_hostile_queue_names(client, conn, name):
    with pytest.raises(skiplock.InvalidInput, match="invalid queue name"):
        client.enqueue("t", {}, queue=name)
    with pytest.raises(skiplock.InvalidInput, match="invalid queue name"):
        client.enqueue_many([skiplock.JobSpec(task="t"), skiplock.JobSpec(task="t", queue=name)])
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="invalid queue name"):
        conn.execute("SELECT skiplock.enqueue(%s, 't')", [name])
    for call in ("pause_queue(%s)", "set_queue_limits(%s, 1)", "claim(ARRAY[%s], gen_random_uuid())"):
        if call.startswith("claim"):
            assert conn.execute(f"SELECT count(*) FROM skiplock.{call}", [name]).fetchone() == (0,)
        else:
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="invalid queue name"):
                conn.execute(f"SELECT skiplock.{call}", [name])
    nothing_written(conn)


@pytest.mark.parametrize("name", [*NAMES[:6], "t" * 201, ""])
def test_hostile_task_names(client, conn, name):
    with pytest.raises(skiplock.InvalidInput, match="invalid task name"):
        client.enqueue(name, {})
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="invalid task name"):
        conn.execute("SELECT skiplock.enqueue('q', %s)", [name])
    nothing_written(conn)


def test_error_messages_escape_what_they_quote(client):
    """A name with a terminal escape sequence comes back quoted as JSON, never raw."""
    with pytest.raises(skiplock.InvalidInput) as info:
        client.enqueue("t\x1b[2J", {})
    assert "\x1b" not in str(info.value)
    assert "\\u001b" in str(info.value)


@pytest.mark.parametrize(
    ("where", "kwargs"),
    [
        ("task", {"task": "a\x00b"}),
        ("queue", {"queue": "q\x00"}),
        ("dedupe key", {"dedupe_key": "k\x00"}),
        ("args", {"args": {"a": "x\x00y"}}),
    ],
)
def test_nul_anywhere(client, conn, where, kwargs):
    call = {"task": "t", "args": {}} | kwargs
    with pytest.raises(skiplock.InvalidInput, match="invalid value"):
        client.enqueue(call.pop("task"), call.pop("args"), **call)
    nothing_written(conn)


@pytest.mark.parametrize("args", [[1, 2], "text", 7, None])
def test_args_that_are_not_objects(client, conn, args):
    if args is None:  # None means no arguments
        assert client.enqueue("t", args).args == {}
        conn.execute("DELETE FROM skiplock.job")
        conn.execute("DELETE FROM skiplock.queue")
    else:
        with pytest.raises(skiplock.ConfigError, match="job args must be a dict"):
            client.enqueue("t", args)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="args must be a JSON object"):
        conn.execute("SELECT skiplock.enqueue('q', 't', %s::jsonb)", [psycopg.types.json.Jsonb(args or [])])
    nothing_written(conn)


def test_deeply_nested_args(client, conn):
    with pytest.raises(skiplock.ConfigError, match="nested too deeply"):
        client.enqueue("t", {"a": nested(100_000)})
    with pytest.raises(psycopg.errors.StatementTooComplex):
        conn.execute(
            "SELECT skiplock.enqueue('q', 't', %s::jsonb)", ['{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"]
        )
    nothing_written(conn)
    assert client.enqueue("t", {"a": nested(500)}).id  # deep, within reason: accepted


def test_ten_megabyte_args(client, conn):
    big = {"blob": "x" * 10_000_000}
    with pytest.raises(skiplock.InvalidInput, match="exceed the limit of 262144 bytes"):
        client.enqueue("t", big)
    with pytest.raises(skiplock.InvalidInput, match=r"exceed the limit of 262144 bytes \(batch position 2\)"):
        client.enqueue_many([skiplock.JobSpec(task="t"), skiplock.JobSpec(task="t", args=big)])
    nothing_written(conn)


def test_a_million_job_batch(client, conn):
    """SQL refuses a batch over max_batch_size; the client splits a big batch into chunks inside
    one transaction (documented), so it lands whole, or not at all."""
    with pytest.raises(
        psycopg.errors.InvalidParameterValue, match="batch of 1000000 jobs exceeds the limit of 10000"
    ):
        conn.execute(
            "SELECT count(*) FROM skiplock.enqueue_many('{q}', array_fill('t'::text, ARRAY[1000000]))"
        )
    nothing_written(conn)
    n = size(100_000, 1_000_000)
    bad = [skiplock.JobSpec(task="t", args={"i": i}) for i in range(n)]
    bad[-1] = skiplock.JobSpec(task="t", args={"i": "x" * 300_000})  # the last chunk fails
    with pytest.raises(skiplock.InvalidInput, match="exceed the limit"):
        client.enqueue_many(bad)
    nothing_written(conn)  # the chunks before it were rolled back with it
    ids = client.enqueue_many(skiplock.JobSpec(task="t", args={"i": i}) for i in range(n))
    assert len(ids) == len(set(ids)) == n


def test_a_claim_asking_for_a_million_jobs(conn, dsn):
    conn.execute("SELECT skiplock.enqueue('q', 't')")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="max_jobs must be between 1 and 10000"):
        conn.execute("SELECT * FROM skiplock.claim('{q}', gen_random_uuid(), 1000000)")
    assert conn.execute("SELECT state::text FROM skiplock.job").fetchone() == ("available",)
    with pytest.raises(skiplock.ConfigError, match="concurrency must be between 1 and 10000"):
        skiplock.Worker([skiplock.task(lambda: None, name="noop")], dsn=dsn, concurrency=1_000_000)
    with pytest.raises(skiplock.ConfigError, match="prefetch must be between 0 and 10000"):
        skiplock.Worker([skiplock.task(lambda: None, name="noop2")], dsn=dsn, prefetch=1_000_000)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT skiplock.enqueue('q', 't', priority => 40000)", "priority 40000 out of range"),
        ("SELECT skiplock.enqueue('q', 't', max_attempts => 0)", "max_attempts 0 out of range"),
        ("SELECT skiplock.enqueue('q', 't', delay => '-1 day')", "delay must not be negative"),
        (
            "SELECT skiplock.enqueue('q', 't', dedupe_key => repeat('k', 513))",
            "dedupe_key must be 1-512 bytes",
        ),
        ("SELECT skiplock.enqueue('q', 't', dedupe_key => '')", "dedupe_key must be 1-512 bytes"),
        ("SELECT skiplock.set_queue_limits('q', rate => 'Infinity')", "rate limit must be more than 0"),
        ("SELECT skiplock.pause_queue('q', until => '-infinity')", None),
    ],
)
def test_out_of_range_values_at_the_sql_boundary(conn, sql, message):
    if message is None:  # accepted: a pause that already ended
        conn.execute(sql)
        assert conn.execute("SELECT paused FROM skiplock.queue_stats").fetchall() == []
        return
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        conn.execute(sql)
    nothing_written(conn)


#: Job data that would drive a terminal or forge a line if it reached one raw.
HOSTILE = (
    "\u202eexe.txt\u2066iso\u2069\u200f"  # bidi override, isolate, mark
    "hid\u200bden\u200d\u2060\ufeff"  # zero-width characters
    "\x1b[2J\x1b[H\x1b[31mred\x9b31m"  # clear the screen, home the cursor, recolour (CSI in one byte too)
    "\x1b]8;;http://evil.example/\x1b\\click me\x1b]8;;\x1b\\"  # an OSC 8 hyperlink
    "\u2028\u2029"  # line and paragraph separators
    "\rspoof"  # back to the start of the line
    "\nstate: completed\nattempt: 1/1"  # forged field lines
)
RAW = ["\x1b", "\x9b", "\u202e", "\u2066", "\u2069", "\u200f", "\u200b", "\u200d", "\u2060", "\ufeff", "\u2028",
       "\u2029", "\r"]  # fmt: skip


def _hostile_job(conn: psycopg.Connection[Any]) -> int:
    """A failed job whose args, error type, error and progress message are all hostile."""
    conn.execute(
        "SELECT skiplock.enqueue('hostile', 't', jsonb_build_object('note', %s::text), max_attempts => 1)",
        [HOSTILE],
    )
    job_id, token = conn.execute(
        "SELECT id, lease_token FROM skiplock.claim(ARRAY['hostile'], gen_random_uuid(), 1)"
    ).fetchone()
    conn.execute(
        "SELECT skiplock.set_progress(ARRAY[%s::bigint], ARRAY[%s::uuid], ARRAY[50::float8], ARRAY[%s::text])",
        [job_id, token, HOSTILE],
    )
    conn.execute(
        "SELECT skiplock.fail(%s, %s, %s, error_type => %s)", [job_id, token, HOSTILE, "Bad" + HOSTILE]
    )
    return int(job_id)


def _run_cli(dsn: str, *args: str, columns: int = 200) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "skiplock", *args, "--dsn", dsn],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": str(columns), "LINES": "200"},
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize(
    "command", [["jobs", "show", "{id}"], ["jobs", "list"], ["monitor", "--once"]], ids=lambda c: " ".join(c)
)
def test_job_data_never_reaches_the_terminal_raw(dsn, conn, command):
    """Pass: through the real CLI, a job whose args, error, error type and progress message hold
    escape sequences, an OSC 8 hyperlink, bidi controls, zero-width characters, line separators,
    a carriage return and forged field lines prints every one of them as a visible escape; no
    line of output starts with a forged field."""
    job_id = _hostile_job(conn)
    out = _run_cli(dsn, *[a.format(id=job_id) for a in command])
    for raw in RAW:
        assert raw not in out, (repr(raw), out)
    assert "\\u202eexe.txt" in out
    lines = out.splitlines()
    assert not [line for line in lines if line.startswith(("state: completed", "attempt: 1/1"))]
    if command[:2] == ["jobs", "show"]:
        assert [line for line in lines if line.startswith("state:")] == ["state: failed"]
        assert "\\x1b]8;;http://evil.example/" in out
        assert any(
            line.startswith("    state: completed") for line in lines
        )  # the error's own line, indented


WORKER_TASKS = """
import skiplock

@skiplock.task(queue="hostile", max_attempts=1)
def explode(note: str) -> None:
    raise RuntimeError(note)
"""


def test_a_worker_logs_job_errors_escaped_on_one_line(dsn, conn, tmp_path):
    """Pass: a real worker process runs a task whose exception message is hostile; what it
    writes to stderr holds no escape sequence, bidi or zero-width character and no carriage
    return, and the error's forged lines stay inside the worker's own log line."""
    (tmp_path / "hostiletasks.py").write_text(WORKER_TASKS)
    conn.execute(
        "SELECT skiplock.enqueue('hostile', 'explode', jsonb_build_object('note', %s::text), max_attempts => 1)",
        [HOSTILE],
    )
    out = subprocess.run(
        [sys.executable, "-m", "skiplock", "worker", "hostiletasks", "--burst", "--dsn", dsn],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert conn.execute("SELECT state::text FROM skiplock.jobs").fetchone() == ("failed",)
    for raw in RAW:
        assert raw not in out.stderr, (repr(raw), out.stderr)
    logged = [line for line in out.stderr.splitlines() if "\\x1b[2J" in line]
    assert len(logged) == 1, out.stderr  # one line for the failed attempt
    assert all("state: completed" in line and "explode" in line for line in logged)
    assert not [line for line in out.stderr.splitlines() if line.startswith(("state:", "attempt:"))]
