"""The worker's claim arithmetic: batch sizes, refill threshold, and polling on rate-limited queues."""

from __future__ import annotations

import pytest

from skiplock._core.claiming import batch_cap, claim_size, rate_poll_s, refill_threshold


def test_claim_size_fills_free_room_up_to_the_batch_cap():
    assert claim_size(concurrency=10, in_flight=4, prefetch=10, max_batch=1000) == 16
    assert claim_size(concurrency=500, in_flight=0, prefetch=600, max_batch=1000) == 1000
    assert claim_size(concurrency=2, in_flight=5, prefetch=0, max_batch=1000) == 0


def test_refill_threshold_waits_for_half_the_room_unless_there_is_no_prefetch():
    assert refill_threshold(concurrency=500, prefetch=500) == 500
    assert refill_threshold(concurrency=10, prefetch=4) == 4
    assert refill_threshold(concurrency=10, prefetch=0) == 1


def test_rate_poll_comes_back_in_half_a_bucket_of_the_tightest_queue():
    assert rate_poll_s([], 1.0) is None
    assert rate_poll_s([(50.0, 10)], 1.0) == pytest.approx(0.1)
    assert rate_poll_s([(50.0, 10), (1.0, 1)], 1.0) == pytest.approx(0.1)
    assert rate_poll_s([(0.1, 1)], 1.0) == pytest.approx(1.0)  # never slower than the poll floor
    assert rate_poll_s([(100000.0, 1)], 1.0) == pytest.approx(0.01)  # never a busy loop


def test_a_claim_leaves_room_for_the_next_one_to_start_while_its_jobs_run() -> None:
    # 1,000 leased at most, refill at 500: claims of 500, so the next is sent on return.
    assert batch_cap(concurrency=500, prefetch=500, max_batch=1000) == 500
    assert batch_cap(concurrency=10, prefetch=10, max_batch=1000) == 10
    # Without prefetch a claim still fills every free slot.
    assert batch_cap(concurrency=8, prefetch=0, max_batch=1000) == 8
    assert batch_cap(concurrency=1, prefetch=0, max_batch=1000) == 1
    assert batch_cap(concurrency=1000, prefetch=3000, max_batch=1000) == 1000
