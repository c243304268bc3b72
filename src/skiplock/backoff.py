"""Retry delays: fixed, linear and exponential, per task or per call.

Each function returns a policy: callable from the attempt that just failed (1 for the first) to
the delay before the next one, and storable as data on a job (:meth:`Backoff.as_json`, the shape
``skiplock.retry_delay()`` reads in SQL). Without a policy, the database's own
``skiplock.backoff()`` applies (exponential with jitter, capped at an hour)::

    @skiplock.task(max_attempts=8, retry_backoff=skiplock.backoff.exponential(2, cap=600))
    def sync_account(account_id: int) -> None: ...

    sync_account.using(retry_backoff=skiplock.backoff.fixed(30)).enqueue(account_id=7)

A task's policy may be any callable ``(attempt) -> timedelta``; a per-call policy is stored with
the job, so it must be one of these three. ``raise skiplock.Retry(after=...)`` inside a task
overrides either for that attempt.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from skiplock.errors import ConfigError

__all__ = ["Backoff", "Exponential", "Fixed", "Linear", "RetryPolicy", "exponential", "fixed", "linear"]

#: The attempt that failed (1-based) -> how long to wait before the next one.
RetryPolicy = Callable[[int], timedelta]

_YEAR = 365 * 86400


def _seconds(name: str, value: timedelta | float) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not 0 <= seconds <= _YEAR:
        raise ConfigError(f"{name} must be between 0 seconds and a year, got {value!r}")
    return seconds


class Backoff:
    """A retry policy that can be stored on a job as JSON."""

    __slots__ = ()

    def __call__(self, attempt: int) -> timedelta:
        raise NotImplementedError

    def as_json(self) -> dict[str, Any]:
        """The policy as ``skiplock.retry_delay()`` reads it (seconds as numbers)."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Fixed(Backoff):
    delay: float

    def __call__(self, attempt: int) -> timedelta:
        return timedelta(seconds=self.delay)

    def as_json(self) -> dict[str, Any]:
        return {"kind": "fixed", "delay": self.delay}


@dataclass(frozen=True, slots=True)
class Linear(Backoff):
    step: float
    cap: float | None = None

    def __call__(self, attempt: int) -> timedelta:
        delay = self.step * max(1, attempt)
        return timedelta(seconds=delay if self.cap is None else min(delay, self.cap))

    def as_json(self) -> dict[str, Any]:
        return {"kind": "linear", "step": self.step} | ({} if self.cap is None else {"cap": self.cap})


@dataclass(frozen=True, slots=True)
class Exponential(Backoff):
    base: float = 1.0
    factor: float = 2.0
    cap: float = 3600.0
    jitter: bool = True
    rng: random.Random | None = field(default=None, compare=False, repr=False)

    def __call__(self, attempt: int) -> timedelta:
        exponent = max(0, attempt - 1)
        b, limit = self.base, self.cap
        # Compare in the log domain: factor ** exponent overflows long before attempts run out.
        if b == 0 or math.log(b) + exponent * math.log(self.factor) < math.log(max(limit, 1e-9)):
            delay = min(limit, b * self.factor**exponent)
        else:
            delay = limit
        if not self.jitter:
            return timedelta(seconds=delay)
        return timedelta(seconds=(self.rng or random).uniform(delay / 2, delay))

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": "exponential",
            "base": self.base,
            "factor": self.factor,
            "cap": self.cap,
            "jitter": self.jitter,
        }


def fixed(delay: timedelta | float) -> Fixed:
    """The same delay (seconds or a timedelta) before every retry."""
    return Fixed(_seconds("delay", delay))


def linear(step: timedelta | float, *, cap: timedelta | float | None = None) -> Linear:
    """``step``, ``2 x step``, ``3 x step``… after attempts 1, 2, 3…, at most ``cap``."""
    return Linear(_seconds("step", step), None if cap is None else _seconds("cap", cap))


def exponential(
    base: timedelta | float = 1.0,
    *,
    factor: float = 2.0,
    cap: timedelta | float = 3600.0,
    jitter: bool = True,
    rng: random.Random | None = None,
) -> Exponential:
    """``base x factor ** (attempt - 1)``, at most ``cap``; with ``jitter``, a uniformly random
    delay between half of that and all of it, so jobs that failed together do not retry together."""
    if not 1.0 <= factor <= 100.0:
        raise ConfigError(f"factor must be between 1 and 100, got {factor!r}")
    return Exponential(_seconds("base", base), float(factor), _seconds("cap", cap), jitter, rng)
