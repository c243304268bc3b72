"""``@skiplock.cron``: declare a schedule next to its task; workers store it and fire it.

    @skiplock.cron("*/5 * * * *", tz="Europe/Paris")
    @skiplock.task(queue="reports")
    def refresh_report() -> None: ...

Every worker that runs the task writes the schedule to ``skiplock.schedule`` at start-up, and
every worker's scheduler fires the ticks that are due; the database makes sure each tick is
enqueued exactly once, whichever worker gets there first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from skiplock._core import cron as _cron
from skiplock.errors import ConfigError
from skiplock.models import Json
from skiplock.task import Task

__all__ = ["CRON_REGISTRY", "CronSpec", "cron"]

T = TypeVar("T", bound=Task[Any])


@dataclass(frozen=True, slots=True)
class CronSpec:
    """A schedule declared in code."""

    name: str
    cron: str
    tz: str
    task: str
    queue: str
    args: dict[str, Json] = field(default_factory=dict)
    catch_up: timedelta = timedelta(hours=1)


#: Schedules declared with @skiplock.cron, by schedule name.
CRON_REGISTRY: dict[str, CronSpec] = {}


def cron(
    expr: str,
    *,
    tz: str = "UTC",
    name: str | None = None,
    args: dict[str, Json] | None = None,
    catch_up: timedelta = timedelta(hours=1),
) -> Callable[[T], T]:
    """Run the decorated task at every tick of ``expr``.

    Args:
        expr: 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first.
        tz: the IANA time zone the expression is read in (daylight saving time included).
        name: the schedule's name (default: the task's name); one task may have several.
        args: keyword arguments for every run.
        catch_up: ticks missed while no worker ran are made up if they are at most this old.

    Raises:
        ConfigError: a bad expression or time zone, or not stacked on a @skiplock.task.
    """
    _cron.check(expr, tz)
    if catch_up < timedelta(0) or catch_up > timedelta(days=31):
        raise ConfigError(f"catch_up must be between 0 and 31 days, got {catch_up}")

    def register(task: T) -> T:
        if not isinstance(task, Task):
            raise ConfigError("put @skiplock.cron above @skiplock.task (it schedules a task)")
        spec = CronSpec(
            name=name or task.name,
            cron=" ".join(expr.split()),
            tz=tz,
            task=task.name,
            queue=task.queue,
            args=dict(args or {}),
            catch_up=catch_up,
        )
        task.bind_args(spec.args)  # the args must fit the task's signature
        existing = CRON_REGISTRY.get(spec.name)
        if existing is not None and existing != spec:
            raise ConfigError(f"two schedules are named {spec.name!r}")
        CRON_REGISTRY[spec.name] = spec
        return task

    return register
