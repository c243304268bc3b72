"""Retry delays computed in Python (task policies). The SQL default is skiplock.backoff()."""

from __future__ import annotations

import random
from datetime import timedelta

__all__ = ["exponential_backoff"]


def exponential_backoff(
    attempt: int,
    *,
    base: timedelta = timedelta(seconds=1),
    cap: timedelta = timedelta(hours=1),
    jitter: float = 0.25,
    rng: random.Random | None = None,
) -> timedelta:
    """Return ``base * 2**attempt`` capped at ``cap``, scaled by a random factor in 1±jitter."""
    raw = min(cap.total_seconds(), base.total_seconds() * 2 ** min(attempt, 40))
    factor = (rng or random).uniform(1 - jitter, 1 + jitter)
    return timedelta(seconds=raw * factor)
