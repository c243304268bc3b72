-- 0012_locked_rows_new_version: complete, heartbeat, release and set_progress could skip a job
-- whose lease the caller still held.
--
-- Each locks its rows in id order (SELECT ... FOR UPDATE, one probe per id), then changes them
-- found again by ctid, in one statement. When another transaction updated a row and committed
-- while the call waited for its lock (a heartbeat racing the worker's own completion batch, say),
-- FOR UPDATE locks the row's new version, but the statement's snapshot, taken before that commit,
-- cannot see the new version: the change by ctid matched nothing and the job was reported as
-- lost. The worker then dropped a job it had finished; its lease expired and it ran again.
--
-- Now each function runs that statement and, for the rows it locked but could not change, runs it
-- once more: a new statement has a new snapshot that sees the version it already holds locked,
-- and no one else can change a row it holds, so the second pass always finishes the job. The
-- common case (no concurrent update) costs what it did.
--
-- Migrations note: replaces the four functions (same signatures; complete and heartbeat become
-- plpgsql). Takes no table locks.

CREATE OR REPLACE FUNCTION skiplock.complete(
    job_ids      bigint[],
    lease_tokens uuid[],
    results      jsonb[]     DEFAULT NULL,
    as_of        timestamptz DEFAULT now()
)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
DECLARE
    ids     bigint[] := complete.job_ids;
    tokens  uuid[]   := complete.lease_tokens;
    res     jsonb[]  := complete.results;
    locked  bigint[];
    changed bigint[];
BEGIN
    FOR pass IN 1..2 LOOP
        WITH input AS MATERIALIZED (
            SELECT u.id, u.lease_token, u.result
            FROM unnest(ids, tokens, res) AS u(id, lease_token, result)
            ORDER BY u.id
        ),
        held AS MATERIALIZED (
            SELECT j.id, j.ctid AS tid, i.result
            FROM input AS i
            CROSS JOIN LATERAL (
                SELECT x.id, x.ctid FROM skiplock.job AS x
                WHERE x.id = i.id AND x.lease_token = i.lease_token AND x.state = 'running'
                FOR UPDATE
            ) AS j
        ),
        done AS (
            DELETE FROM skiplock.job AS j
            USING held AS l
            WHERE j.ctid = l.tid
            RETURNING j.*, l.result
        ),
        archived AS (
            INSERT INTO skiplock.job_history (id, queue, task, args, state, priority, attempt, max_attempts,
                                              run_at, created_at, attempted_at, worker_id, dedupe_key,
                                              errors, finished_at, result)
            SELECT d.id, d.queue, d.task, d.args, 'completed', d.priority, d.attempt, d.max_attempts,
                   d.run_at, d.created_at, d.attempted_at, d.worker_id, d.dedupe_key, d.errors,
                   complete.as_of,
                   CASE WHEN d.result IS NULL
                          OR pg_column_size(d.result) <= skiplock._setting('max_result_bytes', 262144)
                        THEN d.result
                        ELSE jsonb_build_object('truncated', true, 'bytes', pg_column_size(d.result))
                   END
            FROM done AS d
            RETURNING job_history.id, job_history.queue
        ),
        woken AS (
            SELECT skiplock._notify_done(array_agg(a.queue)) AS n FROM archived AS a
        )
        SELECT (SELECT array_agg(l.id) FROM held AS l),
               (SELECT array_agg(a.id) FROM archived AS a, woken)
        INTO locked, changed;
        RETURN QUERY SELECT unnest(changed);
        EXIT WHEN COALESCE(cardinality(locked), 0) = COALESCE(cardinality(changed), 0);
        -- Rows locked in a version this statement could not see: finish them in a new one.
        SELECT array_agg(u.id), array_agg(u.lease_token), array_agg(u.result)
        INTO ids, tokens, res
        FROM unnest(ids, tokens, res) AS u(id, lease_token, result)
        WHERE u.id = ANY (locked) AND NOT u.id = ANY (COALESCE(changed, '{}'));
    END LOOP;
END;
$$;

CREATE OR REPLACE FUNCTION skiplock.heartbeat(
    job_ids      bigint[],
    lease_tokens uuid[],
    lease        interval    DEFAULT '30 seconds',
    as_of        timestamptz DEFAULT now()
)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
DECLARE
    ids     bigint[] := heartbeat.job_ids;
    tokens  uuid[]   := heartbeat.lease_tokens;
    locked  bigint[];
    changed bigint[];
BEGIN
    FOR pass IN 1..2 LOOP
        WITH input AS MATERIALIZED (
            SELECT u.id, u.lease_token
            FROM unnest(ids, tokens) AS u(id, lease_token)
            ORDER BY u.id
        ),
        held AS MATERIALIZED (
            SELECT j.id, j.ctid AS tid
            FROM input AS i
            CROSS JOIN LATERAL (
                SELECT x.id, x.ctid FROM skiplock.job AS x
                WHERE x.id = i.id AND x.lease_token = i.lease_token AND x.state = 'running'
                FOR UPDATE
            ) AS j
        ),
        extended AS (
            UPDATE skiplock.job AS j
            SET lease_expires_at = heartbeat.as_of + heartbeat.lease
            FROM held AS l
            WHERE j.ctid = l.tid
            RETURNING j.id
        )
        SELECT (SELECT array_agg(l.id) FROM held AS l), (SELECT array_agg(e.id) FROM extended AS e)
        INTO locked, changed;
        RETURN QUERY SELECT unnest(changed);
        EXIT WHEN COALESCE(cardinality(locked), 0) = COALESCE(cardinality(changed), 0);
        SELECT array_agg(u.id), array_agg(u.lease_token) INTO ids, tokens
        FROM unnest(ids, tokens) AS u(id, lease_token)
        WHERE u.id = ANY (locked) AND NOT u.id = ANY (COALESCE(changed, '{}'));
    END LOOP;
END;
$$;

CREATE OR REPLACE FUNCTION skiplock.release(
    job_ids      bigint[],
    lease_tokens uuid[]
)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
DECLARE
    ids     bigint[] := release.job_ids;
    tokens  uuid[]   := release.lease_tokens;
    locked  bigint[];
    changed bigint[];
BEGIN
    FOR pass IN 1..2 LOOP
        WITH input AS MATERIALIZED (
            SELECT u.id, u.lease_token
            FROM unnest(ids, tokens) AS u(id, lease_token)
            ORDER BY u.id
        ),
        held AS MATERIALIZED (
            SELECT j.id, j.ctid AS tid, j.cancel_requested
            FROM input AS i
            CROSS JOIN LATERAL (
                SELECT x.id, x.ctid, x.cancel_requested FROM skiplock.job AS x
                WHERE x.id = i.id AND x.lease_token = i.lease_token AND x.state = 'running'
                FOR UPDATE
            ) AS j
        ),
        released AS (
            UPDATE skiplock.job AS j
            SET state = 'available',
                attempt = greatest(j.attempt - 1, 0),
                lease_token = NULL, lease_expires_at = NULL, worker_id = NULL
            FROM held AS l
            WHERE j.ctid = l.tid AND NOT l.cancel_requested
            RETURNING j.id, j.queue
        ),
        removed AS (
            DELETE FROM skiplock.job AS j
            USING held AS l
            WHERE j.ctid = l.tid AND l.cancel_requested
            RETURNING j.*
        ),
        archived AS (
            INSERT INTO skiplock.job_history (id, queue, task, args, state, priority, attempt, max_attempts,
                                              run_at, created_at, attempted_at, worker_id, dedupe_key,
                                              errors, finished_at, result)
            SELECT r.id, r.queue, r.task, r.args, 'cancelled', r.priority, r.attempt, r.max_attempts,
                   r.run_at, r.created_at, r.attempted_at, r.worker_id, r.dedupe_key, r.errors, now(), NULL
            FROM removed AS r
            RETURNING job_history.id
        ),
        woken AS (
            SELECT skiplock._notify(array_agg(r.queue)) AS n FROM released AS r
        )
        SELECT (SELECT array_agg(l.id) FROM held AS l),
               (SELECT array_agg(x.id) FROM (SELECT r.id FROM released AS r, woken
                                             UNION ALL
                                             SELECT a.id FROM archived AS a) AS x)
        INTO locked, changed;
        RETURN QUERY SELECT unnest(changed);
        EXIT WHEN COALESCE(cardinality(locked), 0) = COALESCE(cardinality(changed), 0);
        SELECT array_agg(u.id), array_agg(u.lease_token) INTO ids, tokens
        FROM unnest(ids, tokens) AS u(id, lease_token)
        WHERE u.id = ANY (locked) AND NOT u.id = ANY (COALESCE(changed, '{}'));
    END LOOP;
END;
$$;

CREATE OR REPLACE FUNCTION skiplock.set_progress(
    job_ids      bigint[],
    lease_tokens uuid[],
    progress     double precision[],
    messages     text[] DEFAULT NULL
)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
DECLARE
    bad     double precision;
    ids     bigint[]           := set_progress.job_ids;
    tokens  uuid[]             := set_progress.lease_tokens;
    pcts    double precision[] := set_progress.progress;
    msgs    text[]             := set_progress.messages;
    locked  bigint[];
    changed bigint[];
BEGIN
    SELECT p INTO bad FROM unnest(pcts) AS p
    WHERE p IS NULL OR p < 0 OR p > 100 OR p = 'NaN' LIMIT 1;
    IF FOUND THEN
        PERFORM skiplock._invalid(format('progress must be between 0 and 100, got %s', COALESCE(bad::text, 'NULL')));
    END IF;
    FOR pass IN 1..2 LOOP
        WITH input AS MATERIALIZED (
            SELECT u.id, u.lease_token, u.progress, left(u.message, 1000) AS message
            FROM unnest(ids, tokens, pcts, msgs) AS u(id, lease_token, progress, message)
            ORDER BY u.id
        ),
        held AS MATERIALIZED (
            SELECT j.id, j.ctid AS tid, i.progress, i.message
            FROM input AS i
            CROSS JOIN LATERAL (
                SELECT x.id, x.ctid FROM skiplock.job AS x
                WHERE x.id = i.id AND x.lease_token = i.lease_token AND x.state = 'running'
                FOR UPDATE
            ) AS j
        ),
        reported AS (
            UPDATE skiplock.job AS j
            SET progress = l.progress, progress_message = l.message
            FROM held AS l
            WHERE j.ctid = l.tid
            RETURNING j.id
        )
        SELECT (SELECT array_agg(l.id) FROM held AS l), (SELECT array_agg(r.id) FROM reported AS r)
        INTO locked, changed;
        RETURN QUERY SELECT unnest(changed);
        EXIT WHEN COALESCE(cardinality(locked), 0) = COALESCE(cardinality(changed), 0);
        SELECT array_agg(u.id), array_agg(u.lease_token), array_agg(u.progress), array_agg(u.message)
        INTO ids, tokens, pcts, msgs
        FROM unnest(ids, tokens, pcts, msgs) AS u(id, lease_token, progress, message)
        WHERE u.id = ANY (locked) AND NOT u.id = ANY (COALESCE(changed, '{}'));
    END LOOP;
END;
$$;

SELECT * FROM skiplock._grant_roles();
