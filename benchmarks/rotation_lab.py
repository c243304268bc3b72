"""Live jobs through a held xmin horizon: candidate table layouts, side by side (issue 17, item 2).

A lab, not a benchmark of skiplock: it builds minimal schemas of its own, one database each, on a
throw-away cluster, and drives them all at once with the same load, so the noisy machine hits
every candidate alike:

``single``
    today's shape: one live table; claim = ``UPDATE … FROM (SELECT … ORDER BY priority DESC,
    run_at, id LIMIT n FOR UPDATE SKIP LOCKED)``; complete = ``DELETE … RETURNING`` moved into an
    insert-only history; dedupe = a partial unique index on the live table.
``ring``
    the live table is ``N`` list partitions of one parent, by segment number. Enqueue writes to
    the current segment (one row in ``ring`` names it); a claim takes the best ``n`` of each
    segment's own index scan (``FOR UPDATE SKIP LOCKED`` per segment, a drained segment gated off
    by a one-time filter) and keeps the best ``n`` overall, so priority holds across segments; a
    rotator moves ``current`` on by time or count and ``TRUNCATE``s a segment once it is empty,
    under ``lock_timeout`` (backing off after a timeout, and not asking at all while ``pg_locks``
    shows a long transaction holding the segment). Dedupe: a unique index per segment, plus a
    transaction advisory lock on the key and a probe of every segment (no table of its own).
``ring_dedupe_table``
    the same ring, but dedupe keys live in one ordinary table (key → job id), inserted on enqueue
    and deleted on completion: the obvious answer to "a partitioned unique index must include the
    partition key", and the one that bloats under a hold.

Each database gets a steady stream of single enqueues (``--rate`` per candidate, 40% of them with
a dedupe key that the next job shares), two worker loops (claim up to 10 → complete at once), and
after a baseline a ``REPEATABLE READ`` transaction in the same database that reads once and stays
idle (``--holder-reads other`` reads an unrelated table: the analyst's case; ``queue`` reads the
queue's tables, as ``pg_dump`` does, and so also holds ``ACCESS SHARE`` on every segment). Every
10 s it records claim round-trip p50/p99, pickup p50/p99 (database clock), completions/s, the
live tables' size with indexes, their dead tuples, the dedupe table's, and the rotator's
``TRUNCATE`` attempts, successes and lock timeouts::

    python -m benchmarks.rotation_lab                       # 60 s baseline, 4 min hold, 60 s after
    python -m benchmarks.rotation_lab --holder-reads queue --hold 180
    python -m benchmarks.rotation_lab --smoke               # under 30 s, to check that it runs

It writes ``benchmarks/results/rotation_lab-<time>.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors

from benchmarks.common import ROOT

CLUSTER = "skiplock_rotation"
VERSION = "15"
WINDOW_S = 10.0
LANES = 4  # producers per candidate, each on its own connection
WORKERS = 2  # claim loops per candidate
BATCH = 10
POLL_S = 0.01
CANDIDATES = ("single", "ring", "ring_dedupe_table")

# The hot table's storage settings skiplock uses today (0001_baseline.sql), for every candidate.
HOT_PARAMS = (
    "fillfactor = 80, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,"
    " autovacuum_vacuum_cost_delay = 0, autovacuum_analyze_scale_factor = 0,"
    " autovacuum_analyze_threshold = 5000"
)
COLUMNS = """
    queue text NOT NULL DEFAULT 'q',
    priority int NOT NULL DEFAULT 0,
    run_at timestamptz NOT NULL DEFAULT now(),
    state text NOT NULL DEFAULT 'available',
    args jsonb NOT NULL,
    dedupe_key text,
    attempts int NOT NULL DEFAULT 0,
    lease_token uuid,
    lease_expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    attempted_at timestamptz
"""
HISTORY = """
CREATE TABLE job_history (
    id bigint NOT NULL, seg int, queue text NOT NULL, priority int NOT NULL, args jsonb NOT NULL,
    dedupe_key text, attempts int NOT NULL, created_at timestamptz NOT NULL,
    attempted_at timestamptz, finished_at timestamptz NOT NULL DEFAULT now()
);
-- What the holder reads in the analyst's case: a table that is not the queue's.
CREATE TABLE analytics (id int PRIMARY KEY, v text);
INSERT INTO analytics SELECT g, md5(g::text) FROM generate_series(1, 1000) g;
"""


# -- the candidates' SQL ------------------------------------------------------------------------


def single_schema() -> str:
    return f"""
CREATE TABLE job (id bigserial PRIMARY KEY, {COLUMNS}) WITH ({HOT_PARAMS});
CREATE INDEX job_claim_idx ON job (queue, priority DESC, run_at, id) WHERE state = 'available';
CREATE UNIQUE INDEX job_dedupe_key_idx ON job (dedupe_key) WHERE dedupe_key IS NOT NULL;
{HISTORY}
CREATE FUNCTION enqueue(p_args jsonb, p_priority int, p_key text) RETURNS bigint
LANGUAGE sql AS $$
    INSERT INTO job (args, priority, dedupe_key) VALUES (p_args, p_priority, p_key)
    ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
    RETURNING id
$$;
"""


SINGLE_CLAIM = """
WITH c AS MATERIALIZED (
    SELECT id FROM job WHERE queue = 'q' AND state = 'available'
    ORDER BY priority DESC, run_at, id LIMIT %(n)s FOR UPDATE SKIP LOCKED
)
UPDATE job j SET state = 'running', attempts = j.attempts + 1, lease_token = gen_random_uuid(),
    lease_expires_at = now() + interval '5 minutes', attempted_at = now()
FROM c WHERE j.id = c.id
RETURNING 0, j.id, j.lease_token, extract(epoch FROM now() - j.created_at) * 1000
"""

SINGLE_COMPLETE = """
WITH d AS (
    DELETE FROM job j USING unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS x(id, token)
    WHERE j.id = x.id AND j.lease_token = x.token AND j.state = 'running'
    RETURNING j.*
)
INSERT INTO job_history (id, queue, priority, args, dedupe_key, attempts, created_at, attempted_at)
SELECT id, queue, priority, args, dedupe_key, attempts, created_at, attempted_at FROM d
"""


def ring_schema(n: int, *, dedupe_table: bool) -> str:
    parts = []
    for k in range(n):
        parts.append(f"CREATE TABLE job_{k} PARTITION OF job FOR VALUES IN ({k}) WITH ({HOT_PARAMS});")
        if not dedupe_table:
            # A unique index per segment: a partitioned unique index would have to include seg.
            parts.append(
                f"CREATE UNIQUE INDEX job_{k}_dedupe_idx ON job_{k} (dedupe_key) WHERE dedupe_key IS NOT NULL;"
            )
    states = ", ".join("'current'" if k == 0 else "'free'" for k in range(n))
    if dedupe_table:
        enqueue = """
CREATE TABLE dedupe (key text PRIMARY KEY, job_id bigint NOT NULL) WITH (fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_cost_delay = 0);
CREATE FUNCTION enqueue(p_args jsonb, p_priority int, p_key text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE v_id bigint := nextval('job_id_seq');
BEGIN
    IF p_key IS NOT NULL THEN
        INSERT INTO dedupe (key, job_id) VALUES (p_key, v_id) ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN RETURN NULL; END IF;
    END IF;
    INSERT INTO job (seg, id, args, priority, dedupe_key)
    VALUES ((SELECT cur FROM ring WHERE id = 1), v_id, p_args, p_priority, p_key);
    RETURN v_id;
END $$;
"""
    else:
        enqueue = """
CREATE FUNCTION enqueue(p_args jsonb, p_priority int, p_key text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE v_id bigint;
BEGIN
    IF p_key IS NOT NULL THEN
        -- Same-key enqueues queue up here; the probe below then sees a committed twin in any
        -- segment (READ COMMITTED: each statement its own snapshot). The per-segment unique
        -- index is the backstop within one segment.
        PERFORM pg_advisory_xact_lock(17, hashtext(p_key));
        PERFORM 1 FROM job WHERE dedupe_key = p_key;
        IF FOUND THEN RETURN NULL; END IF;
    END IF;
    INSERT INTO job (seg, args, priority, dedupe_key)
    VALUES ((SELECT cur FROM ring WHERE id = 1), p_args, p_priority, p_key)
    ON CONFLICT DO NOTHING RETURNING id INTO v_id;
    RETURN v_id;
END $$;
"""
    return f"""
CREATE SEQUENCE job_id_seq;
CREATE TABLE job (seg int NOT NULL, id bigint NOT NULL DEFAULT nextval('job_id_seq'), {COLUMNS},
    PRIMARY KEY (seg, id)) PARTITION BY LIST (seg);
CREATE INDEX job_claim_idx ON job (queue, priority DESC, run_at, id) WHERE state = 'available';
{chr(10).join(parts)}
-- One row: the current segment, when and at which id it became current, and each segment's state
-- (current | draining | drained | free). Updated only by the rotator: a few rows per minute.
CREATE TABLE ring (id int PRIMARY KEY CHECK (id = 1), cur int NOT NULL, rotated_at timestamptz NOT NULL,
    first_id bigint NOT NULL, states text[] NOT NULL);
INSERT INTO ring VALUES (1, 0, now(), 0, ARRAY[{states}]);
{HISTORY}
{enqueue}
"""


def ring_claim(n: int) -> str:
    branches = " UNION ALL ".join(
        f"""SELECT * FROM (SELECT seg, id, priority, run_at FROM job_{k}
            WHERE queue = 'q' AND state = 'available' AND (SELECT states[{k + 1}] FROM r) <> 'drained'
            ORDER BY priority DESC, run_at, id LIMIT %(n)s FOR UPDATE SKIP LOCKED) s{k}"""
        for k in range(n)
    )
    return f"""
WITH r AS MATERIALIZED (SELECT states FROM ring WHERE id = 1),
c AS MATERIALIZED (
    SELECT seg, id FROM ({branches}) u ORDER BY priority DESC, run_at, id LIMIT %(n)s
)
UPDATE job j SET state = 'running', attempts = j.attempts + 1, lease_token = gen_random_uuid(),
    lease_expires_at = now() + interval '5 minutes', attempted_at = now()
FROM c WHERE j.seg = c.seg AND j.id = c.id
RETURNING j.seg, j.id, j.lease_token, extract(epoch FROM now() - j.created_at) * 1000
"""


def ring_complete(*, dedupe_table: bool) -> str:
    release = (
        ", k AS (DELETE FROM dedupe USING d WHERE dedupe.key = d.dedupe_key AND dedupe.job_id = d.id)"
        if dedupe_table
        else ""
    )
    return f"""
WITH d AS (
    DELETE FROM job j USING unnest(%(segs)s::int[], %(ids)s::bigint[], %(tokens)s::uuid[]) AS x(seg, id, token)
    WHERE j.seg = x.seg AND j.id = x.id AND j.lease_token = x.token AND j.state = 'running'
    RETURNING j.*
){release}
INSERT INTO job_history (id, seg, queue, priority, args, dedupe_key, attempts, created_at, attempted_at)
SELECT id, seg, queue, priority, args, dedupe_key, attempts, created_at, attempted_at FROM d
"""


def schema(candidate: str, segments: int) -> str:
    if candidate == "single":
        return single_schema()
    return ring_schema(segments, dedupe_table=candidate == "ring_dedupe_table")


def statements(candidate: str, segments: int) -> tuple[str, str]:
    if candidate == "single":
        return SINGLE_CLAIM, SINGLE_COMPLETE
    return ring_claim(segments), ring_complete(dedupe_table=candidate == "ring_dedupe_table")


def live_tables(candidate: str, segments: int) -> list[str]:
    return ["job"] if candidate == "single" else [f"job_{k}" for k in range(segments)]


# -- the throw-away cluster ---------------------------------------------------------------------


@contextlib.contextmanager
def cluster(port: int) -> Iterator[str]:
    """A fresh cluster of the machine's PostgreSQL 15 on ``port``, default settings but
    pg_stat_statements; yields its admin DSN and drops it at the end."""
    subprocess.run(["pg_dropcluster", "--stop", VERSION, CLUSTER], capture_output=True, check=False)
    made = subprocess.run(
        [
            "pg_createcluster", "-p", str(port), "--start",
            "-o", "shared_preload_libraries=pg_stat_statements", "-o", "max_connections=100",
            VERSION, CLUSTER, "--", "--auth=trust",
        ],
        capture_output=True,
        text=True,
    )  # fmt: skip
    if made.returncode != 0:
        subprocess.run(["pg_dropcluster", "--stop", VERSION, CLUSTER], capture_output=True, check=False)
        raise SystemExit(f"pg_createcluster failed: {(made.stderr or made.stdout).strip().splitlines()[-1:]}")
    try:
        yield f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    finally:
        subprocess.run(["pg_dropcluster", "--stop", VERSION, CLUSTER], capture_output=True, check=False)


def create(admin: str, candidate: str, segments: int) -> str:
    name = f"lab_{candidate}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    dsn = admin.replace("dbname=postgres", f"dbname={name}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
        conn.execute(schema(candidate, segments))
    return dsn


# -- one candidate's run (a child process, so the candidates share no event loop) --------------


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


class Drive:
    def __init__(self, candidate: str, dsn: str, cfg: dict[str, Any]) -> None:
        self.candidate, self.dsn, self.cfg = candidate, dsn, cfg
        self.segments = int(cfg["segments"])
        self.ring = candidate != "single"
        self.claim_sql, self.complete_sql = statements(candidate, self.segments)
        self.stop = asyncio.Event()
        self.reset()
        self.windows: list[dict[str, Any]] = []
        self.tx = {
            "attempts": 0,
            "truncated": 0,
            "lock_timeouts": 0,
            "skipped_held": 0,
            "rotations": 0,
            "rotation_blocked": 0,
        }
        self.backoff: dict[int, float] = {}
        self.retry_at: dict[int, float] = {}
        self.tx_lock_wait_ms: list[float] = []
        self.errors: list[str] = []

    def reset(self) -> None:
        self.claim_ms: list[float] = []
        self.complete_ms: list[float] = []
        self.enqueue_ms: list[float] = []
        self.keyed_ms: list[float] = []
        self.pickup_ms: list[float] = []
        self.done = 0
        self.enqueued = 0
        self.deduped = 0

    async def connect(self, **kw: Any) -> psycopg.AsyncConnection[Any]:
        # The claim's plan must not depend on what ANALYZE last saw of a segment (empty after a
        # TRUNCATE, thousands of rows a minute later): index scans only, for every candidate.
        return await psycopg.AsyncConnection.connect(
            self.dsn, autocommit=True, options="-c enable_seqscan=off -c enable_bitmapscan=off", **kw
        )

    async def producer(self, lane: int) -> None:
        conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        rate, t0 = float(self.cfg["rate"]), float(self.cfg["t0"])
        i = lane
        try:
            while not self.stop.is_set():
                delay = t0 + i / rate - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                # 40% carry a dedupe key, and jobs 5k and 5k+1 share theirs: the second is a
                # duplicate while the first is still live.
                key = f"k{i // 5}" if i % 5 < 2 else None
                started = time.perf_counter()
                cur = await conn.execute(
                    "SELECT enqueue(%s::jsonb, %s, %s)", [json.dumps({"i": i}), i % 3, key], prepare=True
                )
                row = await cur.fetchone()
                ms = (time.perf_counter() - started) * 1000
                (self.keyed_ms if key else self.enqueue_ms).append(ms)
                self.enqueued += 1
                if row is None or row[0] is None:
                    self.deduped += 1
                i += LANES
        finally:
            await conn.close()

    async def worker(self) -> None:
        conn = await self.connect()
        try:
            while not self.stop.is_set():
                started = time.perf_counter()
                try:
                    cur = await conn.execute(self.claim_sql, {"n": BATCH}, prepare=True)
                    rows = await cur.fetchall()
                except psycopg.Error as exc:  # a claim racing a TRUNCATE must not end the run
                    self.errors.append(f"claim: {exc}"[:200])
                    await asyncio.sleep(POLL_S)
                    continue
                self.claim_ms.append((time.perf_counter() - started) * 1000)
                if not rows:
                    await asyncio.sleep(POLL_S)
                    continue
                self.pickup_ms.extend(float(r[3]) for r in rows)
                rows.sort(key=lambda r: (r[0], r[1]))  # lock in (segment, id) order
                params: dict[str, Any] = {"ids": [r[1] for r in rows], "tokens": [r[2] for r in rows]}
                if self.ring:
                    params["segs"] = [r[0] for r in rows]
                started = time.perf_counter()
                await conn.execute(self.complete_sql, params, prepare=True)
                self.complete_ms.append((time.perf_counter() - started) * 1000)
                self.done += len(rows)
        finally:
            await conn.close()

    async def rotator(self) -> None:
        """Moves ``current`` on by time or count; marks an empty non-current segment drained (claims
        skip it) and TRUNCATEs it under lock_timeout, rechecking under the lock; retries next tick."""
        conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        n, every, count = self.segments, float(self.cfg["rotate_s"]), int(self.cfg["rotate_count"])
        timeout = int(self.cfg["lock_timeout_ms"])
        try:
            while not self.stop.is_set():
                await asyncio.sleep(float(self.cfg["tick_s"]))
                try:
                    await self.rotate_once(conn, n, every, count, timeout)
                except psycopg.Error as exc:
                    self.errors.append(f"rotator: {exc}"[:200])
        finally:
            await conn.close()

    def back_off(self, k: int) -> None:
        """The next TRUNCATE attempt on segment ``k`` after 0.5 s, doubling to 10 s."""
        self.backoff[k] = min(10.0, 2 * self.backoff.get(k, 0.25))
        self.retry_at[k] = time.monotonic() + self.backoff[k]

    async def rotate_once(
        self, conn: psycopg.AsyncConnection[Any], n: int, every: float, count: int, timeout: int
    ) -> None:
        cur = await conn.execute(
            "SELECT cur, extract(epoch FROM now() - rotated_at), first_id, states,"
            " (SELECT last_value FROM job_id_seq) FROM ring WHERE id = 1"
        )
        row = await cur.fetchone()
        assert row is not None
        current, age, first_id, states, last_id = row
        for k in range(n):
            if k == current or states[k] not in ("draining", "drained"):
                continue
            # Unlocked look first (a heap scan of one segment: its size is bounded by rotation).
            c = await conn.execute(f"SELECT EXISTS (SELECT 1 FROM job_{k})")
            busy = (await c.fetchone() or [True])[0]
            if busy:
                if states[k] == "drained":  # a late enqueue landed after it was marked
                    await conn.execute("UPDATE ring SET states[%s] = 'draining' WHERE id = 1", [k + 1])
                continue
            if states[k] == "draining":
                await conn.execute("UPDATE ring SET states[%s] = 'drained' WHERE id = 1", [k + 1])
            if time.monotonic() < self.retry_at.get(k, 0.0):
                continue
            if self.cfg["look_first"]:
                # Look before queueing: a lock request that waits puts every later claim of this
                # segment behind it, so never ask while a long transaction holds the segment.
                c = await conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                    " WHERE l.relation = %s::regclass AND l.granted AND l.pid <> pg_backend_pid()"
                    " AND a.xact_start < now() - interval '1 second')",
                    [f"job_{k}"],
                )
                if (await c.fetchone() or [False])[0]:
                    self.tx["skipped_held"] += 1
                    self.back_off(k)
                    continue
            self.tx["attempts"] += 1
            started = time.perf_counter()
            try:
                async with conn.transaction():
                    await conn.execute(f"SET LOCAL lock_timeout = '{timeout}ms'")
                    await conn.execute(f"LOCK TABLE job_{k} IN ACCESS EXCLUSIVE MODE")
                    self.tx_lock_wait_ms.append((time.perf_counter() - started) * 1000)
                    c = await conn.execute(f"SELECT EXISTS (SELECT 1 FROM job_{k})")
                    if (await c.fetchone() or [True])[0]:
                        await conn.execute("UPDATE ring SET states[%s] = 'draining' WHERE id = 1", [k + 1])
                        continue
                    await conn.execute(f"TRUNCATE job_{k}")
                    await conn.execute("UPDATE ring SET states[%s] = 'free' WHERE id = 1", [k + 1])
                self.tx["truncated"] += 1
                self.backoff.pop(k, None)
            except errors.LockNotAvailable:
                self.tx["lock_timeouts"] += 1
                self.back_off(k)
        if age < every and last_id - first_id < count:
            return
        c = await conn.execute("SELECT states FROM ring WHERE id = 1")
        states = (await c.fetchone() or [states])[0]
        nxt = next((j % n for j in range(current + 1, current + n) if states[j % n] == "free"), None)
        if nxt is None:
            self.tx["rotation_blocked"] += 1
            return
        await conn.execute(
            "UPDATE ring SET cur = %(nxt)s, rotated_at = now(), first_id = (SELECT last_value FROM job_id_seq),"
            " states[%(old)s] = 'draining', states[%(new)s] = 'current' WHERE id = 1",
            {"nxt": nxt, "old": current + 1, "new": nxt + 1},
        )
        self.tx["rotations"] += 1

    async def sample(self, conn: psycopg.AsyncConnection[Any], phase: str, t: float, span: float) -> None:
        tables = live_tables(self.candidate, self.segments)
        cur = await conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(relid)), 0), coalesce(sum(n_dead_tup), 0),"
            " coalesce(sum(n_live_tup), 0) FROM pg_stat_user_tables WHERE relname = ANY(%s)",
            [tables],
        )
        live_bytes, dead, live = map(float, await cur.fetchone() or (0, 0, 0))
        cur = await conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(relid)), 0), coalesce(sum(n_dead_tup), 0)"
            " FROM pg_stat_user_tables WHERE relname IN ('dedupe', 'ring')"
        )
        side_bytes, side_dead = map(float, await cur.fetchone() or (0, 0))
        cur = await conn.execute(
            "SELECT count(*) FROM (SELECT dedupe_key FROM job WHERE dedupe_key IS NOT NULL"
            " GROUP BY 1 HAVING count(*) > 1) s"
        )
        dupes = (await cur.fetchone() or [0])[0]
        states = None
        if self.ring:
            cur = await conn.execute("SELECT cur, states FROM ring WHERE id = 1")
            r = await cur.fetchone()
            states = None if r is None else f"{r[0]}:{','.join(s[:2] for s in r[1])}"
        w = {
            "t": round(t, 1),
            "phase": phase,
            "load1": os.getloadavg()[0],
            "span": round(span, 2),
            "enqueued_per_s": self.enqueued / span,
            "completions_per_s": self.done / span,
            "claims": len(self.claim_ms),
            "claim_p50_ms": pct(self.claim_ms, 0.5),
            "claim_p99_ms": pct(self.claim_ms, 0.99),
            "complete_p50_ms": pct(self.complete_ms, 0.5),
            "enqueue_p99_ms": pct(self.enqueue_ms, 0.99),
            "keyed_enqueue_p50_ms": pct(self.keyed_ms, 0.5),
            "keyed_enqueue_p99_ms": pct(self.keyed_ms, 0.99),
            "deduped": self.deduped,
            "pickup_p50_ms": pct(self.pickup_ms, 0.5),
            "pickup_p99_ms": pct(self.pickup_ms, 0.99),
            "live_mib": live_bytes / 2**20,
            "live_rows": int(live),
            "dead_tuples": int(dead),
            "side_mib": side_bytes / 2**20,  # the dedupe table (ring_dedupe_table) and the ring row
            "side_dead": int(side_dead),
            "live_duplicate_keys": int(dupes),
            "segments": states,
            **{f"truncate_{k}": v for k, v in self.tx.items()},
        }
        self.windows.append(w)
        self.reset()
        print(line(self.candidate, w), file=sys.stderr, flush=True)

    async def run(self) -> dict[str, Any]:
        t0 = float(self.cfg["t0"])
        hold_at = t0 + float(self.cfg["baseline"])
        release_at = hold_at + float(self.cfg["hold"])
        end_at = release_at + float(self.cfg["after"])
        tasks = [asyncio.create_task(self.producer(k)) for k in range(LANES)]
        tasks += [asyncio.create_task(self.worker()) for _ in range(WORKERS)]
        if self.ring:
            tasks.append(asyncio.create_task(self.rotator()))
        sampler = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        holder: psycopg.AsyncConnection[Any] | None = None
        last = time.time()
        try:
            while True:
                await asyncio.sleep(max(0.0, last + float(self.cfg["window_s"]) - time.time()))
                now = time.time()
                phase = "baseline" if last < hold_at else "hold" if last < release_at else "after"
                if holder is None and release_at > now >= hold_at and self.cfg["hold"]:
                    holder = await psycopg.AsyncConnection.connect(self.dsn, application_name="analyst")
                    await holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
                    table = "analytics" if self.cfg["holder_reads"] == "other" else "job"
                    await holder.execute(f"SELECT count(*) FROM {table}")
                elif holder is not None and now >= release_at:
                    await holder.rollback()
                    await holder.close()
                    holder = None
                await self.sample(sampler, phase, now - t0, now - last)
                last = now
                if now >= end_at:
                    break
        finally:
            self.stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            if holder is not None:
                await holder.close()
            await sampler.close()
        return {
            "candidate": self.candidate,
            "windows": self.windows,
            "truncate": self.tx,
            "truncate_lock_wait_ms_p99": pct(self.tx_lock_wait_ms, 0.99),
            "truncate_lock_wait_ms_max": max(self.tx_lock_wait_ms, default=None),
            "errors": self.errors[:20],
            "error_count": len(self.errors),
        }


def line(candidate: str, w: dict[str, Any]) -> str:
    def f(x: float | None, spec: str = ".1f") -> str:
        return "-" if x is None else format(x, spec)

    return (
        f"{candidate:18} t={w['t']:6.0f} {w['phase']:8} load={w['load1']:4.1f} done/s={w['completions_per_s']:5.0f}"
        f" claim p50/p99={f(w['claim_p50_ms'])}/{f(w['claim_p99_ms'])} ms pickup p99={f(w['pickup_p99_ms'], '.0f')} ms"
        f" live={w['live_mib']:5.2f} MiB dead={w['dead_tuples']:7} side={w['side_mib']:5.2f} MiB"
        f" trunc={w['truncate_truncated']}/{w['truncate_attempts']} seg={w['segments'] or '-'}"
    )


def drive_main(candidate: str, dsn: str, cfg_json: str, out: str) -> None:
    result = asyncio.run(Drive(candidate, dsn, json.loads(cfg_json)).run())
    Path(out).write_text(json.dumps(result, default=str))


def explain(dsn: str, candidate: str, segments: int) -> str:
    """The claim's real plan, as the workers' sessions run it, over a few hundred jobs."""
    claim, _ = statements(candidate, segments)
    with psycopg.connect(
        dsn, autocommit=True, options="-c enable_seqscan=off -c enable_bitmapscan=off"
    ) as conn:
        for i in range(300):
            conn.execute("SELECT enqueue(%s::jsonb, %s, NULL)", [json.dumps({"i": i}), i % 3])
        with conn.transaction(force_rollback=True):
            rows = conn.execute(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {claim}", {"n": BATCH}).fetchall()
    return "\n".join(r[0] for r in rows)


# -- the report ---------------------------------------------------------------------------------


def summary(result: dict[str, Any]) -> dict[str, Any]:
    ws = result["windows"]

    def med(phase: str, key: str) -> float | None:
        xs = [w[key] for w in ws if w["phase"] == phase and w[key] is not None]
        return statistics.median(xs) if xs else None

    def worst(phase: str, key: str, fn: Any = max) -> float | None:
        xs = [w[key] for w in ws if w["phase"] == phase and w[key] is not None]
        return fn(xs) if xs else None

    base = [w for w in ws if w["phase"] == "baseline"][1:]  # the first window warms up
    base_claim = statistics.median([w["claim_p50_ms"] for w in base if w["claim_p50_ms"] is not None] or [0])
    return {
        "baseline_claim_p50_ms": base_claim,
        "baseline_claim_p99_ms": med("baseline", "claim_p99_ms"),
        "hold_claim_p50_ms_last": next(
            (w["claim_p50_ms"] for w in reversed(ws) if w["phase"] == "hold"), None
        ),
        "hold_claim_p99_ms_worst": worst("hold", "claim_p99_ms"),
        "baseline_pickup_p99_ms": med("baseline", "pickup_p99_ms"),
        "hold_pickup_p99_ms_worst": worst("hold", "pickup_p99_ms"),
        "hold_completions_per_s_min": worst("hold", "completions_per_s", min),
        "baseline_live_mib": statistics.median([w["live_mib"] for w in base] or [0]),
        "hold_live_mib_max": worst("hold", "live_mib"),
        "hold_dead_max": worst("hold", "dead_tuples"),
        "hold_side_mib_max": worst("hold", "side_mib"),
        "baseline_keyed_enqueue_p99_ms": med("baseline", "keyed_enqueue_p99_ms"),
        "hold_keyed_enqueue_p99_ms_worst": worst("hold", "keyed_enqueue_p99_ms"),
        "live_duplicate_keys_max": max((w["live_duplicate_keys"] for w in ws), default=0),
        "enqueued": round(sum(w["enqueued_per_s"] * float(w.get("span", WINDOW_S)) for w in ws)),
        "deduped": sum(w["deduped"] for w in ws),
        "load1_median": statistics.median([w["load1"] for w in ws] or [0]),
    }


def markdown(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    def f(x: float | None, spec: str = ".1f") -> str:
        return "-" if x is None else format(x, spec)

    out = [
        f"### {args.rate} jobs/s per candidate, {args.segments} segments rotated every {args.rotate_s:g} s"
        f" or {args.rotate_count:,} jobs; a REPEATABLE READ snapshot reading `{args.holder_reads}` held"
        f" {args.hold:g} s after a {args.baseline:g} s baseline\n",
        "| candidate | claim p50 ms: baseline → end of hold | claim p99 worst | pickup p99 ms: baseline → worst"
        " | fewest done/s in hold | live MiB: baseline → max | dead tuples max | dedupe/ring MiB max"
        " | keyed enqueue p99 ms: baseline → worst | TRUNCATE ok/tried (lock timeouts; skipped while held)"
        " | live dup keys |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = summary(r)
        t = r["truncate"]
        trunc = (
            f"{t['truncated']}/{t['attempts']} ({t['lock_timeouts']}; {t.get('skipped_held', 0)} skipped)"
            if r["candidate"] != "single"
            else "-"
        )
        out.append(
            f"| {r['candidate']} | {f(s['baseline_claim_p50_ms'], '.2f')} → {f(s['hold_claim_p50_ms_last'], '.2f')}"
            f" | {f(s['hold_claim_p99_ms_worst'])} | {f(s['baseline_pickup_p99_ms'], '.0f')} →"
            f" {f(s['hold_pickup_p99_ms_worst'], '.0f')} | {f(s['hold_completions_per_s_min'], '.0f')}"
            f" | {f(s['baseline_live_mib'], '.2f')} → {f(s['hold_live_mib_max'], '.2f')} | {f(s['hold_dead_max'], '.0f')}"
            f" | {f(s['hold_side_mib_max'], '.2f')} | {f(s['baseline_keyed_enqueue_p99_ms'])} →"
            f" {f(s['hold_keyed_enqueue_p99_ms_worst'])} | {trunc} | {s['live_duplicate_keys_max']} |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "drive":
        drive_main(*sys.argv[2:])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--candidates", default=",".join(CANDIDATES))
    p.add_argument("--rate", type=int, default=60, help="steady single enqueues per second, per candidate")
    p.add_argument("--segments", type=int, default=4)
    p.add_argument("--rotate-s", type=float, default=10.0, help="rotate the current segment after this long")
    p.add_argument("--rotate-count", type=int, default=2000, help="… or after this many jobs")
    p.add_argument("--lock-timeout-ms", type=int, default=20, help="the TRUNCATE's lock_timeout")
    p.add_argument("--tick-s", type=float, default=0.5, help="how often the rotator looks")
    p.add_argument("--holder-reads", choices=["other", "queue"], default="other")
    p.add_argument(
        "--look-first",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="skip a TRUNCATE attempt while pg_locks shows a transaction older than 1 s holding the segment",
    )
    p.add_argument("--baseline", type=float, default=60.0)
    p.add_argument("--hold", type=float, default=240.0)
    p.add_argument("--after", type=float, default=60.0)
    p.add_argument("--window-s", type=float, default=WINDOW_S, help="seconds per recorded window")
    p.add_argument("--port", type=int, default=5498)
    p.add_argument("--json", type=Path, help="default: benchmarks/results/rotation_lab-<time>.json")
    p.add_argument("--smoke", action="store_true", help="under 30 seconds at small sizes, to check it runs")
    p.add_argument("--explain", action="store_true", help="print each candidate's claim plan and exit")
    args = p.parse_args()
    if args.explain:
        with cluster(args.port) as admin:
            for c in args.candidates.split(","):
                print(f"-- {c}\n{explain(create(admin, c, args.segments), c, args.segments)}")
        return
    if args.smoke:
        args.rate, args.rotate_s, args.baseline, args.hold, args.after = 30, 3.0, 10.0, 5.0, 0.0
        args.window_s = 5.0
    candidates = args.candidates.split(",")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%MZ")
    out_json = args.json or (
        None if args.smoke else ROOT / "benchmarks" / "results" / f"rotation_lab-{stamp}.json"
    )
    started = time.time()
    with cluster(args.port) as admin:
        dsns = {c: create(admin, c, args.segments) for c in candidates}
        cfg = {
            "t0": time.time() + 1.0,
            **{
                k: getattr(args, k)
                for k in ("rate", "segments", "rotate_s", "rotate_count", "lock_timeout_ms")
            },
            **{
                k: getattr(args, k)
                for k in ("tick_s", "holder_reads", "look_first", "baseline", "hold", "after", "window_s")
            },
        }
        parts = {c: Path(f"/tmp/rotation_lab-{os.getpid()}-{c}.json") for c in candidates}
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.rotation_lab",
                    "drive",
                    c,
                    dsns[c],
                    json.dumps(cfg),
                    str(parts[c]),
                ],
                cwd=ROOT,
            )
            for c in candidates
        ]
        codes = [proc.wait() for proc in procs]
        results = [
            json.loads(parts[c].read_text()) for c, code in zip(candidates, codes, strict=True) if code == 0
        ]
        for part in parts.values():
            part.unlink(missing_ok=True)
    if len(results) != len(candidates):
        raise SystemExit(f"a candidate's run failed (exit codes {codes})")
    print(markdown(results, args))
    for r in results:
        if r["error_count"]:
            print(f"{r['candidate']}: {r['error_count']} errors, e.g. {r['errors'][:3]}", file=sys.stderr)
    print(f"wall time {time.time() - started:.0f} s", file=sys.stderr)
    if out_json:
        out_json.write_text(
            json.dumps(
                {
                    "when": stamp,
                    "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "cpus": os.cpu_count(),
                    "results": [{**r, "summary": summary(r)} for r in results],
                },
                indent=1,
                default=str,
            )
        )
        print(f"wrote {out_json}", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
