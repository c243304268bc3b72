"""skiplock.set_queue_limits and their enforcement in skiplock.claim (database clock via as_of)."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

T0 = "2030-01-01 00:00:00+00"


def claim(conn: psycopg.Connection, n: int = 100, queue: str = "q", at: str | None = None) -> int:
    if at is None:
        return conn.execute(
            "SELECT count(*) FROM skiplock.claim(%s, gen_random_uuid(), %s)", [[queue], n]
        ).fetchone()[0]
    sql = "SELECT count(*) FROM skiplock.claim(%s, gen_random_uuid(), %s, as_of => %s::timestamptz)"
    return conn.execute(sql, [[queue], n, at]).fetchone()[0]


def enqueue(conn: psycopg.Connection, n: int, queue: str = "q") -> None:
    conn.execute(
        "SELECT count(*) FROM skiplock.enqueue_many(%s, array_fill('t'::text, ARRAY[%s]))", [[queue], n]
    )


def test_concurrency_limit_caps_running_jobs_and_frees_a_slot_per_finished_job(conn):
    enqueue(conn, 10)
    conn.execute("SELECT skiplock.set_queue_limits('q', concurrency => 3)")
    assert claim(conn) == 3
    assert claim(conn) == 0
    job_id, token = conn.execute(
        "SELECT id, lease_token FROM skiplock.job WHERE state = 'running' LIMIT 1"
    ).fetchone()
    conn.execute("SELECT skiplock.complete(ARRAY[%s::bigint], ARRAY[%s::uuid])", [job_id, token])
    assert claim(conn) == 1
    # other queues are not limited by it
    enqueue(conn, 5, queue="other")
    assert claim(conn, queue="other") == 5


def test_rate_limit_is_a_token_bucket_on_the_database_clock(conn):
    enqueue(conn, 100)
    conn.execute("SELECT skiplock.set_queue_limits('q', rate => 10, burst => 4, as_of => %s)", [T0])
    assert claim(conn, at=T0) == 4  # a full bucket
    assert claim(conn, at=T0) == 0
    assert claim(conn, at="2030-01-01 00:00:00.25+00") == 2  # 2.5 tokens refilled, 2 whole
    assert claim(conn, at="2030-01-01 00:00:00.30+00") == 1  # 0.5 + 0.5
    assert claim(conn, at="2030-01-01 00:01:00+00") == 4  # refills up to the burst, no more
    assert claim(conn, at="2030-01-01 00:00:59+00") == 0  # a clock behind the last claim adds nothing


def test_both_limits_apply_together_and_an_empty_call_removes_them(conn):
    enqueue(conn, 10)
    row = conn.execute(
        "SELECT concurrency_limit, rate_limit, rate_burst FROM skiplock.set_queue_limits('q', 2, 100)"
    ).fetchone()
    assert row == (2, 100.0, 100)  # burst defaults to one second's worth
    assert claim(conn) == 2
    conn.execute("SELECT skiplock.set_queue_limits('q')")
    assert claim(conn) == 8
    stats = conn.execute(
        "SELECT DISTINCT concurrency_limit, rate_limit FROM skiplock.queue_stats WHERE queue = 'q'"
    )
    assert stats.fetchall() == [(None, None)]


def test_limits_show_in_queue_stats_and_survive_pause_and_resume(conn):
    enqueue(conn, 1)
    conn.execute("SELECT skiplock.set_queue_limits('q', concurrency => 5, rate => 1.5)")
    conn.execute("SELECT skiplock.pause_queue('q')")
    assert claim(conn) == 0
    conn.execute("SELECT skiplock.resume_queue('q')")
    assert conn.execute(
        "SELECT DISTINCT concurrency_limit, rate_limit, paused FROM skiplock.queue_stats"
    ).fetchall() == [(5, 1.5, False)]
    assert claim(conn) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("concurrency => 0", "concurrency limit must be between 1 and 1000000, got 0"),
        ("rate => 0", "rate limit must be more than 0"),
        ("rate => 'NaN'", "rate limit must be more than 0"),
        ("rate => 5, burst => 0", "burst must be between 1 and 1000000, got 0"),
        ("burst => 3", "burst needs a rate limit"),
    ],
)
def test_bad_limits_are_rejected_and_change_nothing(conn, args, message):
    conn.execute("SELECT skiplock.set_queue_limits('q', concurrency => 7)")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        conn.execute(f"SELECT skiplock.set_queue_limits('q', {args})")
    assert conn.execute("SELECT concurrency_limit, rate_limit FROM skiplock.queue").fetchall() == [(7, None)]


def test_bad_queue_name_is_rejected(conn):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="invalid queue name"):
        conn.execute("SELECT skiplock.set_queue_limits('no spaces', concurrency => 1)")
    assert conn.execute("SELECT count(*) FROM skiplock.queue").fetchone() == (0,)


def test_concurrent_claimers_never_exceed_the_concurrency_limit(dsn, conn):
    """Eight claimers racing on one limited queue: the running count never passes the limit."""
    enqueue(conn, 400)
    conn.execute("SELECT skiplock.set_queue_limits('q', concurrency => 5)")
    peak = 0
    lock = threading.Lock()
    errors: list[BaseException] = []

    def claimer() -> None:
        nonlocal peak
        try:
            with psycopg.connect(dsn, autocommit=True) as c:
                worker = uuid.uuid4()
                while True:
                    rows = c.execute(
                        "SELECT id, lease_token FROM skiplock.claim('{q}', %s, 3)", [worker]
                    ).fetchall()
                    running = c.execute(
                        "SELECT count(*) FROM skiplock.job WHERE state = 'running'"
                    ).fetchone()[0]
                    with lock:
                        peak = max(peak, running)
                    if rows:
                        c.execute(
                            "SELECT skiplock.complete(%s::bigint[], %s::uuid[])",
                            [[r[0] for r in rows], [r[1] for r in rows]],
                        )
                    elif c.execute("SELECT count(*) FROM skiplock.job").fetchone()[0] == 0:
                        return
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=claimer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert conn.execute("SELECT count(*) FROM skiplock.job_history WHERE state = 'completed'").fetchone() == (
        400,
    )
    assert 1 <= peak <= 5


def test_per_key_limit_caps_running_jobs_per_argument_value(conn):
    """Pass: with at most 2 running per tenant, a flood from one tenant does not starve the others,
    and jobs without the argument are not limited by key."""
    args = [{"tenant": "big"}] * 6 + [{"tenant": "small"}] * 3 + [{}] * 2
    conn.execute(
        "SELECT count(*) FROM skiplock.enqueue_many('{q}', '{t}', %s::jsonb[])",
        [[psycopg.types.json.Jsonb(a) for a in args]],
    )
    row = conn.execute(
        "SELECT key_arg, key_concurrency_limit FROM skiplock.set_queue_limits('q', key_arg => 'tenant', per_key => 2)"
    )
    assert row.fetchone() == ("tenant", 2)
    assert claim(conn, 100) == 2 + 2 + 2  # big: 2, small: 2, no tenant: both
    assert claim(conn, 100) == 0
    running = dict(
        conn.execute(
            "SELECT coalesce(args ->> 'tenant', '-'), count(*) FROM skiplock.job WHERE state = 'running' GROUP BY 1"
        ).fetchall()
    )
    assert running == {"big": 2, "small": 2, "-": 2}
    job_id, token = conn.execute(
        "SELECT id, lease_token FROM skiplock.job WHERE state = 'running' AND args ->> 'tenant' = 'small' LIMIT 1"
    ).fetchone()
    conn.execute("SELECT skiplock.complete(ARRAY[%s::bigint], ARRAY[%s::uuid])", [job_id, token])
    got = conn.execute(
        "SELECT args ->> 'tenant' FROM skiplock.claim('{q}', gen_random_uuid(), 100)"
    ).fetchall()
    assert got == [("small",)]  # the freed slot goes to its own tenant only


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("key_arg => 'tenant'", "key_arg needs a limit per key"),
        ("per_key => 2", "per_key and key_rate need key_arg"),
        ("key_rate => 2", "per_key and key_rate need key_arg"),
        ("key_arg => 'tenant', per_key => 0", "per_key must be between 1 and 1000000"),
        ("key_arg => 'a b', per_key => 1", "key_arg must be an argument name"),
        ("key_arg => 't', key_rate => 0", "key_rate must be more than 0"),
        ("key_arg => 't', key_rate => 'Infinity'", "key_rate must be more than 0"),
        ("key_arg => 't', key_rate => 'NaN'", "key_rate must be more than 0"),
        ("key_arg => 't', per_key => 1, key_burst => 3", "key_burst needs key_rate"),
        ("key_arg => 't', key_rate => 1, key_burst => 0", "key_burst must be between 1 and 1000000"),
    ],
)
def test_bad_per_key_limits_are_rejected(conn, args, message):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        conn.execute(f"SELECT skiplock.set_queue_limits('q', {args})")
    assert conn.execute("SELECT count(*) FROM skiplock.queue").fetchone() == (0,)


def enqueue_args(conn: psycopg.Connection, args: list[dict[str, object]]) -> None:
    conn.execute(
        "SELECT count(*) FROM skiplock.enqueue_many('{q}', '{t}', %s::jsonb[])",
        [[psycopg.types.json.Jsonb(a) for a in args]],
    )


def claimed_per_tenant(conn: psycopg.Connection, at: str) -> dict[str, int]:
    rows = conn.execute(
        "SELECT coalesce(args ->> 'tenant', '-'), count(*)"
        " FROM skiplock.claim('{q}', gen_random_uuid(), 1000, as_of => %s::timestamptz) GROUP BY 1",
        [at],
    ).fetchall()
    return dict(rows)


def test_key_rate_is_a_token_bucket_per_key_on_the_database_clock(conn):
    """Pass: each tenant has its own bucket of 3 refilling at 2/s; one tenant's flood spends
    only its own tokens, and jobs without the argument are not limited by key."""
    enqueue_args(conn, [{"tenant": "big"}] * 50 + [{"tenant": "small"}] * 5 + [{}] * 2)
    row = conn.execute(
        "SELECT key_arg, key_rate_limit, key_rate_burst, key_concurrency_limit"
        " FROM skiplock.set_queue_limits('q', key_arg => 'tenant', key_rate => 2, key_burst => 3, as_of => %s)",
        [T0],
    ).fetchone()
    assert row == ("tenant", 2.0, 3, None)
    assert claimed_per_tenant(conn, T0) == {"big": 3, "small": 3, "-": 2}  # full buckets
    assert claimed_per_tenant(conn, T0) == {}
    assert claimed_per_tenant(conn, "2030-01-01 00:00:00.75+00") == {"big": 1, "small": 1}  # 1.5 refilled
    assert claimed_per_tenant(conn, "2030-01-01 00:00:01.00+00") == {"big": 1, "small": 1}  # 0.5 + 0.5
    assert claimed_per_tenant(conn, "2030-01-01 00:01:00+00") == {"big": 3}  # refills to the burst only
    assert claimed_per_tenant(conn, "2030-01-01 00:00:30+00") == {}  # a clock behind adds nothing
    stats = conn.execute(
        "SELECT DISTINCT key_arg, key_rate_limit FROM skiplock.queue_stats WHERE queue = 'q'"
    )
    assert stats.fetchall() == [("tenant", 2.0)]


def test_key_rate_and_per_key_concurrency_apply_together(conn):
    enqueue_args(conn, [{"tenant": "a"}] * 20)
    conn.execute(
        "SELECT skiplock.set_queue_limits('q', key_arg => 'tenant', per_key => 2, key_rate => 100, as_of => %s)",
        [T0],
    )
    assert claimed_per_tenant(conn, T0) == {"a": 2}  # the bucket holds 100, two may run
    conn.execute(
        "SELECT skiplock.set_queue_limits('q', key_arg => 'tenant', key_rate => 1, as_of => %s)", [T0]
    )
    assert claimed_per_tenant(conn, T0) == {"a": 1}  # a new limit refills every key's bucket once
    assert claimed_per_tenant(conn, T0) == {}


def test_key_rate_limits_a_long_key_under_a_digest(conn):
    """A hostile 10 kB argument value is still limited (under a digest), and claiming keeps working."""
    big = "x" * 10_000
    enqueue_args(conn, [{"tenant": big}] * 3 + [{"tenant": 7}] * 3)
    conn.execute(
        "SELECT skiplock.set_queue_limits('q', key_arg => 'tenant', key_rate => 1, as_of => %s)", [T0]
    )
    assert claimed_per_tenant(conn, T0) == {big: 1, "7": 1}
    keys = conn.execute("SELECT key FROM skiplock.queue_key_bucket ORDER BY key").fetchall()
    assert keys == [("7",), ("md5:" + __import__("hashlib").md5(big.encode()).hexdigest(),)]


def test_refilled_key_buckets_are_forgotten(conn):
    """The bucket table holds only keys that spent tokens recently."""
    enqueue_args(conn, [{"tenant": str(i)} for i in range(200)])
    conn.execute(
        "SELECT skiplock.set_queue_limits('q', key_arg => 'tenant', key_rate => 10, as_of => %s)", [T0]
    )
    assert sum(claimed_per_tenant(conn, T0).values()) == 200
    assert conn.execute("SELECT count(*) FROM skiplock.queue_key_bucket").fetchone() == (200,)
    # Pruning runs on a fraction of claims; a minute later every bucket is full again.
    for _ in range(1000):
        claimed_per_tenant(conn, "2030-01-01 00:01:00+00")
        if conn.execute("SELECT count(*) FROM skiplock.queue_key_bucket").fetchone() == (0,):
            break
    assert conn.execute("SELECT count(*) FROM skiplock.queue_key_bucket").fetchone() == (0,)
