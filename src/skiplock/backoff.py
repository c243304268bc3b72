"""Retry delays for ``@skiplock.task(retry_backoff=...)``: fixed, linear and exponential.

Each function returns a policy: a callable from the attempt that just failed (1 for the first)
to the delay before the next one. Without a policy, the database's own ``skiplock.backoff()``
applies (exponential with jitter, capped at an hour)::

    @skiplock.task(max_attempts=8, retry_backoff=skiplock.backoff.exponential(2, cap=600))
    def sync_account(account_id: int) -> None: ...

``raise skiplock.Retry(after=...)`` inside a task overrides the policy for that attempt.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import timedelta

from skiplock.errors import ConfigError

__all__ = ["RetryPolicy", "exponential", "fixed", "linear"]

#: The attempt that failed (1-based) -> how long to wait before the next one.
RetryPolicy = Callable[[int], timedelta]


def _seconds(name: str, value: timedelta | float) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not 0 <= seconds <= 365 * 86400:
        raise ConfigError(f"{name} must be between 0 seconds and a year, got {value!r}")
    return seconds


def fixed(delay: timedelta | float) -> RetryPolicy:
    """The same delay (seconds or a timedelta) before every retry."""
    seconds = _seconds("delay", delay)
    return lambda attempt: timedelta(seconds=seconds)


def linear(step: timedelta | float, *, cap: timedelta | float | None = None) -> RetryPolicy:
    """``step``, ``2 x step``, ``3 x step``… after attempts 1, 2, 3…, at most ``cap``."""
    s = _seconds("step", step)
    limit = None if cap is None else _seconds("cap", cap)

    def policy(attempt: int) -> timedelta:
        delay = s * max(1, attempt)
        return timedelta(seconds=delay if limit is None else min(delay, limit))

    return policy


def exponential(
    base: timedelta | float = 1.0,
    *,
    factor: float = 2.0,
    cap: timedelta | float = 3600.0,
    jitter: bool = True,
    rng: random.Random | None = None,
) -> RetryPolicy:
    """``base x factor ** (attempt - 1)``, at most ``cap``; with ``jitter``, a uniformly random
    delay between half of that and all of it, so jobs that failed together do not retry together."""
    b, limit = _seconds("base", base), _seconds("cap", cap)
    if not 1.0 <= factor <= 100.0:
        raise ConfigError(f"factor must be between 1 and 100, got {factor!r}")
    draw = (rng or random.Random()).uniform

    def policy(attempt: int) -> timedelta:
        exponent = max(0, attempt - 1)
        # Compare in the log domain: factor ** exponent overflows long before attempts run out.
        if b == 0 or math.log(b) + exponent * math.log(factor) <= math.log(max(limit, 1e-9)):
            delay = min(limit, b * factor**exponent)
        else:
            delay = limit
        return timedelta(seconds=draw(delay / 2, delay) if jitter else delay)

    return policy
