"""Per-job enqueue options: a retry policy stored on the job, and a dedupe window after completion."""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb

from waiting import wait_until

T0 = "2030-01-01 00:00:00+00"


def claim_one(conn: psycopg.Connection, at: str) -> tuple[int, object]:
    return conn.execute(
        "SELECT id, lease_token FROM skiplock.claim('{q}', gen_random_uuid(), 1, as_of => %s::timestamptz)",
        [at],
    ).fetchone()


def complete(conn: psycopg.Connection, job_id: int, token: object, at: str) -> None:
    conn.execute(
        "SELECT skiplock.complete(ARRAY[%s::bigint], ARRAY[%s::uuid], as_of => %s::timestamptz)",
        [job_id, token, at],
    )


# --- retry policies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "seconds"),
    [
        ({"kind": "fixed", "delay": 7}, [7, 7, 7, 7]),
        ({"kind": "linear", "step": 5, "cap": 12}, [5, 10, 12, 12]),
        ({"kind": "exponential", "base": 2, "cap": 10, "jitter": False}, [2, 4, 8, 10]),
        ({"kind": "exponential", "factor": 3, "jitter": False}, [1, 3, 9, 27]),
    ],
)
def test_retry_delay_follows_the_policy(conn, policy, seconds):
    got = conn.execute(
        "SELECT extract(epoch FROM skiplock.retry_delay(%s, a))::float8 FROM generate_series(1, 4) AS a",
        [Jsonb(policy)],
    ).fetchall()
    assert [r[0] for r in got] == seconds


def test_exponential_jitter_stays_between_half_and_all_of_the_delay(conn):
    lo, hi, distinct = conn.execute(
        "SELECT min(d), max(d), count(DISTINCT d) FROM ("
        ' SELECT extract(epoch FROM skiplock.retry_delay(\'{"kind": "exponential", "base": 8}\', 3)) AS d'
        " FROM generate_series(1, 200)) AS x"
    ).fetchone()
    assert 16 <= lo < hi <= 32
    assert distinct > 100


def test_a_policy_stored_on_the_job_decides_when_fail_retries_it(conn):
    """Pass: fail() without retry_in schedules the retry by the job's policy; an explicit
    retry_in still wins; a job without a policy gets skiplock.backoff()."""
    conn.execute(
        "SELECT skiplock.enqueue('q', 't', retry_policy => '{\"kind\": \"linear\", \"step\": 60}', as_of => %s)",
        [T0],
    )
    job_id, token = claim_one(conn, T0)
    assert conn.execute(
        "SELECT skiplock.fail(%s, %s, 'boom', as_of => %s)", [job_id, token, T0]
    ).fetchone() == ("retryable",)
    assert conn.execute("SELECT run_at - %s::timestamptz FROM skiplock.job", [T0]).fetchone() == (
        timedelta(seconds=60),
    )
    later = "2030-01-01 00:01:00+00"
    job_id, token = claim_one(conn, later)
    conn.execute("SELECT skiplock.fail(%s, %s, 'boom', as_of => %s)", [job_id, token, later])
    assert conn.execute("SELECT run_at - %s::timestamptz FROM skiplock.job", [later]).fetchone() == (
        timedelta(seconds=120),  # attempt 2: 2 x step
    )
    job_id, token = claim_one(conn, "2030-01-01 00:03:00+00")
    conn.execute(
        "SELECT skiplock.fail(%s, %s, 'boom', retry_in => '5 seconds', as_of => '2030-01-01 00:03:00+00')",
        [job_id, token],
    )
    assert (
        conn.execute("SELECT run_at FROM skiplock.job").fetchone()[0].isoformat()
        == "2030-01-01T00:03:05+00:00"
    )


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ('"fixed"', "retry_policy must be a JSON object, got string"),
        ('{"kind": "random"}', 'retry_policy kind must be fixed, linear or exponential, got "random"'),
        ('{"kind": "fixed"}', "retry_policy of kind fixed needs a delay"),
        ('{"kind": "linear", "cap": 3}', "retry_policy of kind linear needs a step"),
        ('{"kind": "fixed", "delay": -1}', "retry_policy delay must be between 0 and 31536000 seconds"),
        ('{"kind": "fixed", "delay": "5"}', "retry_policy delay must be a number, got string"),
        ('{"kind": "fixed", "delay": 5, "cap": 9}', 'retry_policy of kind fixed has no field "cap"'),
        ('{"kind": "exponential", "factor": 1000}', "retry_policy factor must be between 1 and 100"),
        ('{"kind": "exponential", "jitter": 1}', "retry_policy jitter must be true or false"),
    ],
)
def test_bad_policies_are_rejected_and_nothing_is_written(conn, policy, message):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        conn.execute("SELECT skiplock.enqueue('q', 't', retry_policy => %s::jsonb)", [policy])
    with pytest.raises(
        psycopg.errors.InvalidParameterValue, match=message.replace("(", r"\(") + r".*\(batch position 2\)"
    ):
        conn.execute(
            "SELECT skiplock.enqueue_many('{q}', '{t,t}', retry_policies => ARRAY[NULL, %s::jsonb])", [policy]
        )
    assert conn.execute("SELECT count(*) FROM skiplock.job").fetchone() == (0,)


def test_enqueue_many_stores_a_policy_per_job_or_one_for_all(conn):
    conn.execute(
        "SELECT skiplock.enqueue_many('{q}', '{a,b}',"
        ' retry_policies => ARRAY[\'{"kind": "fixed", "delay": 1}\'::jsonb, NULL])'
    )
    conn.execute(
        "SELECT skiplock.enqueue_many('{q}', '{c,d}', retry_policies => ARRAY['{\"kind\": \"fixed\", \"delay\": 2}'::jsonb])"
    )
    rows = conn.execute("SELECT task, retry_policy ->> 'delay' FROM skiplock.job ORDER BY task").fetchall()
    assert rows == [("a", "1"), ("b", None), ("c", "2"), ("d", "2")]


# --- dedupe window -----------------------------------------------------------------------------


def enqueue(conn: psycopg.Connection, at: str, window: str | None = "1 hour") -> tuple[int, str]:
    return conn.execute(
        "SELECT id, state FROM skiplock.enqueue('q', 't', dedupe_key => 'daily-report',"
        " dedupe_window => %s::interval, as_of => %s::timestamptz)",
        [window, at],
    ).fetchone()


def test_a_dedupe_window_keeps_the_key_taken_after_completion(conn):
    """Pass: within the window the completed job comes back and nothing is inserted; after it, or
    without a window, a new job is enqueued; a failed job does not hold the key."""
    first, state = enqueue(conn, T0)
    assert state == "available"
    job_id, token = claim_one(conn, T0)
    complete(conn, job_id, token, "2030-01-01 00:00:10+00")
    assert enqueue(conn, "2030-01-01 00:30:00+00") == (first, "completed")
    assert enqueue(conn, "2030-01-01 01:00:10+00", window="1 hour") == (first, "completed")  # the boundary
    assert conn.execute("SELECT count(*) FROM skiplock.job").fetchone() == (0,)
    second, state = enqueue(conn, "2030-01-01 01:00:11+00")
    assert (second != first, state) == (True, "available")
    # A failed job does not hold the key for the window: the work was not done.
    job_id, token = claim_one(conn, "2030-01-01 01:00:11+00")
    conn.execute(
        "SELECT skiplock.fail(%s, %s, 'no', retryable => false, as_of => '2030-01-01 01:00:12+00')",
        [job_id, token],
    )
    third, state = enqueue(conn, "2030-01-01 01:00:13+00")
    assert third not in (first, second)
    assert state == "available"


def test_enqueue_many_honours_windows_per_job(conn):
    conn.execute("SELECT skiplock.enqueue_many('{q}', '{t}', dedupe_keys => '{a,b}', as_of => %s)", [T0])
    for job_id, token in conn.execute(
        "SELECT id, lease_token FROM skiplock.claim('{q}', gen_random_uuid(), 10, as_of => %s)", [T0]
    ).fetchall():
        complete(conn, job_id, token, T0)
    done = dict(conn.execute("SELECT dedupe_key, id FROM skiplock.job_history").fetchall())
    got = [
        r[0]
        for r in conn.execute(
            "SELECT * FROM skiplock.enqueue_many('{q}', '{t}', dedupe_keys => '{a,b,c,a}',"
            " dedupe_windows => ARRAY['1 day', NULL, '1 day', '1 day']::interval[],"
            " as_of => '2030-01-01 01:00:00+00')"
        )
    ]
    live = dict(conn.execute("SELECT dedupe_key, id FROM skiplock.job").fetchall())
    assert got == [done["a"], live["b"], live["c"], done["a"]]
    assert set(live) == {"b", "c"}


def test_bad_windows_are_rejected(conn):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="dedupe_window needs a dedupe_key"):
        conn.execute("SELECT skiplock.enqueue('q', 't', dedupe_window => '1 hour')")
    with pytest.raises(
        psycopg.errors.InvalidParameterValue,
        match=r"dedupe_window must not be negative.*\(batch position 2\)",
    ):
        conn.execute(
            "SELECT skiplock.enqueue_many('{q}', '{t,t}', dedupe_keys => '{a,b}',"
            " dedupe_windows => ARRAY[NULL, '-1 hour']::interval[])"
        )
    assert conn.execute("SELECT count(*) FROM skiplock.job").fetchone() == (0,)


@pytest.mark.parametrize("batch", [False, True])
def test_a_producer_racing_the_holders_completion_inserts_nothing(dsn, conn, batch):
    """Pass: a producer whose insert waits on the live holder of its key, while that holder
    completes, gets the completed job back (within the window) and leaves no new job behind."""
    holder = conn.execute("SELECT id FROM skiplock.enqueue('q', 't', dedupe_key => 'k')").fetchone()[0]
    finisher = psycopg.connect(dsn)
    job_id, token = claim_one(finisher, "now")
    finisher.commit()
    # The finisher completes the holder but keeps its transaction open...
    finisher.execute("SELECT skiplock.complete(ARRAY[%s::bigint], ARRAY[%s::uuid])", [job_id, token])
    result: list[object] = []

    def produce() -> None:
        with psycopg.connect(dsn, autocommit=True) as c:
            if batch:
                sql = (
                    "SELECT * FROM skiplock.enqueue_many('{q}', '{t}', dedupe_keys => '{k}',"
                    " dedupe_windows => '{1 hour}')"
                )
            else:
                sql = (
                    "SELECT id FROM skiplock.enqueue('q', 't', dedupe_key => 'k', dedupe_window => '1 hour')"
                )
            result.append(c.execute(sql).fetchone()[0])

    producer = threading.Thread(target=produce)
    producer.start()
    # ...until the producer's insert is blocked on the holder's row.
    waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%dedupe_window%'"
    wait_until(
        lambda: conn.execute(waiting).fetchone()[0] == 1, timeout=10, what="the producer waits on the key"
    )
    finisher.commit()
    finisher.close()
    producer.join(30)
    assert result == [holder]
    assert conn.execute("SELECT count(*) FROM skiplock.job").fetchone() == (0,)


def test_a_rejected_job_is_named_by_its_batch_position_and_intervals_read_as_given(conn):
    # A single job has no position; a batch names the position, never a job id (none exists yet).
    with pytest.raises(psycopg.errors.InvalidParameterValue) as single:
        conn.execute("SELECT skiplock.enqueue('q', 't', delay => %s)", [timedelta(seconds=-5)])
    assert single.value.diag.message_primary == "skiplock: delay must not be negative, got -00:00:05"
    with pytest.raises(psycopg.errors.InvalidParameterValue) as batch:
        conn.execute(
            "SELECT skiplock.enqueue_many('{q}', '{t,t,t}', delays => %s::interval[])",
            [[None, None, timedelta(seconds=-5)]],
        )
    assert batch.value.diag.message_primary == (
        "skiplock: delay must not be negative, got -00:00:05 (batch position 3)"
    )
    assert conn.execute("SELECT count(*) FROM skiplock.job").fetchone() == (0,)
