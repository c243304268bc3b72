"""How many jobs to claim, and how long to wait before polling again."""

from __future__ import annotations

import random
from collections.abc import Iterable

__all__ = ["batch_cap", "claim_size", "poll_delay_s", "rate_poll_s", "refill_threshold"]


def claim_size(*, concurrency: int, in_flight: int, prefetch: int, max_batch: int) -> int:
    """Return how many jobs to claim now.

    A worker keeps at most ``concurrency + prefetch`` jobs leased: enough to start the next job
    the moment one finishes, few enough that a crash strands little work (a dead worker's jobs wait out their leases).
    """
    room = concurrency + prefetch - in_flight
    return max(0, min(room, max_batch))


def refill_threshold(*, concurrency: int, prefetch: int) -> int:
    """Return how many free slots make a claim worth a round trip.

    Claiming at the first free slot would turn a busy worker into one round trip per job. The
    prefetch buffer keeps the running slots busy meanwhile, so wait until it is half empty (or,
    without prefetch, for one free slot: nothing else keeps the slots busy).
    """
    if prefetch <= 0:
        return 1
    return max(1, min(prefetch, (concurrency + prefetch) // 2))


def batch_cap(*, concurrency: int, prefetch: int, max_batch: int) -> int:
    """Return the most jobs one claim takes.

    A claim that filled the whole room would leave none for the next one until the runners had
    worked through half of it, and a busy event loop serves the producer late: the next claim
    would start only once the slots ran dry, and the worker would wait on every round trip. A
    claim of at most the room minus the refill threshold leaves enough room to send the next
    claim as soon as this one returns, so one claim is in flight while the last one's jobs run.
    Without prefetch a claim fills every free slot: nothing would run while a second one waited.
    """
    if prefetch <= 0:
        return max(1, min(max_batch, concurrency))
    refill = refill_threshold(concurrency=concurrency, prefetch=prefetch)
    return max(1, min(max_batch, max(refill, concurrency + prefetch - refill)))


def rate_poll_s(limits: Iterable[tuple[float, int]], poll_interval_s: float) -> float | None:
    """How soon to claim again after a short claim on rate-limited queues, or None if none are.

    A claim on a rate-limited queue takes at most the whole tokens in its bucket, so a short
    claim does not mean the queue is drained. Coming back in the time it takes to refill half the
    bucket keeps a single worker from letting the bucket overflow (tokens lost) without spinning:
    at most one claim per worker per half-bucket.
    """
    delays = [burst / rate / 2 for rate, burst in limits if rate > 0]
    return max(0.01, min([*delays, poll_interval_s])) if delays else None


def poll_delay_s(poll_interval_s: float, *, jitter: float = 0.1, rng: random.Random | None = None) -> float:
    """Return the next poll delay: the floor interval with ±jitter so workers do not poll in step."""
    r = (rng or random).uniform(1 - jitter, 1 + jitter)
    return max(0.0, poll_interval_s * r)
