"""``skiplock monitor``: the queues, the workers, recent failures and the PostgreSQL under them.

A :class:`Monitor` takes :class:`Snapshot`\\ s through a client (short autocommit reads of the
``skiplock`` views, no snapshot held between them), keeps a short history of rates per queue, and
renders one screen with rich. Every value that comes from the database is shown with its control
characters escaped: a job error holding terminal escape codes cannot repaint the screen.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from skiplock._core.text import printable
from skiplock.client import Client
from skiplock.models import Failure, HealthCheck, JobState, QueueActivity, QueueStat, TaskStat, WorkerInfo

__all__ = ["Monitor", "QueueRow", "Snapshot", "describe_limits", "sparkline"]

_BLOCKS = "▁▂▃▄▅▆▇█"
_STATUS_STYLE = {"ok": "green", "warn": "yellow", "critical": "bold red"}
_ORDER = collections.defaultdict(lambda: 3, {"ok": 0, "warn": 1, "critical": 2})
_LIVE = (JobState.SCHEDULED, JobState.AVAILABLE, JobState.RUNNING, JobState.RETRYABLE)


def sparkline(values: Sequence[float], width: int = 20) -> str:
    """The last ``width`` values as block characters scaled to their maximum (blank when all zero)."""
    tail = list(values)[-width:]
    top = max(tail, default=0.0)
    if top <= 0:
        return "▁" * len(tail)
    return "".join(_BLOCKS[min(len(_BLOCKS) - 1, int(v / top * (len(_BLOCKS) - 1) + 0.5))] for v in tail)


def _cell(value: object, limit: int = 80) -> str:
    """A one-line table cell of database data: control characters escaped, markup escaped, cut."""
    text = printable(value, newlines=False)
    return escape(text if len(text) <= limit else text[: limit - 1] + "…")


def _duration(value: timedelta | None) -> str:
    if value is None:
        return "-"
    seconds = value.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueRow:
    """One queue on the screen: its counts, rates and latency."""

    queue: str
    counts: dict[str, int]  # live states, and failed (the dead-letter set)
    enqueued_per_second: float  # since the previous snapshot (live growth plus finished)
    completed_per_second: float  # since the previous snapshot
    failed_per_second: float
    pickup_p50: timedelta | None
    pickup_p95: timedelta | None
    pickup_p99: timedelta | None
    oldest_age: timedelta | None  # how long the oldest due job has waited
    paused: bool
    limits: str  # "max 5, 20/s, …" or ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """Everything one refresh of the monitor read."""

    database: dict[str, Any]
    interval_s: float
    queues: list[QueueRow]
    workers: list[WorkerInfo]
    failures: list[Failure]
    tasks: list[TaskStat]
    health: list[HealthCheck]

    def to_json(self) -> str:
        """The snapshot as JSON: durations in seconds, times in ISO 8601."""

        def default(value: object) -> object:
            if isinstance(value, timedelta):
                return value.total_seconds()
            if isinstance(value, datetime):
                return value.isoformat()
            return str(value)

        return json.dumps(dataclasses.asdict(self), default=default, indent=2, sort_keys=True)


@dataclass
class Monitor:
    """Takes snapshots and keeps what the screen needs between them (previous counts, rate history)."""

    client: Client
    queue: str | None = None
    history: int = 40
    #: Seconds between reads of the views that average minutes (pickup latency, task stats): they
    #: scan more, and change slowly.
    slow_every: float = 5.0
    _previous: dict[str, int] = field(default_factory=dict)  # live jobs per queue at the last snapshot
    _taken_at: float | None = None
    _rates: dict[str, collections.deque[float]] = field(default_factory=dict)
    _tasks: list[TaskStat] = field(default_factory=list)
    _tasks_at: float | None = None
    _activity: dict[str, QueueActivity] = field(default_factory=dict)
    _activity_at: float | None = None

    def snapshot(self) -> Snapshot:
        """Read the views once (each a short autocommit statement) and derive rates."""
        now = time.monotonic()
        interval = 1.0 if self._taken_at is None else max(0.001, now - self._taken_at)
        stats = self.client.queue_stats()
        # queue_activity averages a minute and scans the live table: every few seconds is plenty.
        if self._activity_at is None or now - self._activity_at >= self.slow_every:
            self._activity, self._activity_at = {a.queue: a for a in self.client.queue_activity()}, now
        activity = self._activity
        finished = self.client.finished_since(interval)
        workers = self.client.workers()
        failures = self.client.recent_failures(limit=10)
        health = self.client.health()
        # task_stats reads five minutes of history: less often still.
        if self._tasks_at is None or now - self._tasks_at >= 2 * self.slow_every:
            self._tasks, self._tasks_at = self.client.task_stats(), now
        tasks = self._tasks
        if self.queue is not None:
            stats = [s for s in stats if s.queue == self.queue]
            workers = [w for w in workers if self.queue in w.queues]
            failures = [f for f in failures if f.queue == self.queue]
            tasks = [t for t in tasks if t.queue == self.queue]
        rows = self._queue_rows(stats, activity, finished, interval, first=self._taken_at is None)
        self._taken_at = now
        return Snapshot(
            database=self.client.database_info(),
            interval_s=round(interval, 3),
            queues=rows,
            workers=workers,
            failures=failures,
            tasks=tasks,
            health=health,
        )

    def rates(self, queue: str) -> list[float]:
        """The completion rates of ``queue`` over the last snapshots, oldest first."""
        return list(self._rates.get(queue, ()))

    def _queue_rows(
        self,
        stats: Iterable[QueueStat],
        activity: dict[str, QueueActivity],
        finished: dict[tuple[str, JobState], int],
        interval: float,
        *,
        first: bool,
    ) -> list[QueueRow]:
        by_queue: dict[str, list[QueueStat]] = collections.defaultdict(list)
        for s in stats:
            by_queue[s.queue].append(s)
        rows = []
        for name in sorted(by_queue):
            queue_stats = by_queue[name]
            counts = {
                s.state.value: s.jobs
                for s in queue_stats
                if s.state in (*_LIVE, JobState.WAITING, JobState.FAILED)
            }
            live = sum(counts.get(st.value, 0) for st in _LIVE)
            done = sum(n for (q, st), n in finished.items() if q == name)
            completed = finished.get((name, JobState.COMPLETED), 0) / interval
            failed = finished.get((name, JobState.FAILED), 0) / interval
            a = activity.get(name)
            if first:  # nothing to compare with yet: the last minute's averages
                enqueued = a.enqueued_per_second if a else 0.0
                completed = a.completed_per_second if a else 0.0
            else:
                enqueued = max(0.0, (live - self._previous.get(name, live) + done) / interval)
            self._previous[name] = live
            self._rates.setdefault(name, collections.deque(maxlen=self.history)).append(completed)
            available = next((s for s in queue_stats if s.state is JobState.AVAILABLE), None)
            first_stat = queue_stats[0]
            rows.append(
                QueueRow(
                    queue=name,
                    counts=counts,
                    enqueued_per_second=round(enqueued, 2),
                    completed_per_second=round(completed, 2),
                    failed_per_second=round(failed, 2),
                    pickup_p50=a.pickup_p50 if a else None,
                    pickup_p95=a.pickup_p95 if a else None,
                    pickup_p99=a.pickup_p99 if a else None,
                    oldest_age=available.oldest_age if available else None,
                    paused=any(s.paused for s in queue_stats),
                    limits=_limits(first_stat),
                )
            )
        return rows

    def render(self, snap: Snapshot, width: int = 160) -> RenderableType:
        """One screen ``width`` columns wide: queues, workers, recent failures, task stats and
        PostgreSQL health. On a narrow screen the queues table drops its less vital columns."""
        db = snap.database
        title = (
            f"skiplock monitor · {_cell(db.get('database', '?'))} · PostgreSQL {_cell(db.get('server_version', '?'))}"
            f" · schema {_cell(db.get('schema_version', '?'))} · every {snap.interval_s:.1f}s · Ctrl-C quits"
        )
        middle: RenderableType
        if width >= 120:  # side by side; stacked on a narrow screen
            grid = Table.grid(expand=True, padding=(0, 1))
            grid.add_column(ratio=3)
            grid.add_column(ratio=2)
            grid.add_row(_workers_table(snap.workers), _health_table(snap.health))
            middle = grid
        else:
            middle = Group(_workers_table(snap.workers), _health_table(snap.health))
        return Group(
            Text.from_markup(f"[bold]{title}[/]"),
            self._queues_table(snap, width),
            middle,
            _failures_table(snap.failures),
            _tasks_table(snap.tasks),
        )

    def _queues_table(self, snap: Snapshot, width: int) -> Panel:
        rows = []
        for q in snap.queues:
            c = q.counts
            rows.append(
                [
                    _cell(q.queue, 30),
                    str(c.get("scheduled", 0)),
                    str(c.get("available", 0)),
                    str(c.get("running", 0)),
                    str(c.get("retryable", 0)),
                    str(c.get("failed", 0)),
                    f"{q.enqueued_per_second:g}",
                    f"{q.completed_per_second:g}",
                    sparkline(self.rates(q.queue)),
                    "/".join(_duration(d) for d in (q.pickup_p50, q.pickup_p95, q.pickup_p99)),
                    _duration(q.oldest_age),
                    ", ".join(
                        filter(
                            None,
                            [
                                "paused" if q.paused else "",
                                f"{c['waiting']} waiting for parents" if c.get("waiting") else "",
                                _cell(q.limits),
                            ],
                        )
                    ),
                ]
            )
        headers = ["queue", "sched", "ready", "run", "retry", "dead", "in/s", "done/s", "trend",
                   "pickup p50/95/99", "oldest", "notes"]  # fmt: skip
        widths = [max([len(h), *(len(r[k]) for r in rows)]) for k, h in enumerate(headers)]
        shown = list(range(len(headers)))
        # Numbers are never cut: drop whole columns, least vital first, until the rest fit.
        for drop in ("trend", "pickup p50/95/99", "in/s", "sched", "retry", "oldest"):
            if sum(widths[k] + 3 for k in shown) + 4 + 12 <= width:  # 12: room for the notes
                break
            shown.remove(headers.index(drop))
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, expand=True)
        for k in shown:
            if headers[k] == "notes":
                table.add_column("notes", ratio=1)
            else:
                table.add_column(
                    headers[k], justify="left" if k == 0 else "right", no_wrap=True, min_width=widths[k]
                )
        styles = {5: "red", 8: "cyan", 11: "yellow"}
        for r in rows:
            table.add_row(
                *[f"[{styles[k]}]{r[k]}[/]" if k in styles and r[k] not in ("", "0") else r[k] for k in shown]
            )
        if not rows:
            table.add_row("no jobs", *[""] * (len(shown) - 1))
        return Panel(table, title="queues", title_align="left", border_style="blue")


def describe_limits(
    concurrency: int | None,
    rate: float | None,
    key_arg: str | None = None,
    per_key: int | None = None,
    key_rate: float | None = None,
) -> str:
    """A queue's limits in a few words ("max 5, 20/s, max 2 per tenant"); plain text, unescaped."""
    parts = [f"max {concurrency}"] if concurrency is not None else []
    parts += [f"{rate:g}/s"] if rate is not None else []
    parts += [f"max {per_key} per {key_arg}"] if key_arg is not None and per_key is not None else []
    parts += [f"{key_rate:g}/s per {key_arg}"] if key_arg is not None and key_rate is not None else []
    return ", ".join(parts)


def _limits(stat: QueueStat) -> str:
    return describe_limits(
        stat.concurrency_limit, stat.rate_limit, stat.key_arg, stat.key_concurrency_limit, stat.key_rate_limit
    )


def _workers_table(workers: list[WorkerInfo]) -> Panel:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, expand=True)
    for name, justify in (("host", "left"), ("pid", "right"), ("queues", "left"), ("slots", "right"),
                          ("running", "right"), ("done", "right"), ("beat", "right"), ("", "left")):  # fmt: skip
        table.add_column(name, justify=justify, min_width=len(name), no_wrap=name != "queues")  # type: ignore[arg-type]
    for w in workers:
        table.add_row(
            _cell(w.host, 40),
            str(w.pid),
            _cell(",".join(w.queues), 40),
            str(w.concurrency),
            str(w.running),
            str(w.jobs_done),
            _duration(w.heartbeat_age),
            "[red]stale[/]" if w.stale else "",
        )
    if not workers:
        table.add_row("no workers registered", *[""] * 7)
    return Panel(table, title="workers", title_align="left", border_style="blue")


def _failures_table(failures: list[Failure]) -> Panel:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, expand=True)
    for name in ("job", "queue", "task", "attempt", "", "error"):
        table.add_column(name, no_wrap=True, overflow="ellipsis")
    for f in failures:
        table.add_row(
            str(f.id),
            _cell(f.queue, 30),
            _cell(f.task, 40),
            str(f.attempt or "-"),
            "[red]dead[/]" if f.final else "[yellow]retry[/]",
            _cell(f"{f.error_type or ''}: {f.error or ''}", 120),
        )
    if not failures:
        table.add_row("none in the last hour", *[""] * 5)
    return Panel(table, title="recent failures", title_align="left", border_style="blue")


def _tasks_table(tasks: list[TaskStat]) -> Panel:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, expand=True)
    for name, justify in (("queue", "left"), ("task", "left"), ("done", "right"), ("failed", "right"),
                          ("fail %", "right"), ("retries", "right"), ("run p50", "right"),
                          ("p95", "right"), ("p99", "right")):  # fmt: skip
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for t in sorted(tasks, key=lambda t: -(t.completed + t.failed))[:10]:
        rate = f"{t.failure_rate * 100:.1f}"
        table.add_row(
            _cell(t.queue, 30),
            _cell(t.task, 40),
            str(t.completed),
            str(t.failed),
            f"[red]{rate}[/]" if t.failure_rate >= 0.1 else rate,
            str(t.retries),
            _duration(t.run_p50),
            _duration(t.run_p95),
            _duration(t.run_p99),
        )
    if not tasks:
        table.add_row("nothing finished in five minutes", *[""] * 8)
    return Panel(table, title="tasks, last 5 minutes", title_align="left", border_style="blue")


def _health_table(health: list[HealthCheck]) -> Panel:
    table = Table(box=None, pad_edge=False, show_header=False, expand=True)
    table.add_column("check", no_wrap=True, min_width=max((len(h.name) for h in health), default=5))
    table.add_column("value", no_wrap=True, overflow="ellipsis")
    for h in health:
        style = _STATUS_STYLE.get(h.status, "")
        table.add_row(f"[{style}]{_cell(h.name)}[/]", f"[{style}]{_cell(h.value, 100)}[/]")
    counts = collections.Counter(h.status for h in health)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=lambda c: _ORDER[c[0]]))
    worst = max(counts, key=lambda status: _ORDER[status], default="ok")
    border = {"critical": "red", "warn": "yellow"}.get(worst, "blue")
    return Panel(table, title=f"postgres: {summary or 'no checks'}", title_align="left", border_style=border)
