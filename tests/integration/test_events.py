"""Lifecycle events on channel skiplock_event: opt-in, coalesced, one per kind and queue."""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
import pytest
from typer.testing import CliRunner

import skiplock
from skiplock.cli import app
from skiplock.models import Event
from waiting import wait_until


def listening(conn: psycopg.Connection) -> bool:
    return (
        conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'skiplock-events'"
        ).fetchone()[0]
        == 1
    )


def in_background(conn: psycopg.Connection, actions: Callable[[], None]) -> threading.Thread:
    """Run ``actions`` once the events listener of this test is connected."""

    def run() -> None:
        wait_until(lambda: listening(conn), what="the listener")
        actions()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_every_transition_emits_its_event(dsn, client, conn):
    client.enable_events()

    def transitions() -> None:
        with psycopg.connect(dsn, autocommit=True) as c:
            client.enqueue("t", {}, queue="emails")  # enqueued
            claim = "SELECT id, lease_token FROM skiplock.claim('{emails}', gen_random_uuid())"
            job_id, token = c.execute(claim).fetchone()  # started
            c.execute(
                "SELECT skiplock.set_progress(ARRAY[%s::bigint], ARRAY[%s::uuid], '{50}')", [job_id, token]
            )
            c.execute("SELECT skiplock.fail(%s, %s, 'flaky')", [job_id, token])  # retried
            c.execute("UPDATE skiplock.job SET run_at = now() WHERE id = %s", [job_id])
            job_id, token = c.execute(claim).fetchone()
            c.execute(
                "SELECT skiplock.complete(ARRAY[%s::bigint], ARRAY[%s::uuid])", [job_id, token]
            )  # completed
            client.enqueue("t", {}, queue="emails", max_attempts=1)
            job_id, token = c.execute(claim).fetchone()
            c.execute("SELECT skiplock.fail(%s, %s, 'no')", [job_id, token])  # failed
            client.cancel([client.enqueue("t", {}, queue="emails").id])  # cancelled

    want = {"enqueued", "started", "progress", "retried", "completed", "failed", "cancelled"}
    seen: list[Event] = []
    with skiplock.Client(dsn) as listener:
        thread = in_background(conn, transitions)
        for event in listener.events(timeout=30):
            seen.append(event)
            if {e.kind for e in seen} >= want:
                break
        thread.join(30)
    assert {e.kind for e in seen} == want
    assert {e.queue for e in seen} == {"emails"}


def test_events_are_filtered_coalesced_and_off_until_enabled(dsn, client, conn):
    def actions() -> None:
        client.enqueue("t", {}, queue="images")  # not enabled yet: nothing
        client.enable_events()
        client.enqueue_many([skiplock.JobSpec(task="t", queue="images") for _ in range(50)])  # one event
        client.enqueue("t", {}, queue="emails")  # another queue: filtered out
        client.disable_events()
        client.enqueue("t", {}, queue="images")  # disabled again: nothing
        conn.execute("SELECT pg_notify('skiplock_event', 'completed:images')")  # a marker after it all

    seen: list[Event] = []
    with skiplock.Client(dsn) as listener:
        thread = in_background(conn, actions)
        for event in listener.events(queues=["images"], kinds=["enqueued", "completed"], timeout=30):
            seen.append(event)
            if len(seen) == 2:
                break
        thread.join(30)
    # The batch once; nothing while disabled (or for the other queue); then the marker.
    assert seen == [Event(kind="enqueued", queue="images"), Event(kind="completed", queue="images")]


def test_unknown_kinds_are_refused(client):
    with pytest.raises(skiplock.ConfigError, match="unknown event kinds"):
        next(iter(client.events(kinds=["exploded"])))


def test_the_events_command(dsn, client, conn):
    runner = CliRunner()
    assert runner.invoke(app, ["events", "--enable", "--timeout", "0.1", "--dsn", dsn]).exit_code == 0
    assert conn.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'skiplock_events_%'"
    ).fetchone() == (3,)
    result = runner.invoke(app, ["events", "--disable", "--dsn", dsn])
    assert (result.exit_code, result.output) == (0, "events disabled\n")
    assert conn.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'skiplock_events_%'"
    ).fetchone() == (0,)
