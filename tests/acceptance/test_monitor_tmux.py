"""`skiplock monitor` in a real terminal (tmux) with a real worker draining jobs beside it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import skiplock
from waiting import wait_until

pytestmark = [
    pytest.mark.subprocess,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux"),
]


class Terminal:
    """A detached tmux session running one command; the test reads its screen."""

    def __init__(self, command: list[str], env: dict[str, str], width: int, height: int) -> None:
        self.name = f"skiplock-{uuid.uuid4().hex[:8]}"
        exports = " ".join(f"{k}={_quote(v)}" for k, v in env.items())
        subprocess.run(
            [
                "tmux",
                "new-session",
                "-d",
                "-s",
                self.name,
                "-x",
                str(width),
                "-y",
                str(height),
                f"env {exports} {' '.join(_quote(c) for c in command)}; sleep 600",
            ],
            check=True,
        )

    def screen(self) -> str:
        return subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True, check=True
        ).stdout

    def resize(self, width: int, height: int) -> None:
        subprocess.run(
            ["tmux", "resize-window", "-t", self.name, "-x", str(width), "-y", str(height)], check=True
        )

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], check=False)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def row(screen: str, queue: str) -> list[str]:
    """The cells of ``queue``'s row in the queues panel."""
    for line in screen.splitlines():
        cells = line.strip("│ ").split()
        if cells and cells[0] == queue:
            return cells
    return []


TASKS = textwrap.dedent(
    """
    import time
    import skiplock

    @skiplock.task(queue="busy")
    def step(i: int) -> None:
        time.sleep(0.02)
    """
)


@pytest.fixture
def worker(dsn: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    (tmp_path / "monitortasks.py").write_text(TASKS)
    with open(tmp_path / "worker.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "skiplock", "worker", "monitortasks", "--concurrency", "2"],
            cwd=tmp_path,
            env={**os.environ, "SKIPLOCK_DSN": dsn},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    yield proc
    proc.terminate()
    proc.wait(30)


def test_the_monitor_shows_the_queue_moving_a_paused_queue_and_a_long_transaction(dsn, conn, client, worker):
    """Pass: under tmux, with a worker draining: the ready count of a busy queue falls and its
    completion rate shows; a queue paused meanwhile is marked `paused`; a transaction held open
    past the threshold is flagged with its pid within a few seconds; the screen follows a resize."""
    dbname = conn.info.dbname
    conn.execute(f"ALTER DATABASE \"{dbname}\" SET skiplock.long_transaction_warn = '2s'")
    client.enqueue_many([skiplock.JobSpec(task="step", args={"i": i}, queue="busy") for i in range(3000)])
    client.enqueue("other", {}, queue="held")
    term = Terminal(
        [sys.executable, "-m", "skiplock", "monitor", "--interval", "0.5"],
        {"SKIPLOCK_DSN": dsn, "TERM": "xterm-256color", "PATH": os.environ["PATH"]},
        width=160,
        height=50,
    )
    try:
        wait_until(lambda: len(row(term.screen(), "busy")) > 3, timeout=30, what="the busy queue on screen")
        ready_before = int(row(term.screen(), "busy")[2])
        wait_until(
            lambda: (r := row(term.screen(), "busy")) and int(r[2]) < ready_before - 20 and float(r[7]) > 0,
            timeout=30,
            what="the ready count falling and a completion rate",
        )
        client.pause_queue("held")
        wait_until(lambda: "paused" in row(term.screen(), "held"), timeout=15, what="the paused marker")

        holder = psycopg.connect(dsn)
        try:
            holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            holder.execute("SELECT count(*) FROM skiplock.job").fetchone()
            pid = holder.info.backend_pid
            wait_until(
                lambda: f"pid {pid} " in (s := term.screen()) and "1 warn" in s,
                timeout=15,
                what="the long transaction flagged with its pid",
            )
        finally:
            holder.close()
        term.resize(110, 45)
        wait_until(
            lambda: (
                (s := term.screen()) and "queues" in s and max(len(line) for line in s.splitlines()) <= 110
            ),
            timeout=15,
            what="the screen redrawn at the new width",
        )
    except AssertionError:
        print(term.screen())  # what the terminal showed when the wait gave up
        raise
    finally:
        term.close()
        conn.execute(f'ALTER DATABASE "{dbname}" RESET skiplock.long_transaction_warn')


def test_at_80x24_the_monitor_keeps_every_key_column_and_the_worker_counts_move(dsn, conn, client, worker):
    """Pass: under tmux at 80x24, with a worker draining and failures holding 150-character
    errors: no line is wider than 80 or below line 24; the queues table keeps sched, ready, run,
    retry and dead (16 jobs waiting to retry show); each failure keeps its job id, queue,
    attempt and state, its error cut with an ellipsis; the worker's done count moves during the
    drain, and what it holds shows as leased next to its slots."""
    client.enqueue_many([skiplock.JobSpec(task="step", args={"i": i}, queue="busy") for i in range(3000)])
    failed = []
    for k in range(16):
        conn.execute("SELECT skiplock.enqueue('flaky', 'fetch', max_attempts => 5)")
        job_id, token = conn.execute(
            "SELECT id, lease_token FROM skiplock.claim(ARRAY['flaky'], gen_random_uuid(), 1)"
        ).fetchone()
        conn.execute(
            "SELECT skiplock.fail(%s, %s, %s, error_type => 'TimeoutError', retry_in => '1 hour')",
            [job_id, token, f"upstream {k} timed out after 30 s: " + "the gateway answered 504 " * 5],
        )
        failed.append(job_id)
    term = Terminal(
        [sys.executable, "-m", "skiplock", "monitor", "--interval", "0.5"],
        {"SKIPLOCK_DSN": dsn, "TERM": "xterm-256color", "PATH": os.environ["PATH"]},
        width=80,
        height=24,
    )

    def worker_cells(screen: str) -> list[str]:
        for line in screen.splitlines():
            cells = line.strip("│ ").split()
            if str(worker.pid) in cells:
                return cells[cells.index(str(worker.pid)) :]
        return []

    try:
        wait_until(lambda: len(row(term.screen(), "busy")) > 5, timeout=30, what="the busy queue on screen")
        screen = term.screen()
        lines = screen.splitlines()
        assert len(lines) <= 24
        assert max(len(line) for line in lines) <= 80
        head = row(screen, "queue")
        assert head[:6] == ["queue", "sched", "ready", "run", "retry", "dead"], screen
        assert row(screen, "flaky")[4] == "16", screen
        wait_until(
            lambda: (
                (c := worker_cells(term.screen()))
                and int(c[4]) > 0
                and int(row(term.screen(), "busy")[2]) > 0
            ),
            timeout=30,
            what="the worker's done count moving while the queue drains",
        )
        screen = term.screen()
        assert row(screen, "host")[3:6] == ["slots", "leased", "done"], screen
        shown = [r for r in (row(screen, str(i)) for i in failed) if r]
        assert shown, screen
        for cells in shown:
            assert cells[1] == "flaky"
            assert cells[3] == "1"  # the attempt
            assert cells[4] == "retry"
            assert cells[-1].endswith("…")
    except AssertionError:
        print(term.screen())  # what the terminal showed when the wait gave up
        raise
    finally:
        term.close()


def test_at_80_columns_the_monitor_names_a_held_transaction_by_pid_and_ages(dsn, conn, client):
    """Pass: under tmux at 80x24, with a REPEATABLE READ session of a long application name
    idle in transaction past the warn threshold, the postgres panel's row for it shows its pid,
    how long it has been open and its xmin age, and cuts the query after them with an
    ellipsis; no line is wider than 80. With no worker registered the panel spans the screen.
    Once the session ends the row says none."""
    dbname = conn.info.dbname
    conn.execute(f"ALTER DATABASE \"{dbname}\" SET skiplock.long_transaction_warn = '1s'")
    client.enqueue("step", {"i": 0}, queue="busy")
    holder = psycopg.connect(dsn, application_name="nightly-revenue-report-builder-for-finance")
    term = None
    try:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute(
            "SELECT count(*) FROM skiplock.job AS j WHERE j.queue = 'busy' AND j.task = 'step'"
        ).fetchone()
        pid = holder.info.backend_pid
        term = Terminal(
            [sys.executable, "-m", "skiplock", "monitor", "--interval", "0.5"],
            {"SKIPLOCK_DSN": dsn, "TERM": "xterm-256color", "PATH": os.environ["PATH"]},
            width=80,
            height=24,
        )

        def holder_row() -> str:
            rows = [ln for ln in term.screen().splitlines() if "oldest_transaction" in ln]
            return rows[0] if rows and f"pid {pid} " in rows[0] else ""

        row_text = wait_until(holder_row, timeout=30, what="the held transaction named on screen")
        wait_until(lambda: "1 warn" in term.screen(), timeout=15, what="the holder flagged warn")
        row_text = holder_row()
        assert re.search(rf"pid {pid} open 00:00:\d\d, xmin age \d+, ", row_text), row_text
        assert row_text.rstrip("│ ").endswith("…"), row_text  # the query is what is cut
        screen = term.screen()
        assert max(len(line) for line in screen.splitlines()) <= 80, screen
        panel_top = next(ln for ln in screen.splitlines() if "postgres: " in ln)
        assert len(panel_top.rstrip()) == 80, screen  # the full width: no workers panel beside it
        holder.close()
        wait_until(
            lambda: any(
                "oldest_transaction" in ln and ln.strip("│ ").split()[1:] == ["none"]
                for ln in term.screen().splitlines()
            ),
            timeout=15,
            what="the row cleared once the session ended",
        )
    except AssertionError:
        if term is not None:
            print(term.screen())  # what the terminal showed when the wait gave up
        raise
    finally:
        holder.close()
        if term is not None:
            term.close()
        conn.execute(f'ALTER DATABASE "{dbname}" RESET skiplock.long_transaction_warn')
