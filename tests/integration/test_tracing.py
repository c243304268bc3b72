"""OpenTelemetry: the enqueue's span is the parent of each execution's, across processes.

Runs in a subprocess: a tracer provider is process-global and must not leak into other tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys

    import psycopg
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    import skiplock

    dsn = sys.argv[1]

    @skiplock.task(queue="traced")
    def work(n: int) -> int:
        return n

    @skiplock.task(queue="traced", max_attempts=1)
    def boom() -> None:
        raise ValueError("no")

    with skiplock.Client(dsn) as client:
        with trace.get_tracer("app").start_as_current_span("request"):
            work.using(client=client).enqueue(n=1)
            work.using(client=client).enqueue_many([{"n": 2}, {"n": 3}])
            boom.using(client=client).enqueue()
            with psycopg.connect(dsn) as conn:  # inside the caller's own transaction
                work.using(client=client, conn=conn).enqueue(n=4)
                leftover = conn.execute("SELECT current_setting('skiplock.traceparent', true)").fetchone()[0]
    asyncio.run(skiplock.AsyncWorker([work, boom], dsn=dsn, burst=True, maintenance=False).run())
    spans = [
        {
            "name": s.name,
            "trace": f"{s.context.trace_id:032x}",
            "id": f"{s.context.span_id:016x}",
            "parent": None if s.parent is None else f"{s.parent.span_id:016x}",
            "kind": s.kind.name,
            "status": s.status.status_code.name,
        }
        for s in exporter.get_finished_spans()
    ]
    print(json.dumps({"spans": spans, "leftover": leftover}))
    """
)


def test_execution_spans_continue_the_trace_of_the_enqueue(dsn, conn, tmp_path: Path):
    (tmp_path / "traced.py").write_text(SCRIPT)
    ran = subprocess.run(
        [sys.executable, str(tmp_path / "traced.py"), dsn],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert ran.returncode == 0, ran.stderr
    out = json.loads(ran.stdout.strip().splitlines()[-1])
    spans = out["spans"]
    request = next(s for s in spans if s["name"] == "request")
    enqueues = {s["id"]: s for s in spans if s["name"].startswith("skiplock enqueue")}
    runs = [s for s in spans if s["name"].startswith("skiplock run")]
    assert len(enqueues) == 4  # one, a batch of two, boom, and the one in the caller's transaction
    assert {s["kind"] for s in enqueues.values()} == {"PRODUCER"}
    assert len(runs) == 5
    assert {s["trace"] for s in spans} == {request["trace"]}  # one trace, producer to worker
    assert all(s["parent"] == request["id"] for s in enqueues.values())
    assert all(r["parent"] in enqueues and r["kind"] == "CONSUMER" for r in runs)
    assert {r["status"] for r in runs if r["name"] == "skiplock run boom"} == {"ERROR"}
    assert out["leftover"] == ""  # the setting does not outlive our enqueue
    assert conn.execute("SELECT count(*) FROM skiplock.job").fetchone() == (0,)
