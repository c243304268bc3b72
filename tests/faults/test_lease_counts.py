"""The worker's `lost` counter (and the metric users alert on) counts exactly: every lease a frozen
worker lost once, each logged once; none for a job whose completion reply was lost on the way."""

from __future__ import annotations

import re
import selectors
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from invariants import check
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conftest import Fleet, enqueue, scalar
from waiting import wait_until


def stats_of(log: str, pid: int) -> dict[str, int]:
    """The counters a worker process logged when it stopped."""
    line = next(line for line in log.splitlines() if f" {pid} " in line and "stopped: WorkerStats(" in line)
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line.split("WorkerStats(", 1)[1])}


def test_a_frozen_worker_counts_every_lost_lease_once_and_logs_it_once(fleet: Fleet, ledger):
    """Pass: a worker holding 8 leases (4 running, 4 prefetched) is SIGSTOPped past its 2 s lease
    and another worker takes the 8 jobs over; once continued, whichever of its heartbeat and
    its outcomes finds out first, it counts exactly 8 lost and no completion, and logs each job
    as lost exactly once however many heartbeats pass; the 8 jobs complete once, on the other."""
    ids = enqueue(ledger, 8)
    frozen = fleet.start(CONCURRENCY=4, PREFETCH=4, LEASE=2, TASK_SECONDS=1.5)
    wait_until(
        lambda: (
            scalar(ledger, "SELECT count(*) FROM ledger") == 4
            and scalar(ledger, "SELECT count(*) FROM skiplock.job WHERE state = 'running'") == 8
        ),
        timeout=60,
        what="4 running and 4 prefetched",
    )
    frozen.send_signal(signal.SIGSTOP)
    other = fleet.start(CONCURRENCY=8, PREFETCH=0, LEASE=2, REAP_INTERVAL=0.5, TASK_SECONDS=4)
    wait_until(
        lambda: scalar(ledger, "SELECT count(*) FROM ledger WHERE attempt = 2") == 8,
        timeout=60,
        what="the other worker reaps all 8 leases and runs the jobs",
    )
    frozen.send_signal(signal.SIGCONT)

    def lost_lines() -> list[str]:
        return [
            line for line in fleet.logs().splitlines() if f" {frozen.pid} " in line and "lease lost" in line
        ]

    wait_until(
        lambda: all(any(re.search(rf"job {i}\b", line) for line in lost_lines()) for i in ids),
        timeout=30,
        what="the thawed worker finding all 8 leases lost",
    )
    wait_until(lambda: scalar(ledger, "SELECT count(*) FROM skiplock.job") == 0, timeout=60, what="drained")
    assert fleet.stop(frozen) == 0, fleet.logs()
    assert fleet.stop(other) == 0, fleet.logs()
    logs = fleet.logs()
    counts = stats_of(logs, frozen.pid)
    assert (counts["lost"], counts["completed"], counts["failed"], counts["retried"]) == (8, 0, 0, 0), logs
    for i in ids:  # once each, though several heartbeats ran while the 1.5 s tasks finished
        assert sum(bool(re.search(rf"job {i}\b", line)) for line in lost_lines()) == 1, (i, logs)
    assert stats_of(logs, other.pid)["completed"] == 8
    check(ledger, ids)


class ReplyDropper:
    """A TCP proxy in front of PostgreSQL that lets everything through, except that it drops
    the server's reply to the first ``skiplock.complete`` call: once the server has answered
    (the statement ran, and in autocommit it committed), the connection is cut instead."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.dropped = threading.Event()
        self._armed = threading.Lock()  # taken by the connection that drops its reply
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="reply-dropper", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            server = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, server)
        sel.register(server, selectors.EVENT_READ, client)
        dropping = False
        pending = b""
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.2):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = src.recv(65536)
                    if not data:
                        return
                    if src is client:
                        if (
                            b"skiplock.complete(" in data
                            and not self.dropped.is_set()
                            and self._armed.acquire(False)
                        ):
                            dropping = True
                        server.sendall(data)
                    elif dropping:
                        pending += data
                        # ReadyForQuery ('Z', length 5, status): the statement is over and committed.
                        if re.search(rb"Z\x00\x00\x00\x05[IET]$", pending):
                            self.dropped.set()
                            return
                    else:
                        client.sendall(data)
        except OSError:
            return
        finally:
            sel.close()
            client.close()
            server.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.listener.close()


@pytest.fixture
def dropper(dsn: str) -> Iterator[tuple[ReplyDropper, str]]:
    params: dict[str, Any] = conninfo_to_dict(dsn)
    proxy = ReplyDropper(params.get("host", "127.0.0.1"), int(params.get("port", 5432)))
    try:
        yield proxy, make_conninfo(dsn, host="127.0.0.1", port=str(proxy.port), sslmode="disable")
    finally:
        proxy.close()


def test_a_completion_whose_reply_was_lost_is_counted_completed_not_lost(fleet: Fleet, ledger, dropper):
    """Pass: the reply to a worker's first batched completion is dropped after the server
    committed it; the worker retries on a new connection and that complete finds nothing to do.
    The worker counts every job completed and none lost, logs no lost lease, and every job ran
    and completed once."""
    proxy, proxied = dropper
    ids = enqueue(ledger, 20)
    worker = fleet.start(dsn=proxied, CONCURRENCY=2, TASK_SECONDS=0.01)
    wait_until(proxy.dropped.is_set, timeout=60, what="the first completion's reply dropped")
    wait_until(lambda: scalar(ledger, "SELECT count(*) FROM skiplock.job") == 0, timeout=60, what="drained")
    assert fleet.stop(worker) == 0, fleet.logs()
    logs = fleet.logs()
    counts = stats_of(logs, worker.pid)
    assert (counts["completed"], counts["lost"]) == (20, 0), logs
    assert "lease lost" not in logs
    assert re.search(r"complete failed \(.*\); retrying", logs), logs  # the reply really was lost
    report = check(ledger, ids)
    assert (report.executions, report.reruns) == (20, 0)
