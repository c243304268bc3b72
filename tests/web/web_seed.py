"""Jobs in every state, and a hostile corpus, for the dashboard's tests (plain SQL functions)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

import skiplock

#: Strings that must stay text in a page: markup, script URLs, attribute breakouts, a bidi override.
HOSTILE = {
    "script": "<script>alert('x')</script>",
    "img": '<img src=x onerror="alert(1)" id="pwned-img">',
    "url": "javascript:alert(document.domain)",
    "attr": '"><svg id="pwned-svg" onload=alert(2)>',
    "single": "' autofocus onfocus='alert(3)",
    "rtl": "invoice\u202egnp.exe",
    "esc": "\x1b[31mred",
}
HOSTILE_QUEUE = 'q"><b id="pwned-queue">x</b>'
HOSTILE_TASK = "<iframe id=pwned-frame src=javascript:alert(4)>"


WORKER = uuid.UUID("5e1f0c4a-0000-4000-8000-00000000beef")


def claim(
    conn: psycopg.Connection[Any], queue: str, n: int = 1, worker: uuid.UUID | None = None
) -> list[tuple[int, Any]]:
    return conn.execute(
        "SELECT id, lease_token FROM skiplock.claim(ARRAY[%s], %s, %s)", [queue, worker or uuid.uuid4(), n]
    ).fetchall()


def seed_every_state(dsn: str) -> dict[str, int]:
    """One job (at least) in each of the eight states; return a job id per state."""
    ids: dict[str, int] = {}
    with skiplock.Client(dsn) as client, psycopg.connect(dsn, autocommit=True) as conn:
        for q in ("done", "dead", "gone", "busy", "again"):
            client.enqueue(f"{q}_task", {"n": 1}, queue=q)
        ((done_id, token),) = claim(conn, "done")
        conn.execute(
            "SELECT skiplock.complete(ARRAY[%s::bigint], ARRAY[%s::uuid], ARRAY[%s::jsonb])",
            [done_id, token, '{"sent": true}'],
        )
        ids["completed"] = done_id
        ((dead_id, token),) = claim(conn, "dead")
        conn.execute(
            "SELECT skiplock.fail(%s, %s, %s, error_type => 'ValueError', retryable => false,"
            " traceback => 'Traceback (most recent call last):\n  boom')",
            [dead_id, token, "the payment provider said no"],
        )
        ids["failed"] = dead_id
        ((again_id, token),) = claim(conn, "again")
        conn.execute(
            "SELECT skiplock.fail(%s, %s, %s, error_type => 'TimeoutError')",
            [again_id, token, "timed out, retrying"],
        )
        ids["retryable"] = again_id
        conn.execute(
            "SELECT skiplock.register_worker(worker_id => %s, host => 'app-1', pid => 4242,"
            " queues => ARRAY['busy', 'todo'], concurrency => 8)",
            [WORKER],
        )
        ((busy_id, _),) = claim(conn, "busy", worker=WORKER)
        ids["running"] = busy_id
        gone = conn.execute("SELECT id FROM skiplock.jobs WHERE queue = 'gone'").fetchone()
        assert gone is not None
        conn.execute("SELECT skiplock.cancel(ARRAY[%s::bigint])", [gone[0]])
        ids["cancelled"] = gone[0]
        ids["available"] = client.enqueue("waiting_task", queue="todo").id
        ids["scheduled"] = client.enqueue("later_task", queue="todo", delay=timedelta(hours=1)).id
        parent = skiplock.JobSpec(task="parent_task", queue="flow")
        child = skiplock.JobSpec(task="child_task", queue="flow", depends_on=[parent])
        jobs = client.enqueue_many([parent, child])
        ids["parent"], ids["waiting"] = jobs
        client.schedule("nightly-report", "0 3 * * *", "build_report", queue="todo")
    return ids


def seed_hostile(dsn: str) -> int:
    """A failed job whose queue, task, args, error and traceback are all hostile; return its id.

    skiplock.enqueue refuses such queue and task names, so the row is written straight into
    history, as an older version, a hand-written INSERT or a restored dump could have left it.
    """
    errors = [{"attempt": 1, "at": "2026-12-01T00:00:00+00:00", "type": HOSTILE["attr"],
               "error": HOSTILE["img"] + HOSTILE["rtl"], "traceback": HOSTILE["script"]}]  # fmt: skip
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO skiplock.job_history (id, queue, task, args, state, priority, attempt, max_attempts,"
            " run_at, created_at, attempted_at, errors, finished_at, result)"
            " VALUES (nextval('skiplock.job_id_seq'), %s, %s, %s, 'failed', 0, 1, 1, now(), now(), now(), %s,"
            " now(), %s) RETURNING id",
            [HOSTILE_QUEUE, HOSTILE_TASK, Jsonb(HOSTILE), Jsonb(errors), Jsonb({"link": HOSTILE["url"]})],
        ).fetchone()
        assert row is not None
        return int(row[0])


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    marker = 'name="csrf" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]
