"""Cron arithmetic (croniter): validate expressions and list the ticks due in a window."""

from __future__ import annotations

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


def check(expr: str, tz: str) -> None:
    """Raise ConfigError unless ``expr`` is a 5-field, or 6-field seconds-first, cron expression
    and ``tz`` an IANA time zone."""
    fields = expr.split()
    if len(fields) not in (5, 6) or not croniter.is_valid(expr, second_at_beginning=_seconds_first(expr)):
        raise ConfigError(
            f"invalid cron expression {expr!r}: use 5 fields (minute hour day-of-month month day-of-week) "
            "or 6 with seconds first"
        )
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
