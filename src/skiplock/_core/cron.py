"""Cron arithmetic (croniter): validate expressions and list the ticks due in a window."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from skiplock.errors import ConfigError

__all__ = ["MAX_TICKS", "check", "due_ticks", "next_tick", "problem"]

#: At most this many ticks are handed to the database per schedule and round (a per-second
#: schedule's hour of catch-up is 3,600); later rounds take the rest.
MAX_TICKS = 1000


def _seconds_first(expr: str) -> bool:
    return len(expr.split()) == 6


_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
)
_SECOND = ("second", 0, 59)
_USAGE = "use 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first"


def _field_problem(expr: str) -> str | None:
    """What is wrong with the fields of ``expr`` (the checks of SQL's skiplock._cron_error), or None."""
    fields = expr.split()
    if len(fields) not in (5, 6):
        return f"invalid cron expression {expr!r}: it has {len(fields)} fields, not 5 or 6; {_USAGE}"
    rules = (_SECOND, *_FIELDS) if len(fields) == 6 else _FIELDS
    for field, (name, lo, hi) in zip(fields, rules, strict=True):
        for item in field.split(","):
            if not item:
                return f"{name} field {field!r} has an empty list item in {expr!r}"
            base, _, step = item.partition("/")
            if "/" in item and not (step.isascii() and step.isdigit() and int(step) >= 1):
                return f"{name} field {field!r} has step {step!r}; a step is a whole number of 1 or more, in {expr!r}"
            for number in re.findall(r"[0-9]+", base.partition("#")[0]):
                if not lo <= int(number) <= hi:
                    return f"{name} field {number} is out of range {lo}-{hi} in {expr!r}"
    return None


def check(expr: str, tz: str) -> None:
    """Raise ConfigError unless ``expr`` is a 5-field, or 6-field seconds-first, cron expression
    and ``tz`` an IANA time zone."""
    problem = _field_problem(expr)
    if problem is not None:
        raise ConfigError(problem)
    if not croniter.is_valid(expr, second_at_beginning=_seconds_first(expr)):
        raise ConfigError(f"invalid cron expression {expr!r}: {_USAGE}")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown time zone {tz!r}: use an IANA name such as UTC or Europe/Paris") from exc


def problem(expr: str, tz: str, at: datetime) -> str | None:
    """Why a stored schedule cannot fire after ``at`` (its expression or time zone is invalid,
    or its day never comes), or None.

    For schedules read from the database, which other clients may have written: the scheduler
    skips such a schedule and keeps firing the others.
    """
    try:
        check(expr, tz)
        _iter(expr, tz, at).get_next(datetime)  # "0 0 30 2 *" is well formed, and never comes
    except ConfigError as exc:
        return str(exc)
    except Exception as exc:  # croniter's own errors: CroniterBadDateError and the like
        return f"cron expression {expr!r} cannot be evaluated: {exc}"
    return None


def _iter(expr: str, tz: str, start: datetime) -> croniter:
    return croniter(expr, start.astimezone(ZoneInfo(tz)), second_at_beginning=_seconds_first(expr))


def due_ticks(expr: str, tz: str, after: datetime, until: datetime, limit: int = MAX_TICKS) -> list[datetime]:
    """The ticks of ``expr`` (in ``tz``) later than ``after`` and not later than ``until``, oldest
    first, at most ``limit`` of them. Both bounds are aware datetimes."""
    ticks: list[datetime] = []
    it = _iter(expr, tz, after)
    while len(ticks) < limit:
        tick: datetime = it.get_next(datetime)
        if tick > until:
            break
        ticks.append(tick)
    return ticks


def next_tick(expr: str, tz: str, after: datetime) -> datetime:
    """The first tick of ``expr`` later than ``after``."""
    tick: datetime = _iter(expr, tz, after).get_next(datetime)
    return tick
