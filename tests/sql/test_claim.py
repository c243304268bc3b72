"""skiplock.claim: order, concurrency without duplicates, and the index it uses."""

from __future__ import annotations

import threading
import uuid

import psycopg


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
