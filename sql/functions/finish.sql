-- sql/functions/finish.sql: Finishing attempts: complete, fail, release and the reaper of expired leases.
-- The current definitions (CREATE OR REPLACE), applied by the migrator in the order of
-- manifest.txt and re-applied when this file changes.

-- complete: finalize a batch of jobs as completed, each with an optional JSON result, moving
-- them to history and sending NOTIFY skiplock_done once per queue. Returns the ids that were
-- completed; a job whose lease token no longer matches (reaped, possibly re-claimed, or already
-- finalized) is skipped: a stale worker can never complete a newer attempt. Results larger than
-- skiplock.max_result_bytes (default 256 KiB) are replaced by {"truncated": true, "bytes": n}.
-- Concurrency: locks rows in id order (SELECT ... FOR UPDATE, one probe per id), then moves them,
-- found again by ctid, in one statement. When another transaction updated a row and committed
-- while this call waited for its lock (a heartbeat racing the worker's own completion batch),
-- FOR UPDATE locks the row's new version but the statement's snapshot cannot see it, so the move
-- matches nothing; for those rows the statement runs once more, with a new snapshot that sees
-- the version it holds locked. complete, release, heartbeat and set_progress all work this way.
-- Cost: one DELETE ... RETURNING -> INSERT into history.
CREATE OR REPLACE FUNCTION skiplock.complete(
    job_ids      bigint[],
    lease_tokens uuid[],
    results      jsonb[]     DEFAULT NULL,
    as_of        timestamptz DEFAULT now()
)
RETURNS SETOF bigint
LANGUAGE plpgsql
-- Its plan is the same whatever the arrays hold (a primary-key probe per id, see below): plan it
-- once per session. Re-planned per call (a custom plan: the CTEs and the insert into the
-- partitioned history), a one-job completion took 1.2 ms instead of 0.3.
SET plan_cache_mode = force_generic_plan
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
            RETURNING j AS job, l.result
        ),
        archived AS (
            INSERT INTO skiplock.job_history
            SELECT (skiplock._history_row(
                d.job, 'completed', complete.as_of,
                result => CASE WHEN d.result IS NULL
                                 OR pg_column_size(d.result) <= skiplock._setting('max_result_bytes', 262144)
                               THEN d.result
                               ELSE jsonb_build_object('truncated', true, 'bytes', pg_column_size(d.result))
                          END)).*
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

-- fail: record a failed attempt. The job goes back to the queue as retryable at as_of plus
-- retry_in, else its own retry policy's delay (retry_delay), else skiplock.backoff(attempt), while
-- attempts remain and `retryable` is true; otherwise it moves to history as failed (or cancelled,
-- when a cancel was requested while it ran) and NOTIFY skiplock_done is sent. Returns the job's
-- new state, or NULL when the lease token does not match (the attempt was reaped or already
-- finalized; nothing is changed). A negative retry_in raises 22023.
-- Concurrency: one row lock. Cost: one UPDATE, or one DELETE -> INSERT into history.
CREATE OR REPLACE FUNCTION skiplock.fail(
    job_id      bigint,
    lease_token uuid,
    error       text,
    error_type  text        DEFAULT NULL,
    traceback   text        DEFAULT NULL,
    retry_in    interval    DEFAULT NULL,
    retryable   boolean     DEFAULT true,
    as_of       timestamptz DEFAULT now()
)
RETURNS skiplock.job_state
LANGUAGE plpgsql
AS $$
DECLARE
    j         skiplock.job;
    new_state skiplock.job_state;
BEGIN
    SELECT * INTO j FROM skiplock.job AS x
    WHERE x.id = fail.job_id AND x.lease_token = fail.lease_token AND x.state = 'running'
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF fail.retry_in IS NOT NULL AND fail.retry_in < interval '0' THEN
        PERFORM skiplock._invalid(format('retry_in must not be negative, got %s', justify_interval(fail.retry_in)));
    END IF;

    j.errors := j.errors || jsonb_build_array(skiplock._error_entry(
        j.attempt, j.worker_id, fail.as_of, fail.error, fail.error_type, fail.traceback));

    IF fail.retryable AND j.attempt < j.max_attempts AND NOT j.cancel_requested THEN
        UPDATE skiplock.job AS x
        SET state = 'retryable',
            run_at = fail.as_of + COALESCE(fail.retry_in, skiplock.retry_delay(j.retry_policy, j.attempt),
                                           skiplock.backoff(j.attempt)),
            lease_token = NULL, lease_expires_at = NULL,
            errors = j.errors
        WHERE x.id = j.id;
        RETURN 'retryable';
    END IF;

    new_state := CASE WHEN j.cancel_requested THEN 'cancelled' ELSE 'failed' END;
    DELETE FROM skiplock.job AS x WHERE x.id = j.id;
    INSERT INTO skiplock.job_history SELECT (skiplock._history_row(j, new_state, fail.as_of)).*;
    PERFORM skiplock._notify_done(ARRAY[j.queue]);
    RETURN new_state;
END;
$$;

-- release: give leased jobs back to the queue without spending an attempt (graceful shutdown,
-- prefetched jobs never started). They keep their run_at, so they keep their place in line. A job
-- whose cancellation was requested ends as cancelled instead. Returns the ids released; stale
-- tokens are skipped.
-- Concurrency: locks rows in id order, with the second pass described at complete. Cost: one
-- UPDATE per job and one NOTIFY per queue.
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
            RETURNING j AS job
        ),
        archived AS (
            INSERT INTO skiplock.job_history
            SELECT (skiplock._history_row(r.job, 'cancelled', now())).*
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

-- reap: return jobs whose lease expired (their worker died, stalled or lost its connection)
-- to the queue as available, attempt kept (it was spent), or to history as failed when their
-- attempts are used up (or cancelled, when a cancel was requested). Returns each job touched
-- with its new state. Also forgets workers whose heartbeat is older than worker_ttl.
-- Concurrency: safe from any number of workers at once: rows are taken with
-- FOR UPDATE SKIP LOCKED and re-checked, so a job completed or re-leased meanwhile is never
-- touched. Cost: a scan of running jobs (job_running_idx), at most max_jobs rows written.
CREATE OR REPLACE FUNCTION skiplock.reap(
    max_jobs   integer     DEFAULT 1000,
    worker_ttl interval    DEFAULT '10 minutes',
    as_of      timestamptz DEFAULT now()
)
RETURNS TABLE (job_id bigint, state skiplock.job_state)
LANGUAGE plpgsql
AS $$
BEGIN
    DELETE FROM skiplock.worker AS w WHERE w.heartbeat_at < reap.as_of - reap.worker_ttl;

    RETURN QUERY
    WITH expired AS MATERIALIZED (
        SELECT j.id FROM skiplock.job AS j
        WHERE j.state = 'running' AND j.lease_expires_at < reap.as_of
        ORDER BY j.id
        LIMIT reap.max_jobs
        FOR UPDATE SKIP LOCKED
    ),
    noted AS (
        SELECT j.*,
               j.errors || jsonb_build_array(skiplock._error_entry(
                   j.attempt, j.worker_id, reap.as_of,
                   format('lease expired at %s (worker %s stopped heartbeating)', j.lease_expires_at, j.worker_id),
                   'LeaseExpired', NULL)) AS new_errors,
               (j.attempt >= j.max_attempts OR j.cancel_requested) AS is_final
        FROM skiplock.job AS j
        JOIN expired AS e ON e.id = j.id
    ),
    requeued AS (
        UPDATE skiplock.job AS j
        SET state = 'available', run_at = reap.as_of,
            lease_token = NULL, lease_expires_at = NULL, worker_id = NULL,
            errors = n.new_errors
        FROM noted AS n
        WHERE j.id = n.id AND NOT n.is_final
        RETURNING j.id, j.state, j.queue
    ),
    removed AS (
        DELETE FROM skiplock.job AS j
        USING noted AS n
        WHERE j.id = n.id AND n.is_final
        RETURNING j AS job
    ),
    archived AS (
        INSERT INTO skiplock.job_history
        SELECT (skiplock._history_row(
            r.job, CASE WHEN n.cancel_requested THEN 'cancelled' ELSE 'failed' END::skiplock.job_state,
            reap.as_of, errors => n.new_errors)).*
        FROM noted AS n
        JOIN removed AS r ON (r.job).id = n.id
        RETURNING job_history.id, job_history.state
    ),
    woken AS (
        SELECT skiplock._notify(array_agg(r.queue)) AS n FROM requeued AS r
    )
    SELECT r.id, r.state FROM requeued AS r, woken
    UNION ALL
    SELECT a.id, a.state FROM archived AS a;
END;
$$;
