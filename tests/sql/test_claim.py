"""skiplock.claim: order, concurrency without duplicates, the index it uses, and its contract.

A claim leases due jobs (available, or scheduled/retryable whose run_at has come by ``as_of``)
of the given queues, in the order the queues are given, at most ``max_jobs``: each becomes
``running`` with a new lease token, its worker, ``attempted_at = as_of``, a lease until
``as_of + lease``, and one more attempt. It returns the claimed rows. Bad arguments are refused
(22023) and nothing is claimed.
"""

from __future__ import annotations

import threading
import uuid

import jobrows
import psycopg
import pytest


def test_priority_then_run_at_then_id_order(conn):
    conn.execute(
        "SELECT skiplock.enqueue_many('{q}', '{low,high,mid,high2,high3}', priorities => '{0,10,5,10,10}',"
        " run_ats => ARRAY[now() - interval '1 minute', now(), now(), now() - interval '1 second', now()])"
    )
    one_by_one = [
        conn.execute("SELECT task FROM skiplock.claim('{q}', gen_random_uuid(), 1)").fetchone()[0]
        for _ in range(5)
    ]
    # higher priority first; then the older run_at; then the lower id
    assert one_by_one == ["high2", "high", "high3", "mid", "low"]


def test_concurrent_claimers_never_get_the_same_job(dsn, conn):
    conn.execute("SELECT count(*) FROM skiplock.enqueue_many('{q}', %s)", [["t"] * 3000])
    got: list[int] = []
    lock = threading.Lock()

    def claimer() -> None:
        worker = uuid.uuid4()
        with psycopg.connect(dsn, autocommit=True) as c:
            while True:
                rows = c.execute("SELECT id FROM skiplock.claim('{q}', %s, 7)", [worker]).fetchall()
                if not rows:
                    return
                with lock:
                    got.extend(r[0] for r in rows)

    threads = [threading.Thread(target=claimer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(got) == 3000
    assert len(set(got)) == 3000
    assert conn.execute("SELECT count(DISTINCT worker_id) FROM skiplock.job").fetchone()[0] > 1


def test_the_claim_scan_uses_job_claim_idx(conn):
    conn.execute("SELECT count(*) FROM skiplock.enqueue_many('{q}', %s)", [["t"] * 5000])
    conn.execute("SELECT count(*) FROM skiplock.enqueue_many('{other}', %s)", [["t"] * 5000])
    conn.execute("ANALYZE skiplock.job")
    plan = "\n".join(
        r[0]
        for r in conn.execute(
            "EXPLAIN SELECT id FROM skiplock.job WHERE queue = 'q' AND state = 'available' AND run_at <= now()"
            " ORDER BY priority DESC, run_at, id LIMIT 100 FOR UPDATE SKIP LOCKED"
        )
    )
    assert "job_claim_idx" in plan


def test_paused_queues_yield_nothing_until_resumed_or_the_pause_ends(conn):
    conn.execute("SELECT skiplock.enqueue('q', 't')")
    conn.execute("SELECT skiplock.pause_queue('q', until => now() + interval '1 hour')")
    assert conn.execute("SELECT count(*) FROM skiplock.claim('{q}', gen_random_uuid(), 1)").fetchone() == (0,)
    later = "SELECT count(*) FROM skiplock.claim('{q}', gen_random_uuid(), 1, as_of => now() + interval '2 hours')"
    assert conn.execute(later).fetchone() == (1,)


# --- the contract of one claim, as examples -----------------------------------------------------


def test_a_claimed_job_is_running_with_a_fresh_lease_and_one_more_attempt(conn):
    job_id = jobrows.enqueue(conn)
    worker = uuid.uuid4()
    rows = conn.execute(
        "SELECT id, state::text, attempt, attempted_at, worker_id, lease_token, lease_expires_at"
        " FROM skiplock.claim('{q}', %s, 1, '45 seconds', as_of => %s)",
        [worker, jobrows.at(5)],
    ).fetchall()
    assert len(rows) == 1
    got_id, state, attempt, attempted_at, worker_id, token, expires = rows[0]
    assert (got_id, state, attempt, attempted_at, worker_id) == (job_id, "running", 1, jobrows.at(5), worker)
    assert expires == jobrows.at(50)
    assert jobrows.live(conn, job_id)["lease_token"] == token  # what it returns is the row as stored
    # released and claimed again: attempt 1 again (release gives it back), and a new token
    conn.execute("SELECT skiplock.release(ARRAY[%s::bigint], ARRAY[%s::uuid])", [job_id, token])
    _, again = jobrows.claim(conn, as_of=jobrows.at(6))
    assert again != token


def test_only_due_jobs_are_claimed_and_scheduled_or_retryable_ones_come_due_at_as_of(conn):
    later = jobrows.enqueue(conn, run_at=jobrows.at(100))
    retrying, token = jobrows.running(conn, queue="r")
    conn.execute(
        "SELECT skiplock.fail(%s, %s, 'boom', retry_in => '50 seconds', as_of => %s)",
        [retrying, token, jobrows.at(0)],
    )
    claim_at = "SELECT id FROM skiplock.claim('{q,r}', gen_random_uuid(), 10, as_of => %s)"
    assert conn.execute(claim_at, [jobrows.at(49)]).fetchall() == []
    assert jobrows.where(conn, later) == ("job", "scheduled")
    assert conn.execute(claim_at, [jobrows.at(50)]).fetchall() == [(retrying,)]
    assert jobrows.live(conn, retrying)["attempt"] == 2
    assert conn.execute(claim_at, [jobrows.at(100)]).fetchall() == [(later,)]


def test_running_and_finished_jobs_are_never_claimed_again(conn):
    busy, token = jobrows.running(conn)
    done, t2 = jobrows.running(conn)
    conn.execute("SELECT skiplock.complete(ARRAY[%s::bigint], ARRAY[%s::uuid])", [done, t2])
    assert conn.execute(
        "SELECT count(*) FROM skiplock.claim('{q}', gen_random_uuid(), 10, as_of => %s)", [jobrows.at(10**6)]
    ).fetchone() == (0,)
    assert jobrows.live(conn, busy)["lease_token"] == token


def test_queues_are_served_in_the_order_given_up_to_max_jobs(conn):
    a = [jobrows.enqueue(conn, queue="a") for _ in range(2)]
    b = [jobrows.enqueue(conn, queue="b") for _ in range(3)]
    got = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM skiplock.claim('{b,a}', gen_random_uuid(), 4, as_of => %s)", [jobrows.at(0)]
        )
    ]
    assert got == [*b, a[0]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("'{q}', gen_random_uuid(), 0", "max_jobs must be between 1 and 10000"),
        ("'{q}', gen_random_uuid(), 10001", "max_jobs must be between 1 and 10000"),
        ("'{q}', gen_random_uuid(), 1, '0 seconds'", "lease must be positive"),
        ("'{q}', gen_random_uuid(), 1, NULL", "lease must be positive"),
        ("'{q}', NULL, 1", "worker_id must not be NULL"),
        ("'{}', gen_random_uuid(), 1", "queues must be a non-empty array"),
        ("NULL, gen_random_uuid(), 1", "queues must be a non-empty array"),
    ],
)
def test_bad_arguments_are_refused_and_nothing_is_claimed(conn, args, message):
    job_id = jobrows.enqueue(conn)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        conn.execute(f"SELECT * FROM skiplock.claim({args})")
    assert jobrows.where(conn, job_id) == ("job", "available")
