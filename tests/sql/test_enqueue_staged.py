"""skiplock.stage_jobs + COPY + skiplock.enqueue_staged: the COPY path's SQL boundary.

Each test stages rows the way any SQL caller can (a COPY, or a plain INSERT into the session's
staging table) and shows that enqueue_staged validates them as enqueue_many does.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

COLUMNS = ("ord", "queue", "task", "args", "priority", "run_at", "delay", "max_attempts", "dedupe_key",
           "dedupe_window", "retry_policy")  # fmt: skip


def stage(conn: psycopg.Connection[Any], rows: list[dict[str, Any]]) -> None:
    """Stage ``rows`` (column → value; ord defaults to the 1-based position) with COPY."""
    conn.execute("SELECT skiplock.stage_jobs()")
    with (
        conn.cursor() as cur,
        cur.copy(f"COPY pg_temp.skiplock_job_stage ({', '.join(COLUMNS)}) FROM STDIN") as cp,
    ):
        for k, row in enumerate(rows, start=1):
            cp.write_row([row.get("ord", k), *(row.get(c) for c in COLUMNS[1:])])


def enqueue_staged(conn: psycopg.Connection[Any]) -> list[int]:
    return [r[0] for r in conn.execute("SELECT * FROM skiplock.enqueue_staged()").fetchall()]


def jobs(conn: psycopg.Connection[Any]) -> int:
    return conn.execute("SELECT count(*) FROM skiplock.job").fetchone()[0]


@pytest.fixture
def tx(conn):
    """One transaction per test: the staging table empties at every commit."""
    with conn.transaction(force_rollback=True):
        yield conn


def test_staged_jobs_come_back_in_ord_order_with_their_options(tx):
    rows = [{"queue": "q", "task": f"t{k}", "args": f'{{"k": {k}}}', "priority": k} for k in range(5)]
    rows[3]["delay"] = "1 hour"
    stage(tx, list(reversed(rows)))  # ord 1..5 names them in reverse
    got = enqueue_staged(tx)
    found = {
        r[0]: r[1:] for r in tx.execute("SELECT id, task, args, priority, state::text FROM skiplock.job")
    }
    assert [found[i][0] for i in got] == ["t4", "t3", "t2", "t1", "t0"]
    assert got == sorted(got)  # inserted in ord order
    assert found[got[1]][1:] == ({"k": 3}, 3, "scheduled")
    assert tx.execute("SELECT count(*) FROM pg_temp.skiplock_job_stage").fetchone() == (
        0,
    )  # moved, not copied


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"queue": "bad q"}, r"invalid queue name \"bad q\" \(batch position 3\)"),
        ({"queue": None}, r"invalid queue name NULL \(batch position 3\)"),
        ({"task": "x;DROP"}, r"invalid task name .* \(batch position 3\)"),
        ({"args": "[1]"}, r"args must be a JSON object, got array \(batch position 3\)"),
        ({"priority": 70000}, r"priority 70000 out of range .* \(batch position 3\)"),
        ({"max_attempts": 0}, r"max_attempts 0 out of range .* \(batch position 3\)"),
        ({"delay": "-5 seconds"}, r"delay must not be negative, got -00:00:05 \(batch position 3\)"),
        ({"retry_policy": '{"kind": "never"}'}, r"retry_policy kind .* \(batch position 3\)"),
        ({"dedupe_key": ""}, r"dedupe_key must be 1-512 bytes \(batch position 3\)"),
        ({"dedupe_window": "1 hour"}, r"dedupe_window needs a dedupe_key \(batch position 3\)"),
    ],
)
def test_a_bad_staged_row_is_rejected_by_position_and_nothing_is_written(tx, row, message):
    before = jobs(tx)
    rows = [{"queue": "q", "task": "t"} for _ in range(5)]
    rows[2] = {"queue": "q", "task": "t", **row}
    stage(tx, rows)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message), tx.transaction():
        enqueue_staged(tx)
    assert jobs(tx) == before


def test_args_over_the_size_limit_are_rejected(tx):
    tx.execute("SET LOCAL skiplock.max_args_bytes = 100")
    stage(tx, [{"queue": "q", "task": "t", "args": '{"x": "' + "y" * 500 + '"}'}])
    with (
        pytest.raises(psycopg.errors.InvalidParameterValue, match=r"exceed the limit of 100 bytes"),
        tx.transaction(),
    ):
        enqueue_staged(tx)
    tx.execute("SET LOCAL skiplock.max_batch_size = 2")
    stage(tx, [{"queue": "q", "task": "t"}] * 3)
    with (
        pytest.raises(psycopg.errors.InvalidParameterValue, match="exceeds the limit of 2"),
        tx.transaction(),
    ):
        enqueue_staged(tx)
    assert jobs(tx) == 0


@pytest.mark.parametrize("ords", [[1, 2, 2], [0, 1, 2], [1, 2, 4], [2, 3, 4]])
def test_ord_must_number_the_staged_jobs_one_to_n(tx, ords):
    stage(tx, [{"ord": o, "queue": "q", "task": "t"} for o in ords])
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="ord must number the 3"), tx.transaction():
        enqueue_staged(tx)


def test_dedupe_keys_and_windows_behave_as_in_enqueue_many(tx):
    (live,) = tx.execute("SELECT id FROM skiplock.enqueue('q', 't', dedupe_key => 'live')").fetchone()
    keys = ["k1", None, "k1", "live", "k2"]
    stage(
        tx,
        [{"queue": "q", "task": "t", "dedupe_key": k, "args": f'{{"pos": {i}}}'} for i, k in enumerate(keys)],
    )
    got = enqueue_staged(tx)
    assert got[0] == got[2]
    assert got[3] == live
    assert len(set(got)) == 4
    assert jobs(tx) == 4
    # Within its window, a completed holder still answers for its key.
    claimed, token = tx.execute(
        "SELECT id, lease_token FROM skiplock.claim(ARRAY['q'], gen_random_uuid()) WHERE dedupe_key = 'live'"
    ).fetchone()
    tx.execute("SELECT skiplock.complete(ARRAY[%s]::bigint[], ARRAY[%s]::uuid[])", [claimed, token])
    stage(
        tx,
        [
            {"queue": "q", "task": "t", "dedupe_key": "live", "dedupe_window": "1 hour"},
            {"queue": "q", "task": "t"},
        ],
    )
    again = enqueue_staged(tx)
    assert again[0] == live
    assert tx.execute("SELECT count(*) FROM pg_temp.skiplock_job_stage").fetchone() == (0,)


def test_one_notify_per_distinct_due_queue(dsn, conn):
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN skiplock_insert")
        with conn.transaction():
            stage(
                conn,
                [{"queue": q, "task": "t"} for q in ["a", "b"] * 300]
                + [{"queue": "later", "task": "t", "delay": "1 hour"}],
            )
            assert len(enqueue_staged(conn)) == 601
        got = [n.payload for n in listener.notifies(timeout=1.0)]
    assert sorted(got) == ["a", "b"]


def test_stage_jobs_empties_what_an_earlier_batch_left(tx):
    stage(tx, [{"queue": "q", "task": "t"}] * 3)
    stage(tx, [{"queue": "q", "task": "u"}])
    assert enqueue_staged(tx) != []
    assert tx.execute("SELECT task, count(*) FROM skiplock.job GROUP BY task").fetchall() == [("u", 1)]
    assert enqueue_staged(tx) == []  # nothing staged: nothing enqueued


def test_a_staging_table_that_stage_jobs_did_not_create_is_refused(dsn, login_as_producer):
    """A caller's own pg_temp.skiplock_job_stage (which could carry a trigger running with the
    definer's rights) is never read."""
    with psycopg.connect(login_as_producer) as c:
        c.execute("CREATE TEMP TABLE skiplock_job_stage (LIKE pg_catalog.pg_class)")
        with pytest.raises(
            psycopg.errors.InsufficientPrivilege, match=r"not created by skiplock\.stage_jobs"
        ):
            c.execute("SELECT * FROM skiplock.enqueue_staged()")
        c.rollback()
        c.execute("CREATE TEMP TABLE skiplock_job_stage (LIKE pg_catalog.pg_class)")
        with pytest.raises(
            psycopg.errors.InsufficientPrivilege, match=r"not created by skiplock\.stage_jobs"
        ):
            c.execute("SELECT skiplock.stage_jobs()")


def test_enqueue_staged_without_stage_jobs_is_a_clear_error(tx):
    with (
        pytest.raises(psycopg.errors.InvalidParameterValue, match=r"call skiplock.stage_jobs\(\) first"),
        tx.transaction(),
    ):
        enqueue_staged(tx)


def test_the_caller_may_only_insert_into_the_staging_table(login_as_producer):
    with psycopg.connect(login_as_producer) as c:
        stage(c, [{"queue": "q", "task": "t"}])
        for statement in [
            "CREATE TRIGGER t BEFORE INSERT ON pg_temp.skiplock_job_stage EXECUTE FUNCTION pg_catalog.now()",
            "ALTER TABLE pg_temp.skiplock_job_stage ADD COLUMN x integer",
            "UPDATE pg_temp.skiplock_job_stage SET ord = 2",
        ]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege), c.transaction():
                c.execute(statement)
        assert len(enqueue_staged(c)) == 1
        c.commit()


@pytest.fixture
def login_as_producer(conn, dsn):
    """A LOGIN role that is not the functions' owner (the test database's superuser)."""
    import uuid

    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    name = f"skiplock_t_{uuid.uuid4().hex[:12]}"
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA skiplock TO {}").format(sql.Identifier(name)))
    conn.execute(
        sql.SQL("GRANT EXECUTE ON FUNCTION skiplock.stage_jobs, skiplock.enqueue_staged TO {}").format(
            sql.Identifier(name)
        )
    )
    try:
        yield make_conninfo(dsn, user=name, password=None)
    finally:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [name])
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
