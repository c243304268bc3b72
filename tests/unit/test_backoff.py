"""Retry policies: the delay before the next attempt."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

import skiplock
from skiplock import backoff


def seconds(policy, attempts):
    return [policy(a).total_seconds() for a in attempts]


def test_fixed_and_linear():
    assert seconds(backoff.fixed(5), [1, 2, 10]) == [5, 5, 5]
    assert seconds(backoff.fixed(timedelta(minutes=1)), [3]) == [60]
    assert seconds(backoff.linear(10, cap=25), [1, 2, 3, 4]) == [10, 20, 25, 25]


def test_exponential_without_jitter_doubles_up_to_the_cap_and_never_overflows():
    policy = backoff.exponential(1, cap=60, jitter=False)
    assert seconds(policy, [1, 2, 3, 4, 7, 8, 10_000]) == [1, 2, 4, 8, 60, 60, 60]
    assert seconds(backoff.exponential(0.5, factor=3, cap=100, jitter=False), [1, 2, 3]) == [0.5, 1.5, 4.5]


def test_exponential_jitter_stays_between_half_and_all_of_the_delay():
    policy = backoff.exponential(2, cap=3600, rng=random.Random(7))
    for attempt in range(1, 12):
        full = min(3600, 2 * 2 ** (attempt - 1))
        assert full / 2 <= policy(attempt).total_seconds() <= full
    assert len({policy(5) for _ in range(20)}) > 1  # actually random


@pytest.mark.parametrize(
    "make",
    [lambda: backoff.fixed(-1), lambda: backoff.linear(1, cap=-5), lambda: backoff.exponential(factor=0.5)],
)
def test_nonsense_is_refused(make):
    with pytest.raises(skiplock.ConfigError):
        make()
