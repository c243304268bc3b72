-- sql/functions/lease.sql: Running jobs: lease extensions (heartbeat) and progress.
-- The current definitions (CREATE OR REPLACE), applied by the migrator in the order of
-- manifest.txt and re-applied when this file changes.

-- heartbeat: extend the leases of a batch of running jobs to as_of + lease. Returns the ids
-- whose lease was extended; a missing id means the worker lost that job (reaped or finalized)
-- and must not finalize it.
-- Concurrency: locks rows in id order with FOR NO KEY UPDATE (it changes no key): a producer
-- enqueueing a child holds FOR KEY SHARE on its live parents until it commits, and a batched
-- heartbeat must not wait for that transaction (its other jobs' leases would run out); complete,
-- fail and reap do wait, so a parent cannot finish before its new child is visible. Second pass
-- as at complete. Cost: one HOT UPDATE per job (no indexed column changes).
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
                FOR NO KEY UPDATE
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

-- set_progress: record the progress of running jobs whose lease tokens match; returns the ids
-- updated. progress must be within 0..100 (22023 otherwise, nothing changed); messages are cut
-- to 1,000 characters. Locks as heartbeat does (id order, FOR NO KEY UPDATE, second pass).
-- Cost: one HOT UPDATE per job.
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
                FOR NO KEY UPDATE
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
