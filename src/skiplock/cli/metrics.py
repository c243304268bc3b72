"""`skiplock metrics`: serve the queue's Prometheus metrics."""

from __future__ import annotations

import contextlib
import threading
from typing import Annotated

import typer

from skiplock.cli._common import DsnOption, console, dsn_of, handle_errors
from skiplock.client import Client
from skiplock.metrics import QueueCollector, serve


@handle_errors
def metrics(
    dsn: DsnOption = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve /metrics on.")] = 9187,
    addr: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
) -> None:
    """Serve Prometheus metrics of every queue, the workers and PostgreSQL health (skiplock[metrics]).

    Each scrape reads the skiplock views once; run one per database, not one per worker.
    """
    with Client(dsn_of(dsn), min_size=1, max_size=2) as client:
        serve(QueueCollector(client), port, addr)
        console.print(f"serving metrics on http://{addr}:{port}/metrics (Ctrl-C stops)")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()  # the HTTP server thread serves until the process ends
