"""skiplock.enqueue_many: order, broadcasting, dedupe, validation, one NOTIFY per queue."""

from __future__ import annotations

import random
import threading

import psycopg
import pytest


def ids(conn, sql, params=None):
    return [r[0] for r in conn.execute(sql, params).fetchall()]


def test_ids_come_back_in_input_order_with_broadcast_columns(conn):
    got = ids(
        conn,
        "SELECT * FROM skiplock.enqueue_many('{q}', '{a,b,c}', ARRAY['{\"n\": 1}','{\"n\": 2}','{\"n\": 3}']::jsonb[],"
        " priorities => '{5}')",
    )
    rows = conn.execute("SELECT id, task, args, priority, state FROM skiplock.job ORDER BY id").fetchall()
    assert [r[0] for r in rows] == got
    assert [(r[1], r[2]["n"], r[3], r[4]) for r in rows] == [
        ("a", 1, 5, "available"),
        ("b", 2, 5, "available"),
        ("c", 3, 5, "available"),
    ]


def test_dedupe_keys_within_a_batch_and_against_live_jobs(conn):
    first = ids(conn, "SELECT * FROM skiplock.enqueue_many('{q}', '{t}', dedupe_keys => '{live}')")
    got = ids(
        conn,
        "SELECT * FROM skiplock.enqueue_many('{q}', '{a,b,c,d,e}', dedupe_keys => '{k1,NULL,k1,live,k2}')",
    )
    assert got[0] == got[2]  # the second k1 gets the first one's id
    assert got[3] == first[0]  # a live job holds 'live'
    assert len(set(got)) == 4
    assert conn.execute("SELECT count(*) FROM skiplock.job").fetchone() == (4,)  # live + k1 + NULL + k2


def test_a_finished_job_frees_its_dedupe_key(conn):
    (old,) = ids(conn, "SELECT * FROM skiplock.enqueue_many('{q}', '{t}', dedupe_keys => '{k}')")
    conn.execute(
        "SELECT skiplock.complete(array_agg(id), array_agg(lease_token))"
        " FROM skiplock.claim('{q}', gen_random_uuid(), 10)"
    )
    (new,) = ids(conn, "SELECT * FROM skiplock.enqueue_many('{q}', '{t}', dedupe_keys => '{k}')")
    assert new != old


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("skiplock.enqueue_many('{q,\"bad q\"}', '{a,b}')", "invalid queue name"),
        ("skiplock.enqueue_many('{q}', '{a,\"b;DROP\"}')", "invalid task name"),
        ("skiplock.enqueue_many('{q}', '{a,b}', ARRAY['{}', '[1]']::jsonb[])", "must be a JSON object"),
        ("skiplock.enqueue_many('{q}', '{a,b}', priorities => '{0,70000}')", "priority 70000 out of range"),
        ("skiplock.enqueue_many('{q}', '{a,b}', max_attempts => '{1,0}')", "max_attempts 0 out of range"),
        ("skiplock.enqueue_many('{q}', '{a,b}', delays => '{1s,-1s}')", "delay must not be negative"),
        ("skiplock.enqueue_many('{q}', '{a,b,c}', priorities => '{1,2}')", "expected 1 or 3"),
        ("skiplock.enqueue_many('{q}', '{}')", "non-empty"),
        (f"skiplock.enqueue_many('{{{'x' * 64}}}', '{{a}}')", "invalid queue name"),
        ("skiplock.enqueue_many(ARRAY['q' || chr(7)], '{a}')", "invalid queue name"),
        (
            "skiplock.enqueue_many(ARRAY['q' || chr(1077)], '{a}')",
            "invalid queue name",
        ),  # Cyrillic look-alike
    ],
)
def test_bad_input_is_rejected_and_nothing_is_written(conn, call, message):
    conn.execute("SELECT skiplock.enqueue('q', 'before')")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        conn.execute(f"SELECT * FROM {call}")
    assert conn.execute("SELECT count(*) FROM skiplock.job").fetchone() == (1,)


def test_size_limits_are_settings(conn):
    conn.execute("SET skiplock.max_batch_size = 2")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="exceeds the limit of 2"):
        conn.execute("SELECT * FROM skiplock.enqueue_many('{q}', '{a,b,c}')")
    conn.execute("SET skiplock.max_args_bytes = 100")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="exceed the limit of 100 bytes"):
        conn.execute(
            "SELECT * FROM skiplock.enqueue_many('{q}', '{a}', ARRAY[jsonb_build_object('x', repeat('y', 500))])"
        )
    assert conn.execute("SELECT count(*) FROM skiplock.job").fetchone() == (0,)


def test_one_notify_per_distinct_due_queue(dsn, conn):
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN skiplock_insert")
        conn.execute(
            "SELECT count(*) FROM skiplock.enqueue_many(%s, %s)",
            [["a", "b"] * 500, ["t"]],
        )
        conn.execute(
            "SELECT skiplock.enqueue('later', 't', delay => interval '1 hour')"
        )  # not due: no NOTIFY
        conn.execute("SELECT skiplock.enqueue('c', 't')")
        got = [n.payload for n in listener.notifies(timeout=1.0)]
    assert sorted(got) == ["a", "b", "c"]


def test_ids_map_back_to_positions_in_a_mixed_batch(conn):
    keys = [None, "b", None, "a", "b", None]
    args = [psycopg.types.json.Jsonb({"pos": i}) for i in range(len(keys))]
    ids = [
        r[0]
        for r in conn.execute(
            "SELECT * FROM skiplock.enqueue_many('{q}', '{t}', %s, dedupe_keys => %s)", [args, keys]
        )
    ]
    assert ids[1] == ids[4]  # the repeated key: one job
    assert ids[0] < ids[2] < ids[5]  # keyless jobs keep input order
    rows = dict(conn.execute("SELECT id, (args ->> 'pos')::int FROM skiplock.job").fetchall())
    assert [rows[i] for i in ids] == [0, 1, 2, 3, 1, 5]  # each position got its own job back


def test_racing_producers_with_the_same_keys_in_any_order_never_deadlock(dsn, conn):
    """Pass: 10 transactions enqueue the same 50 keys, each in its own shuffled order, at once:
    no error in any caller's transaction, one job per key, and every caller gets the same ids."""
    keys = [f"order-{i}" for i in range(50)]
    for round_ in range(3):
        conn.execute("TRUNCATE skiplock.job")
        results, errors = _race(dsn, keys, seeds=range(round_ * 10, round_ * 10 + 10))
        assert errors == []
        assert conn.execute("SELECT count(*), count(DISTINCT dedupe_key) FROM skiplock.job").fetchone() == (
            50,
            50,
        )
        assert all(r == results[0] for r in results)


def _race(dsn: str, keys: list[str], seeds: range) -> tuple[list[dict[str, int]], list[BaseException]]:
    barrier = threading.Barrier(len(seeds))
    results: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def producer(seed: int) -> None:
        mine = keys[:]
        random.Random(seed).shuffle(mine)
        try:
            with psycopg.connect(dsn) as c:
                barrier.wait()
                with c.transaction():
                    got = c.execute(
                        "SELECT * FROM skiplock.enqueue_many('{q}', '{t}', dedupe_keys => %s)", [mine]
                    ).fetchall()
                    c.execute("SELECT pg_sleep(0.02)")  # hold the keys a moment, as a real transaction would
                results.append(dict(zip(mine, (r[0] for r in got), strict=True)))
        except BaseException as exc:  # surfaced by the caller
            errors.append(exc)

    threads = [threading.Thread(target=producer, args=(seed,)) for seed in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results, errors
