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
from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from skiplock._core.cron import problem as cron_problem
from skiplock._core.text import oneline
from skiplock.client import Client
from skiplock.models import (
    Failure,
    HealthCheck,
    JobState,
    QueueActivity,
    QueueStat,
    Schedule,
    TaskStat,
    WorkerInfo,
)

__all__ = ["Monitor", "QueueRow", "Snapshot", "describe_limits", "schedule_checks", "sparkline"]

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


#: Text cells are cut to this many characters before they are measured (an error may be long).
_LONGEST = 500


def _one(value: object) -> str:
    """Database data for one line of the screen: control, bidi and invisible characters escaped,
    newlines too. Cells are rich Text, never markup, so brackets in job data are just text."""
    return oneline(value)[:_LONGEST]


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
    _bad_schedules: list[HealthCheck] = field(default_factory=list)

    def snapshot(self) -> Snapshot:
        """Read the views once (each a short autocommit statement) and derive rates."""
        now = time.monotonic()
        interval = 1.0 if self._taken_at is None else max(0.001, now - self._taken_at)
        stats = self.client.queue_stats()
        # queue_activity averages a minute and scans the live table: every few seconds is plenty.
        if self._activity_at is None or now - self._activity_at >= self.slow_every:
            self._activity, self._activity_at = {a.queue: a for a in self.client.queue_activity()}, now
            self._bad_schedules = schedule_checks(self.client.schedules())
        activity = self._activity
        finished = self.client.finished_since(interval)
        workers = self.client.workers()
        failures = self.client.recent_failures(limit=10)
        health = self.client.health() + [
            c for c in self._bad_schedules if self.queue is None or f"(queue {self.queue})" in c.detail
        ]
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

    def render(self, snap: Snapshot, width: int = 160, height: int | None = None) -> RenderableType:
        """One screen ``width`` columns wide: queues, workers, PostgreSQL health, recent failures
        and task stats.

        Every line fits in ``width``: a table first drops its less vital columns, then cuts its
        text columns with an ellipsis; a number, a job id, an attempt or a state is never cut.
        With ``height``, the panels fit in that many lines too: the least vital lose rows first
        (their title says how many are shown), and a panel with no room left is named in the
        title line instead.
        """
        # Workers and postgres side by side when both fit; stacked on a narrow screen.
        left_w = _split(snap.workers, width) if snap.workers and snap.health else None
        side = left_w is not None
        counts = {
            "queues": len(snap.queues),
            "workers": len(snap.workers),
            "postgres": len(snap.health),
            "recent failures": len(snap.failures),
            "tasks": min(len(snap.tasks), _MAX_TASKS),
        }
        shown = _fit_height(counts, None if height is None else height - 1, side=side)
        health = snap.health
        if shown["postgres"] < len(health):  # cut: the worst checks first
            health = sorted(health, key=lambda h: -_ORDER[h.status])
        hidden = [name for name, n in shown.items() if n == 0]
        panels: list[RenderableType] = [_title(snap, width, hidden)]
        if shown["queues"]:
            panels.append(self._queues_table(snap, width, shown["queues"]))
        # A panel alone on its row (the other has no rows to show) takes the full width.
        if left_w is None or not (shown["workers"] and shown["postgres"]):
            left_w, right_w = width, width
        else:
            right_w = width - left_w - 1
        workers = _workers_table(snap.workers, left_w, shown["workers"]) if shown["workers"] else None
        checks = _health_table(health, right_w, shown["postgres"]) if shown["postgres"] else None
        if side and workers is not None and checks is not None:
            grid = Table.grid(padding=(0, 1))
            grid.add_column(width=left_w)
            grid.add_column(width=right_w)
            grid.add_row(workers, checks)
            panels.append(grid)
        else:
            panels += [p for p in (workers, checks) if p is not None]
        if shown["recent failures"]:
            panels.append(_failures_table(snap.failures, width, shown["recent failures"]))
        if shown["tasks"]:
            panels.append(_tasks_table(snap.tasks, width, shown["tasks"]))
        return Group(*panels)

    def _queues_table(self, snap: Snapshot, width: int, limit: int) -> Panel:
        queues = snap.queues[:limit]
        trends = [self.rates(q.queue) for q in queues]

        def count(state: str, style: str = "") -> list[Text]:
            return [Text(str(n := q.counts.get(state, 0)), style=style if n else "") for q in queues]

        notes = []
        for q in queues:
            waiting = q.counts.get("waiting")
            parts = [
                "paused" if q.paused else "",
                f"{waiting} waiting for parents" if waiting else "",
                q.limits,
            ]
            notes.append(Text(_one(", ".join(filter(None, parts))), style="yellow"))
        columns = [
            _Column("queue", [Text(_one(q.queue)) for q in queues], justify="left", shrink_to=8),
            _Column("sched", count("scheduled")),
            _Column("ready", count("available")),
            _Column("run", count("running")),
            _Column("retry", count("retryable", "yellow")),
            _Column("dead", count("failed", "red")),
            _Column("in/s", [Text(f"{q.enqueued_per_second:g}") for q in queues]),
            _Column("done/s", [Text(f"{q.completed_per_second:g}") for q in queues]),
            _Column("trend", [Text(sparkline(t), style="cyan") for t in trends], justify="left", shrink_to=6),
            _Column(
                "pickup p50/95/99",
                [
                    Text("/".join(_duration(d) for d in (q.pickup_p50, q.pickup_p95, q.pickup_p99)))
                    for q in queues
                ],
            ),
            _Column("oldest", [Text(_duration(q.oldest_age)) for q in queues]),
            _Column("notes", notes, justify="left", shrink_to=12, flex=True),
        ]
        # Give up width in this order: the trend narrows and long queue names are cut, then
        # whole columns go, least vital first; then the names and notes are cut further. The
        # counts are never cut.
        steps = [("shrink", "trend", 8), ("shrink", "queue", 16), ("drop", "pickup p50/95/99", 0),
                 ("drop", "trend", 0), ("drop", "in/s", 0), ("shrink", "queue", 8),
                 ("shrink", "notes", 6)]  # fmt: skip
        fitted = _fit(columns, width - _FRAME, steps)
        for column in fitted:
            if column.header == "trend":  # a narrower trend shows fewer, the latest, values
                column.cells = [Text(sparkline(t, column.width), style="cyan") for t in trends]
        placeholder = None if queues else "no jobs"
        return _panel(_table(fitted, placeholder), "queues", len(snap.queues), limit)


def _title(snap: Snapshot, width: int, hidden: list[str]) -> Text:
    """The title line; on a narrow screen the least useful parts go first."""
    db = snap.database
    parts = [
        ("", f"skiplock monitor · {_one(db.get('database', '?'))}"),
        ("yellow", f"no room for {', '.join(hidden)}" if hidden else ""),
        ("", f"PostgreSQL {_one(str(db.get('server_version', '?')).split(' ', 1)[0])}"),
        ("", f"schema {_one(db.get('schema_version', '?'))}"),
        ("", f"every {snap.interval_s:.1f}s"),
        ("", "Ctrl-C quits"),
    ]
    parts = [p for p in parts if p[1]]
    for drop in ("Ctrl-C quits", f"every {snap.interval_s:.1f}s"):
        if sum(len(p[1]) + 3 for p in parts) - 3 <= width:
            break
        parts = [p for p in parts if p[1] != drop]
    title = Text(style="bold", no_wrap=True, overflow="ellipsis")
    for k, (style, text) in enumerate(parts):
        title.append((" · " if k else "") + text, style=style)
    return title


#: The tasks table shows the busiest tasks only.
_MAX_TASKS = 10
#: Columns between two cells, and what a panel's border and padding take from the width.
_GAP = 2
_FRAME = 4


@dataclass(slots=True)
class _Column:
    """One column of a table, before and after fitting it to the screen."""

    header: str
    cells: list[Text]
    justify: str = "right"
    shrink_to: int | None = None  # may be cut (with an ellipsis) down to this width; else never
    flex: bool = False  # takes the width left over
    width: int = 0  # set by _fit

    @property
    def natural(self) -> int:
        return max([cell_len(self.header), *(c.cell_len for c in self.cells)])


def _fit(columns: list[_Column], room: int, steps: Sequence[tuple[str, str, int]]) -> list[_Column]:
    """Choose each column's width so the table fits in ``room``.

    The flex column counts at its ``shrink_to`` width (or less, if its text is shorter) and
    takes whatever is left in the end. ``steps`` are applied in order until the rest fits:
    ``("shrink", name, w)`` cuts a column to no less than ``w``, ``("drop", name, 0)`` removes it.
    """
    kept = list(columns)
    for c in kept:
        c.width = min(c.natural, c.shrink_to or c.natural) if c.flex else c.natural

    def excess() -> int:
        return sum(c.width for c in kept) + _GAP * (len(kept) - 1) - room

    for action, name, floor in steps:
        over = excess()
        if over <= 0:
            break
        column = next((c for c in kept if c.header == name), None)
        if column is None:
            continue
        if action == "drop":
            kept.remove(column)
        else:
            column.width = max(min(column.width, floor), column.width - over)
    flex = next((c for c in kept if c.flex), None)
    if flex is not None:
        flex.width = max(1, flex.width - excess())
    return kept


def _table(columns: list[_Column], placeholder: str | None = None) -> Table:
    """A rich table of fitted columns: every cell on one line, text cut with an ellipsis."""
    # The gap between cells: the box's blank separator and one column of left padding.
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 0, 0, _GAP - 1))
    for c in columns:
        table.add_column(c.header, justify=c.justify, width=c.width, no_wrap=True, overflow="ellipsis")  # type: ignore[arg-type]
    rows = max((len(c.cells) for c in columns), default=0)
    for r in range(rows):
        table.add_row(*[c.cells[r] if r < len(c.cells) else Text("") for c in columns])
    if placeholder is not None and not rows:
        table.add_row(Text(placeholder, no_wrap=True, overflow="ellipsis"), *[Text("")] * (len(columns) - 1))
    return table


def _panel(body: RenderableType, title: str, total: int, shown: int, border: str = "blue") -> Panel:
    if shown < total:
        title = f"{title} ({shown} of {total} shown)"
    return Panel(body, title=title, title_align="left", border_style=border)


def _fit_height(counts: dict[str, int], room: int | None, *, side: bool) -> dict[str, int]:
    """How many rows each panel shows so the screen fits in ``room`` lines (all when None):
    the least vital panels lose rows first, down to one, then go."""
    shown = dict(counts)
    if room is None:
        return shown

    def lines(rows: dict[str, int]) -> int:
        def panel(name: str, frame: int) -> int:  # a table's frame: borders, header and rule
            return 0 if rows[name] == 0 else frame + max(1, rows[name])

        workers, health = panel("workers", 4), panel("postgres", 2)
        middle = max(workers, health) if side and workers and health else workers + health
        return panel("queues", 4) + middle + panel("recent failures", 4) + panel("tasks", 4)

    def cut(name: str, floor: int) -> None:
        while lines(shown) > room and shown[name] > floor:
            before = lines(shown)
            shown[name] -= 1
            if lines(shown) == before:  # the other half of the middle row is the taller one
                shown[name] += 1
                return

    # Rows go first (down to three, then to one), from the least vital panel on; the postgres
    # panel shows its worst checks first, so its ok rows go early. Then whole panels go; the
    # queues lose rows last.
    for floor in (3, 1):
        for name in ("tasks", "postgres", "recent failures", "workers"):
            cut(name, floor)
    for name in ("tasks", "recent failures", "postgres", "workers"):
        if lines(shown) > room:
            shown[name] = 0
    cut("queues", 1)
    # What dropping a panel freed goes back to the others, the most vital first.
    for name in ("workers", "recent failures", "postgres", "tasks"):
        while 0 < shown[name] < counts[name]:
            shown[name] += 1
            if lines(shown) > room:
                shown[name] -= 1
                break
    return shown


def schedule_checks(schedules: Iterable[Schedule]) -> list[HealthCheck]:
    """A critical check for each stored schedule that cannot fire (workers skip it, and fire the
    others); none when all can."""
    checks = []
    for s in schedules:
        why = cron_problem(s.cron, s.tz, s.last_tick)
        if why is not None:
            checks.append(
                HealthCheck(
                    name=f"schedule {s.name}",
                    status="critical",
                    value=f"cannot fire: {why}",
                    detail=f"the schedule of task {s.task} (queue {s.queue}) is skipped by every worker",
                    fix=f"store it again with a valid expression (skiplock.upsert_schedule), or delete it:"
                    f" skiplock schedules delete {s.name}",
                )
            )
    return checks


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


#: The postgres panel's narrowest width beside the workers: its check names and the start of
#: a value, where a horizon holder's pid, transaction age and xmin age are (the query after them
#: is what gets cut). Narrower than this, the two panels are stacked instead.
_HEALTH_MIN = _FRAME + len("prepared_transactions") + _GAP + len("pid 123456 open 00:05:00, xmin age 1234567")


def _split(workers: list[WorkerInfo], width: int) -> int | None:
    """The workers panel's width beside the postgres panel (what it needs, from two fifths to
    three of the screen, leaving the postgres panel at least ``_HEALTH_MIN``), or None when the
    screen is too narrow for both side by side."""
    most = min(width * 3 // 5, width - 1 - _HEALTH_MIN)
    if width < 120 or most < _workers_width(workers, least=True):
        return None
    return max(min(width * 2 // 5, most), min(most, _workers_width(workers)))


def _workers_table(workers: list[WorkerInfo], width: int, limit: int) -> Panel:
    fitted = _fit(
        _workers_columns(workers[:limit]), width - _FRAME, [("shrink", "host", 12), ("shrink", "host", 8)]
    )
    placeholder = None if workers else "no workers registered"
    return _panel(_table(fitted, placeholder), "workers", len(workers), limit)


def _workers_width(workers: list[WorkerInfo], *, least: bool = False) -> int:
    """The width the workers panel needs to show everything (``least``: with its host and queue
    names cut as far as they may be)."""
    columns = _workers_columns(workers)
    widths = [min(c.natural, c.shrink_to) if least and c.shrink_to else c.natural for c in columns]
    return sum(widths) + _GAP * (len(columns) - 1) + _FRAME


def _workers_columns(shown: list[WorkerInfo]) -> list[_Column]:
    return [
        _Column("host", [Text(_one(w.host)) for w in shown], justify="left", shrink_to=8),
        _Column("pid", [Text(str(w.pid)) for w in shown]),
        _Column(
            "queues", [Text(_one(",".join(w.queues))) for w in shown], justify="left", shrink_to=12, flex=True
        ),
        _Column("slots", [Text(str(w.concurrency)) for w in shown]),
        # What the database knows: jobs leased to the worker, running or prefetched (claimed
        # ahead of a free slot). At most `slots` of them run at once.
        _Column("leased", [Text(str(w.running)) for w in shown]),
        _Column("done", [Text(str(w.jobs_done)) for w in shown]),
        _Column("beat", [Text(_duration(w.heartbeat_age)) for w in shown]),
        _Column("", [Text("stale", style="red") if w.stale else Text("") for w in shown], justify="left"),
    ]


def _failures_table(failures: list[Failure], width: int, limit: int) -> Panel:
    shown = failures[:limit]
    columns = [
        _Column("job", [Text(str(f.id)) for f in shown]),
        _Column("queue", [Text(_one(f.queue)) for f in shown], justify="left", shrink_to=6),
        _Column("task", [Text(_one(f.task)) for f in shown], justify="left", shrink_to=8),
        _Column("attempt", [Text(str(f.attempt or "-")) for f in shown]),
        _Column(
            "state",
            [Text("dead", style="red") if f.final else Text("retry", style="yellow") for f in shown],
            justify="left",
        ),
        _Column(
            "error",
            [Text(_one(f"{f.error_type or ''}: {f.error or ''}")) for f in shown],
            justify="left",
            shrink_to=40,
            flex=True,
        ),
    ]
    # The error takes what the key columns leave; the task and queue names are cut before it
    # gets narrower than a few words, and it gets narrower before they are cut to a stub.
    steps = [("shrink", "task", 24), ("shrink", "queue", 16), ("shrink", "error", 16),
             ("shrink", "task", 8), ("shrink", "queue", 6), ("shrink", "error", 8)]  # fmt: skip
    fitted = _fit(columns, width - _FRAME, steps)
    placeholder = None if failures else "none in the last hour"
    return _panel(_table(fitted, placeholder), "recent failures", len(failures), limit)


def _tasks_table(tasks: list[TaskStat], width: int, limit: int) -> Panel:
    busiest = sorted(tasks, key=lambda t: -(t.completed + t.failed))
    shown = busiest[:limit]
    columns = [
        _Column("queue", [Text(_one(t.queue)) for t in shown], justify="left", shrink_to=6),
        _Column("task", [Text(_one(t.task)) for t in shown], justify="left", shrink_to=40, flex=True),
        _Column("done", [Text(str(t.completed)) for t in shown]),
        _Column("failed", [Text(str(t.failed), style="red" if t.failed else "") for t in shown]),
        _Column(
            "fail %",
            [
                Text(f"{t.failure_rate * 100:.1f}", style="red" if t.failure_rate >= 0.1 else "")
                for t in shown
            ],
        ),
        _Column("retries", [Text(str(t.retries)) for t in shown]),
        _Column("run p50", [Text(_duration(t.run_p50)) for t in shown]),
        _Column("p95", [Text(_duration(t.run_p95)) for t in shown]),
        _Column("p99", [Text(_duration(t.run_p99)) for t in shown]),
    ]
    steps = [("shrink", "task", 12), ("drop", "p95", 0), ("drop", "retries", 0), ("shrink", "queue", 6),
             ("shrink", "task", 6)]  # fmt: skip
    fitted = _fit(columns, width - _FRAME, steps)
    placeholder = None if tasks else "nothing finished in five minutes"
    return _panel(_table(fitted, placeholder), "tasks, last 5 minutes", min(len(tasks), _MAX_TASKS), limit)


def _health_table(health: list[HealthCheck], width: int, limit: int) -> Panel:
    shown = health[:limit]
    styles = [_STATUS_STYLE.get(h.status, "") for h in shown]
    columns = [
        _Column(
            "check",
            [Text(_one(h.name), style=s) for h, s in zip(shown, styles, strict=True)],
            justify="left",
            shrink_to=10,
        ),
        _Column(
            "value",
            [Text(_one(h.value), style=s) for h, s in zip(shown, styles, strict=True)],
            justify="left",
            shrink_to=20,
            flex=True,
        ),
    ]
    fitted = _fit(columns, width - _FRAME, [("shrink", "check", 12), ("shrink", "value", 8)])
    table = Table(box=None, pad_edge=False, show_header=False, padding=(0, 0, 0, _GAP))
    for c in fitted:
        table.add_column(width=c.width, no_wrap=True, overflow="ellipsis")
    for r in range(len(shown)):
        table.add_row(*[c.cells[r] for c in fitted])
    counts = collections.Counter(h.status for h in health)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=lambda c: _ORDER[c[0]]))
    worst = max(counts, key=lambda status: _ORDER[status], default="ok")
    border = {"critical": "red", "warn": "yellow"}.get(worst, "blue")
    return _panel(table, f"postgres: {summary or 'no checks'}", len(health), limit, border)
