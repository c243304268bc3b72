"""The monitor's screen at 80, 120 and 200 columns: every line fits, the key columns stay, and
job data is shown escaped. Rendered by rich into a recording console, without a database."""

from __future__ import annotations

import collections
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from skiplock.models import Failure, HealthCheck, TaskStat, WorkerInfo
from skiplock.monitor import Monitor, QueueRow, Snapshot

NOW = datetime(2026, 12, 1, tzinfo=UTC)
HOLDER = (
    "pid 4242 open 00:03:12, xmin age 90412, user analytics, app nightly-revenue-report-builder-for-finance,"
    " idle in transaction: SELECT r.region, sum(o.total) FROM orders AS o JOIN regions AS r USING (region_id)"
)
LONG_ERROR = "could not resize the image: " + "the decoder gave up on a truncated frame " * 4  # ~190 chars


def snapshot(*, queues: int = 3, failures: int = 3, error: str = LONG_ERROR, workers: int = 1) -> Snapshot:
    names = ["emails", "images-resize-long-name", "default", "reports", "webhooks", "etl"]
    rows = [
        QueueRow(
            queue=names[k % len(names)] + ("" if k < len(names) else str(k)),
            counts={
                "scheduled": 12,
                "available": 5400,
                "running": 36,
                "retryable": 16,
                "failed": 3,
                "waiting": 4 if k == 1 else 0,
            },
            enqueued_per_second=512.5,
            completed_per_second=498.25,
            failed_per_second=0.5,
            pickup_p50=timedelta(milliseconds=2),
            pickup_p95=timedelta(milliseconds=15),
            pickup_p99=timedelta(milliseconds=120),
            oldest_age=timedelta(seconds=75),
            paused=k == 1,
            limits="max 5, 20/s" if k == 0 else "",
        )
        for k in range(queues)
    ]
    workers = [
        WorkerInfo(
            id=uuid.uuid4(),
            host="worker-host-01.example.internal",
            pid=12345,
            queues=["emails", "images-resize-long-name"],
            concurrency=20,
            started_at=NOW,
            heartbeat_at=NOW,
            heartbeat_age=timedelta(seconds=3),
            running=36,
            jobs_done=123456,
            stale=False,
        )
    ][:workers]
    fails = [
        Failure(
            id=1234567 + k,
            queue="images-resize-long-name",
            task="resize_thumbnail_for_gallery",
            final=k % 2 == 0,
            attempt=3 + k,
            failed_at=NOW,
            error_type="builtins.ValueError",
            error=error,
        )
        for k in range(failures)
    ]
    tasks = [
        TaskStat(
            queue="emails",
            task="send_welcome",
            completed=1200,
            failed=3,
            cancelled=0,
            failure_rate=0.0025,
            run_p50=timedelta(milliseconds=3),
            run_p95=timedelta(milliseconds=9),
            run_p99=timedelta(milliseconds=40),
            retries=2,
        )
    ]
    health = [
        HealthCheck(
            name="oldest_transaction",
            status="warn",
            detail="",
            fix="",
            value=HOLDER,
        ),
        HealthCheck(
            name="partitions_ahead",
            status="ok",
            detail="",
            fix="",
            value="oldest partition 2026-12-01, newest 2026-12-04, 3 days ahead, 212 MB",
        ),
    ]
    return Snapshot(
        database={"database": "app", "server_version": "15.8", "schema_version": 18},
        interval_s=1.0,
        queues=rows,
        workers=workers,
        failures=fails,
        tasks=tasks,
        health=health,
    )


def monitor() -> Monitor:
    mon = Monitor(client=None)  # type: ignore[arg-type]  # rendering reads no database
    for name in ("emails", "images-resize-long-name", "default"):
        mon._rates[name] = collections.deque([float(k % 7) for k in range(30)], maxlen=40)
    return mon


def render(snap: Snapshot, width: int, height: int | None = None, mon: Monitor | None = None) -> list[str]:
    console = Console(record=True, width=width, color_system=None, force_terminal=False)
    console.print((mon or monitor()).render(snap, width, height))
    return console.export_text().splitlines()


def cells(lines: list[str], first: str) -> list[str]:
    """The cells of the first row whose first cell is ``first`` (cells are split on 2+ spaces)."""
    for line in lines:
        parts = [p for p in line.strip("│ ").split("  ") if p.strip()]
        if parts and parts[0].strip() == first:
            return [p.strip() for p in parts]
    raise AssertionError(f"no row {first!r} in:\n" + "\n".join(lines))


header = cells


@pytest.mark.parametrize("width", [80, 120, 200])
def test_every_line_fits_and_the_key_columns_stay(width):
    """Pass: no line is wider than the screen; the queues keep every count (sched, ready, run,
    retry, dead) and done/s and the oldest wait; each recent failure keeps its job id, queue,
    attempt and state whole, with a long error cut by an ellipsis; workers show slots and
    leased (running or prefetched) apart."""
    lines = render(snapshot(), width)
    assert max(len(line) for line in lines) <= width
    assert header(lines, "queue")[:6] == ["queue", "sched", "ready", "run", "retry", "dead"]
    emails = cells(lines, "emails")
    assert emails[1:6] == ["12", "5400", "36", "16", "3"]
    assert "498.25" in emails
    assert "1.2m" in emails
    for k in range(3):
        row = cells(lines, str(1234567 + k))
        assert row[1].startswith("images-")
        assert str(3 + k) in row
        assert ("dead" if k % 2 == 0 else "retry") in row
        assert row[-1].startswith("builtins.")
        assert row[-1].endswith("…")
        if width >= 120:
            assert row[-1].startswith("builtins.ValueError: could not")
    assert [h for h in header(lines, "host") if h in ("slots", "leased", "done")] == [
        "slots",
        "leased",
        "done",
    ]
    worker = next(line for line in lines if "12345" in line).split()
    assert worker[worker.index("12345") + 2 :][:4] == ["20", "36", "123456", "3.0s"]


def test_a_wide_screen_shows_the_trend_and_pickup_a_narrow_one_drops_them_first():
    """Pass: at 200 and 120 columns the trend and the pickup latency show; at 80 they go, the
    counts stay."""
    for width in (120, 200):
        lines = render(snapshot(), width)
        head = header(lines, "queue")
        assert "trend" in head, (width, head)
        assert "pickup p50/95/99" in head, (width, head)
        assert any("▁" in line or "█" in line for line in lines)
    narrow = header(render(snapshot(), 80), "queue")
    assert "trend" not in narrow
    assert "retry" in narrow
    assert "sched" in narrow


def test_the_postgres_panel_cuts_a_value_with_an_ellipsis():
    """Pass: a health value too long for its panel ends in an ellipsis, at every width where
    it does not fit; where it fits it is whole."""
    for width in (80, 160):  # at 160 the panel sits beside the workers
        lines = render(snapshot(), width)
        row = next(line for line in lines if "partitions_ahead" in line)
        assert row.rstrip("│ ").endswith("…"), row
    for width in (120, 200):  # stacked under the workers at 120 (too narrow for both side by side)
        wide = render(snapshot(), width)
        assert any("3 days ahead, 212 MB" in line for line in wide)


def test_a_short_screen_keeps_the_queues_and_names_what_it_cannot_show():
    """Pass: at 80x24 the screen is 24 lines; the queues table is whole; the panels that lost
    rows say so in their title, and one with no room is named in the title line."""
    lines = render(snapshot(queues=4, failures=10), 80, 24)
    assert len(lines) <= 24
    assert max(len(line) for line in lines) <= 80
    for name in ("emails", "images-resize…", "default", "reports"):
        assert cells(lines, name)[1:6] == ["12", "5400", "36", "16", "3"]
    assert "no room for tasks" in lines[0]
    assert any("recent failures (" in line and "of 10 shown)" in line for line in lines)


@pytest.mark.parametrize("width", [80, 120, 200])
def test_hostile_job_data_is_shown_escaped_on_one_line(width):
    """Pass: an error holding escape sequences, an OSC 8 hyperlink, a right-to-left override,
    zero-width characters, a carriage return and a forged line reaches the screen as visible
    escapes, on its own row; rich markup in it is text."""
    error = "\x1b[2J\x1b]8;;http://evil\x1b\\x\u202eexe.txt\u200b\u2066\r\nstate: completed [bold]b[/bold]"
    lines = render(snapshot(failures=1, error=error), width)
    text = "\n".join(lines)
    for raw in ("\x1b", "\u202e", "\u200b", "\u2066", "\r"):
        assert raw not in text
    assert not any(line.startswith("state: completed") for line in lines)
    assert max(len(line) for line in lines) <= width
    if width == 200:
        assert (
            "\\x1b[2J\\x1b]8;;http://evil\\x1b\\x\\u202eexe.txt\\u200b\\u2066\\x0d\\x0astate: completed [bold]"
            in text
        )


@pytest.mark.parametrize("width", [80, 120])
def test_the_horizon_holder_keeps_its_pid_and_ages_and_its_query_is_cut(width):
    """Pass: at 80 and 120 columns the holder's row shows its pid, transaction age and xmin age
    whole (at 120 the workers panel would leave too little beside it, so the two are stacked);
    the query at the end is what the ellipsis cuts."""
    lines = render(snapshot(), width)
    (row,) = [line for line in lines if "oldest_transaction" in line]
    assert "pid 4242 open 00:03:12, xmin age 90412" in row, row
    assert row.rstrip("│ ").endswith("…"), row


def test_with_no_workers_panel_the_postgres_panel_takes_the_full_width():
    """Pass: at 160 columns with no workers to show, the postgres panel spans the screen and the
    holder's row reaches its query; beside a workers panel the same row is cut sooner, after
    its pid and ages."""
    lines = render(snapshot(workers=0), 160)
    (row,) = [line for line in lines if "oldest_transaction" in line]
    assert len(row) == 160, row
    assert "idle in transaction: SELECT r.r" in row, row
    with_workers = render(snapshot(), 160)
    (narrow,) = [line for line in with_workers if "oldest_transaction" in line]
    assert "pid 4242 open 00:03:12, xmin age 90412" in narrow, narrow
    assert "idle in transaction" not in narrow, narrow  # beside the workers: the width really moved
