"""Prometheus metrics (``skiplock[metrics]``): the queue as the database sees it, and a worker's own.

:class:`QueueCollector` reads the same views as ``skiplock monitor`` at each scrape (short
autocommit reads, no snapshot held), so any one process can export the whole fleet's queues:
``skiplock metrics --port 9187``. :class:`WorkerCollector` exports one worker's counters from
memory: ``skiplock worker --metrics-port 9188``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from skiplock._core.text import ESCAPE_ARGS
from skiplock.errors import ConfigError, SkiplockError

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from skiplock.client import Client

__all__ = ["QueueCollector", "WorkerCollector", "serve"]

log = logging.getLogger("skiplock.metrics")
log.addFilter(ESCAPE_ARGS)  # job errors and names are logged escaped, on one line
_HEALTH_LEVEL = {"ok": 0, "warn": 1, "critical": 2}


def _prometheus() -> Any:
    try:
        import prometheus_client
        import prometheus_client.core  # the metric families custom collectors yield
    except ImportError:  # pragma: no cover - depends on the install
        raise ConfigError("metrics need prometheus-client: pip install 'skiplock[metrics]'") from None
    return prometheus_client


class QueueCollector:
    """Queue, worker and PostgreSQL health gauges, read from the database at each scrape."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def collect(self) -> Iterator[Any]:
        core = _prometheus().core
        up = core.GaugeMetricFamily("skiplock_up", "1 if the last scrape could read the skiplock views")
        try:
            stats = self.client.queue_stats()
            activity = self.client.queue_activity()
            workers = self.client.workers()
            health = self.client.health()
        except SkiplockError as exc:
            log.warning("metrics scrape failed: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        jobs = core.GaugeMetricFamily(
            "skiplock_jobs",
            "Jobs per queue and state (live states: all; completed/cancelled: last minute; failed: retained)",
            labels=["queue", "state"],
        )
        oldest = core.GaugeMetricFamily(
            "skiplock_oldest_job_age_seconds", "How long the oldest ready job has waited", labels=["queue"]
        )
        paused = core.GaugeMetricFamily(
            "skiplock_queue_paused", "1 while the queue is paused", labels=["queue"]
        )
        seen_paused: dict[str, bool] = {}
        for s in stats:
            jobs.add_metric([s.queue, s.state.value], s.jobs)
            if s.state.value == "available" and s.oldest_age is not None:
                oldest.add_metric([s.queue], s.oldest_age.total_seconds())
            seen_paused[s.queue] = seen_paused.get(s.queue, False) or s.paused
        for queue, is_paused in seen_paused.items():
            paused.add_metric([queue], int(is_paused))
        yield from (jobs, oldest, paused)

        rates = core.GaugeMetricFamily(
            "skiplock_jobs_per_second", "Jobs per second over the last minute", labels=["queue", "event"]
        )
        pickup = core.GaugeMetricFamily(
            "skiplock_pickup_latency_seconds",
            "Due to started, first attempts started in the last minute",
            labels=["queue", "quantile"],
        )
        for a in activity:
            for event, value in (("enqueued", a.enqueued_per_second), ("started", a.started_per_second),
                                 ("completed", a.completed_per_second), ("failed", a.failed_per_second)):  # fmt: skip
                rates.add_metric([a.queue, event], value)
            for quantile, latency in (("0.5", a.pickup_p50), ("0.95", a.pickup_p95), ("0.99", a.pickup_p99)):
                if latency is not None:
                    pickup.add_metric([a.queue, quantile], latency.total_seconds())
        yield from (rates, pickup)

        fleet = core.GaugeMetricFamily("skiplock_workers", "Registered workers", labels=["stale"])
        fleet.add_metric(["false"], sum(not w.stale for w in workers))
        fleet.add_metric(["true"], sum(w.stale for w in workers))
        held = core.GaugeMetricFamily(
            "skiplock_jobs_held", "Jobs held by registered workers", labels=["host"]
        )
        per_host: dict[str, int] = {}
        for w in workers:
            per_host[w.host] = per_host.get(w.host, 0) + w.running
        for host, n in per_host.items():
            held.add_metric([host], n)
        yield from (fleet, held)

        checks = core.GaugeMetricFamily(
            "skiplock_health", "PostgreSQL health checks: 0 ok, 1 warn, 2 critical", labels=["check"]
        )
        for h in health:
            checks.add_metric([h.name], _HEALTH_LEVEL.get(h.status, 2))
        yield checks


class WorkerCollector:
    """One worker's counters from memory: no database read at scrape time."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker  # an AsyncWorker (duck-typed: metrics sits below the worker layer)

    def collect(self) -> Iterator[Any]:
        core = _prometheus().core
        stats = self.worker.stats
        jobs = core.CounterMetricFamily(
            "skiplock_worker_jobs",
            "Jobs this worker process claimed or finished, by outcome",
            labels=["outcome"],
        )
        for outcome in ("claimed", "completed", "retried", "failed", "released", "lost"):
            jobs.add_metric([outcome], getattr(stats, outcome))
        held = core.GaugeMetricFamily(
            "skiplock_worker_held", "Jobs this worker holds now (running or prefetched)"
        )
        held.add_metric([], len(getattr(self.worker, "_held", {})))
        yield from (jobs, held)


def serve(collector: QueueCollector | WorkerCollector, port: int, addr: str = "0.0.0.0") -> CollectorRegistry:
    """Serve ``collector`` on ``http://addr:port/metrics`` from a daemon thread; return its registry."""
    prometheus = _prometheus()
    registry: CollectorRegistry = prometheus.CollectorRegistry(auto_describe=False)
    registry.register(collector)
    prometheus.start_http_server(port, addr=addr, registry=registry)
    log.info("metrics on http://%s:%s/metrics", addr, port)
    return registry
