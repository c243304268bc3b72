"""OpenTelemetry spans across enqueue and execution, when ``opentelemetry-api`` is installed.

The producer side opens a ``skiplock enqueue`` span (kind PRODUCER) and stores its W3C
``traceparent`` with the job (column ``trace_parent``, through the transaction's
``skiplock.traceparent`` setting); the worker opens a ``skiplock run`` span (kind CONSUMER) as its
child, so a job's execution shows in the trace of the request that enqueued it. Without the
package, or without a configured tracer provider, every function here is a cheap no-op.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["consumer_span", "enabled", "mark_failed", "producer_span"]

_trace: Any = None
_Propagator: Any = None
try:  # an optional extra: skiplock[otel]
    from opentelemetry import trace as _otel_trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _trace, _Propagator = _otel_trace, TraceContextTextMapPropagator
except ImportError:  # pragma: no cover - depends on the install
    pass

_TRACER_NAME = "skiplock"


def enabled() -> bool:
    """Whether spans go anywhere: the package is installed and a tracer provider configured."""
    if _trace is None:
        return False
    return type(_trace.get_tracer_provider()).__name__ not in ("ProxyTracerProvider", "NoOpTracerProvider")


def mark_failed(span: Any, error: str) -> None:
    """Record on ``span`` (from :func:`consumer_span`) that the attempt failed."""
    if span is not None:
        span.set_status(_trace.Status(_trace.StatusCode.ERROR, error[:1000]))


def _traceparent(span: Any) -> str | None:
    context = span.get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


@contextlib.contextmanager
def producer_span(task: str, queue: str, jobs: int = 1) -> Iterator[str | None]:
    """A span around an enqueue; yields the traceparent to store with the job(s), or None."""
    if not enabled():  # no provider: no span, no setting, nothing stored
        yield None
        return
    tracer = _trace.get_tracer(_TRACER_NAME)
    with tracer.start_as_current_span(
        f"skiplock enqueue {task}",
        kind=_trace.SpanKind.PRODUCER,
        attributes={
            "messaging.system": "skiplock",
            "messaging.destination.name": queue,
            "messaging.batch.message_count": jobs,
            "skiplock.task": task,
        },
    ) as span:
        yield _traceparent(span)


@contextlib.contextmanager
def consumer_span(task: str, queue: str, job_id: int, attempt: int, traceparent: str | None) -> Iterator[Any]:
    """A span around one execution of a job, child of the span that enqueued it (if traced);
    yields the span (None without OpenTelemetry)."""
    if _trace is None:
        yield None
        return
    parent = _Propagator().extract({"traceparent": traceparent}) if traceparent else None
    tracer = _trace.get_tracer(_TRACER_NAME)
    with tracer.start_as_current_span(
        f"skiplock run {task}",
        context=parent,
        kind=_trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "skiplock",
            "messaging.destination.name": queue,
            "messaging.message.id": str(job_id),
            "skiplock.task": task,
            "skiplock.attempt": attempt,
        },
    ) as span:
        yield span
