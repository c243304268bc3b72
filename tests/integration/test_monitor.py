"""The monitor's snapshot and screen, the monitoring views, and `skiplock doctor`, on a real database."""

from __future__ import annotations

import json
from datetime import timedelta

import psycopg
from rich.console import Console
from typer.testing import CliRunner

import skiplock
from skiplock.cli import app
from skiplock.monitor import Monitor, sparkline

runner = CliRunner()


def screen(mon: Monitor, width: int = 160) -> str:
    console = Console(record=True, width=width, color_system=None, force_terminal=False)
    console.print(mon.render(mon.snapshot()))
    return console.export_text()


def run_jobs(conn: psycopg.Connection, queue: str, n: int, *, fail: bool = False) -> None:
    rows = conn.execute(
        "SELECT id, lease_token FROM skiplock.claim(ARRAY[%s], gen_random_uuid(), %s)", [queue, n]
    ).fetchall()
    for job_id, token in rows:
        if fail:
            conn.execute(
                "SELECT skiplock.fail(%s, %s, %s, error_type => 'ValueError', retryable => false)",
                [job_id, token, "bad \x1b[2J\x1b[31mred\x9b text"],
            )
        else:
            conn.execute("SELECT skiplock.complete(ARRAY[%s::bigint], ARRAY[%s::uuid])", [job_id, token])


def test_snapshot_counts_rates_latency_and_markers(client, conn):
    client.enqueue_many([skiplock.JobSpec(task="send", queue="emails") for _ in range(30)])
    client.enqueue_many([skiplock.JobSpec(task="resize", queue="images") for _ in range(5)])
    client.set_queue_limits("emails", concurrency=5, rate=20)
    client.pause_queue("images")
    mon = Monitor(client, slow_every=0)  # read every view at every snapshot
    first = mon.snapshot()
    conn.execute("SELECT skiplock.set_queue_limits('emails')")
    run_jobs(conn, "emails", 10)
    client.enqueue_many([skiplock.JobSpec(task="send", queue="emails") for _ in range(4)])
    snap = mon.snapshot()
    rows = {q.queue: q for q in snap.queues}
    assert rows["emails"].counts["available"] == 24
    assert rows["emails"].completed_per_second > 0
    assert rows["emails"].enqueued_per_second > 0  # 4 new and 10 finished, while live fell by 6
    assert rows["emails"].pickup_p50 is not None
    assert rows["images"].paused
    assert {q.queue: q.limits for q in first.queues}["emails"] == "max 5, 20/s"
    assert len(mon.rates("emails")) == 2
    assert next(h for h in snap.health if h.name == "partitions_ahead").status in ("ok", "warn", "critical")
    assert json.loads(snap.to_json())["queues"][0]["queue"] == "emails"


def test_the_screen_shows_every_section_and_escapes_job_data(client, conn):
    client.enqueue("send", {}, queue="emails")
    client.enqueue("send", {}, queue="emails")
    run_jobs(conn, "emails", 1, fail=True)
    client.pause_queue("emails")
    text = screen(Monitor(client))
    for section in ("queues", "workers", "recent failures", "tasks, last 5 minutes", "postgres:"):
        assert section in text
    assert "paused" in text
    assert "\x1b" not in text
    assert "\x9b" not in text
    assert "\\x1b[2J\\x1b[31mred\\x9b text" in text  # shown, never interpreted
    assert "oldest_transaction" in text


def test_jobs_waiting_for_parents_are_noted_per_queue(client):
    """Pass: a queue with jobs waiting for their parents says how many in its notes."""
    parent = client.enqueue("extract", {}, queue="etl")
    client.enqueue("load", {}, queue="etl", depends_on=[parent])
    client.enqueue("report", {}, queue="etl", depends_on=[parent])
    snap = Monitor(client).snapshot()
    assert next(q for q in snap.queues if q.queue == "etl").counts["waiting"] == 2
    assert "2 waiting for parents" in screen(Monitor(client))


def test_queue_filter(client, conn):
    client.enqueue("send", {}, queue="emails")
    client.enqueue("resize", {}, queue="images")
    snap = Monitor(client, queue="images").snapshot()
    assert [q.queue for q in snap.queues] == ["images"]


def test_task_stats_and_recent_failures_views(client, conn):
    client.enqueue_many([skiplock.JobSpec(task="send", queue="emails") for _ in range(4)])
    run_jobs(conn, "emails", 3)
    run_jobs(conn, "emails", 1, fail=True)
    (stat,) = client.task_stats()
    assert (stat.task, stat.completed, stat.failed, stat.failure_rate) == ("send", 3, 1, 0.25)
    assert stat.run_p50 is not None
    assert stat.run_p50 >= timedelta(0)
    (failure,) = client.recent_failures()
    assert (failure.task, failure.final, failure.attempt, failure.error_type) == (
        "send",
        True,
        1,
        "ValueError",
    )


def test_the_oldest_transaction_is_named_and_flagged(dsn, client, conn):
    """Pass: a transaction held open past the threshold shows in health (and doctor) with its pid."""
    dbname = conn.info.dbname
    conn.execute(f"ALTER DATABASE \"{dbname}\" SET skiplock.long_transaction_warn = '0.2s'")
    holder = psycopg.connect(dsn)
    try:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM skiplock.job").fetchone()
        pid = holder.info.backend_pid
        with skiplock.Client(dsn) as fresh:  # new sessions read the setting

            def flagged() -> bool:
                check = next(h for h in fresh.health() if h.name == "oldest_transaction")
                return check.status == "warn" and f"pid {pid} " in check.value

            from waiting import wait_until

            wait_until(flagged, timeout=10, what="the holder flagged")
        result = runner.invoke(app, ["doctor", "--dsn", dsn])
        assert result.exit_code == 1
        assert f"pid {pid} " in result.output
        assert f"pg_terminate_backend({pid})" in result.output
    finally:
        holder.close()
        conn.execute(f'ALTER DATABASE "{dbname}" RESET skiplock.long_transaction_warn')


def test_doctor_passes_on_a_healthy_database_and_flags_missing_partitions(dsn, conn):
    conn.execute("SELECT skiplock.ensure_partitions(3)")
    result = runner.invoke(app, ["doctor", "--dsn", dsn])
    assert result.exit_code == 0, result.output
    assert "all checks passed" in result.output
    for (name,) in conn.execute(
        "SELECT * FROM skiplock.drop_partitions(interval '0', as_of => now() + interval '30 days')"
    ):
        assert name.startswith("job_history_p")
    result = runner.invoke(app, ["doctor", "--dsn", dsn])
    assert result.exit_code == 1
    assert "partitions_ahead" in result.output
    assert "fix: run a worker with maintenance on" in result.output


def test_monitor_once_and_json_from_the_cli(dsn, client):
    client.enqueue("send", {}, queue="emails")
    result = runner.invoke(app, ["monitor", "--once", "--dsn", dsn])
    assert result.exit_code == 0, result.output
    assert "emails" in result.output
    result = runner.invoke(app, ["monitor", "--json", "--dsn", dsn])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["queues"][0]["counts"]["available"] == 1
    assert {h["name"] for h in data["health"]} >= {"dead_tuples", "oldest_transaction", "notify_queue"}


def test_sparkline():
    assert sparkline([0, 0, 0]) == "▁▁▁"
    assert sparkline([1, 2, 4, 8]) == "▂▃▅█"
    assert len(sparkline(list(range(100)), width=20)) == 20
