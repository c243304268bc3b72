"""`skiplock monitor` in a real terminal (tmux) with a real worker draining jobs beside it."""

from __future__ import annotations

import os
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
