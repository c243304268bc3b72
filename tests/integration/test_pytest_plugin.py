"""The pytest plugin users get with skiplock: run as a real pytest session (a subprocess) over a
user's test file, against the real server."""

from __future__ import annotations

import textwrap

import pytest
from psycopg.conninfo import make_conninfo

USER_TESTS = textwrap.dedent(
    """
    from datetime import timedelta

    import pytest

    import skiplock
    from skiplock.testing import abandon, assert_enqueued, drain, enqueued


    @skiplock.task(queue="emails", max_attempts=3, retry_backoff=lambda attempt: timedelta(minutes=10))
    def send(to: str) -> str:
        if to == "flaky@example.com" and skiplock.current_job().attempt == 1:
            raise RuntimeError("smtp down")
        return f"sent to {to}"


    @skiplock.task(queue="emails")
    async def digest(n: int) -> int:
        return n * 2


    def test_a_fresh_database_per_test(skiplock_client):
        assert skiplock_client.list_jobs() == []
        send.using(client=skiplock_client).enqueue(to="leftover@example.com")


    def test_enqueue_then_drain(skiplock_client):
        job = send.using(client=skiplock_client).enqueue(to="a@example.com")
        (found,) = assert_enqueued(skiplock_client, send, to="a@example.com")
        assert found.id == job.id
        with pytest.raises(AssertionError, match="found 0; its enqueued jobs:\\n  #.* emails available {'to': 'a@example.com'}"):
            assert_enqueued(skiplock_client, send, to="b@example.com")
        out = drain(skiplock_client, [send, digest])
        assert out.results == {job.id: "sent to a@example.com"}
        assert enqueued(skiplock_client, send) == []


    def test_async_tasks_and_workflows_drain_in_one_call(skiplock_client):
        ids = skiplock_client.enqueue_many(skiplock.chain(digest.spec(n=1), digest.spec(n=2), digest.spec(n=3)))
        out = drain(skiplock_client, [digest])
        assert out.completed == ids
        assert [out.results[i] for i in ids] == [2, 4, 6]


    def test_retries_wait_for_the_clock(skiplock_client, skiplock_clock):
        job = send.using(client=skiplock_client).enqueue(to="flaky@example.com")
        assert drain(skiplock_client, [send], clock=skiplock_clock).retried == [job.id]
        assert drain(skiplock_client, [send], clock=skiplock_clock).ran == 0  # due in 10 minutes
        skiplock_clock.advance(minutes=9, seconds=59)
        assert drain(skiplock_client, [send], clock=skiplock_clock).ran == 0
        skiplock_clock.advance(seconds=1)
        assert drain(skiplock_client, [send], clock=skiplock_clock).completed == [job.id]
        assert skiplock_client.get_job(job.id).attempt == 2


    def test_delays_and_cron(skiplock_client, skiplock_clock):
        later = send.using(client=skiplock_client, delay=timedelta(hours=1)).enqueue(to="later@example.com")
        skiplock_client.schedule("hourly-digest", "0 * * * *", "digest", queue="emails", args={"n": 5})
        skiplock_clock.advance(hours=1)
        out = drain(skiplock_client, [send, digest], clock=skiplock_clock)
        assert later.id in out.completed
        assert sorted(out.results.values(), key=str) == [10, "sent to later@example.com"]


    def test_lease_expiry(skiplock_client, skiplock_clock):
        job = send.using(client=skiplock_client).enqueue(to="c@example.com")
        assert abandon(skiplock_client, clock=skiplock_clock, queues=["emails"], lease=timedelta(seconds=30)) == [job.id]
        assert drain(skiplock_client, [send], clock=skiplock_clock).ran == 0  # still leased
        skiplock_clock.advance(seconds=31)
        assert drain(skiplock_client, [send], clock=skiplock_clock).completed == [job.id]
        assert skiplock_client.get_job(job.id).errors[-1]["type"] == "LeaseExpired"
    """
)


def test_the_plugin_gives_users_a_database_a_clock_and_drain(pytester: pytest.Pytester, dsn: str):
    """Pass: a user's test file using only the plugin's fixtures and skiplock.testing runs green in
    a real pytest subprocess: fresh database per test, assert_enqueued (and its failure message),
    drain of sync, async and workflow jobs, retries, delays, cron ticks and lease expiry driven by
    the clock with no sleep."""
    pytester.makepyfile(test_user=USER_TESTS)
    server = make_conninfo(dsn, dbname="postgres")
    result = pytester.runpytest_subprocess("--skiplock-dsn", server, "-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=6)
