"""Prometheus metrics: the queue collector on a real database, and real `skiplock metrics` and
`skiplock worker --metrics-port` processes scraped over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import skiplock
from skiplock.metrics import QueueCollector
from waiting import wait_until


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return samples(response.read().decode())


def test_queue_collector_exports_counts_health_and_workers(client, conn):
    client.enqueue_many([skiplock.JobSpec(task="send", queue="emails") for _ in range(7)])
    client.pause_queue("emails")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(client))
    got = samples(generate_latest(registry).decode())
    assert got[("skiplock_up", ())] == 1
    assert got[("skiplock_jobs", (("queue", "emails"), ("state", "available")))] == 7
    assert got[("skiplock_queue_paused", (("queue", "emails"),))] == 1
    assert got[("skiplock_health", (("check", "notify_queue"),))] == 0
    assert got[("skiplock_workers", (("stale", "false"),))] == 0


def test_the_metrics_command_serves_over_http(dsn, client):
    client.enqueue("send", {}, queue="emails")
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "skiplock",
            "metrics",
            "--port",
            str(port),
            "--addr",
            "127.0.0.1",
            "--dsn",
            dsn,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def served() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            try:
                return scrape(port)
            except OSError:
                return {}

        got = wait_until(served, timeout=30, what="/metrics answering")
        assert got[("skiplock_jobs", (("queue", "emails"), ("state", "available")))] == 1
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


def test_a_worker_exports_its_own_counters(dsn, client, tmp_path: Path):
    (tmp_path / "metrictasks.py").write_text(
        textwrap.dedent(
            """
            import skiplock

            @skiplock.task(queue="m")
            def ok(i: int) -> int:
                return i
            """
        )
    )
    client.enqueue_many([skiplock.JobSpec(task="ok", args={"i": i}, queue="m") for i in range(25)])
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "skiplock", "worker", "metrictasks", "--metrics-port", str(port)],
        cwd=tmp_path,
        env={**os.environ, "SKIPLOCK_DSN": dsn},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def completed() -> bool:
            try:
                return scrape(port).get(("skiplock_worker_jobs_total", (("outcome", "completed"),))) == 25
            except OSError:
                return False

        wait_until(completed, timeout=30, what="25 completions counted")
        assert scrape(port)[("skiplock_worker_held", ())] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
