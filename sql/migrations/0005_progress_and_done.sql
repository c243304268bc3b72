-- 0005_progress_and_done: job progress, and a notification when jobs finish.
--
-- Progress: a running job may report how far it got (0-100) and a short message; workers send
-- what their tasks reported in batches (set_progress), at most about once a second, so a task
-- may report in a hot loop. The columns change no indexed column: updates stay HOT.
-- Done: complete(), and fail() when it ends a job, send NOTIFY skiplock_done with the job's queue
-- (once per queue per statement), so a client waiting for a result wakes at once instead of
-- polling; waiters still poll as a fallback.
--
-- Migrations note: adds two nullable columns to skiplock.job (no rewrite); replaces complete(),
-- fail() and the jobs view (same signatures; the view gains two columns at the end).

ALTER TABLE skiplock.job
    ADD COLUMN progress         double precision,
    ADD COLUMN progress_message text,
    ADD CONSTRAINT job_progress_range CHECK (progress BETWEEN 0 AND 100);

-- _notify_done: one NOTIFY per distinct queue on skiplock_done.
CREATE FUNCTION skiplock._notify_done(queues text[])
RETURNS integer
LANGUAGE sql
AS $$
    SELECT count(pg_notify('skiplock_done', q))::integer FROM (SELECT DISTINCT unnest(_notify_done.queues) AS q) AS d;
$$;

-- set_progress: record the progress of running jobs whose lease tokens match; returns the ids
-- updated. progress must be within 0..100 (22023 otherwise, nothing changed); messages are cut
-- to 1,000 characters. Locks in id order.
CREATE FUNCTION skiplock.set_progress(
    job_ids      bigint[],
    lease_tokens uuid[],
    progress     double precision[],
    messages     text[] DEFAULT NULL
)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
DECLARE
    bad double precision;
BEGIN
    SELECT p INTO bad FROM unnest(set_progress.progress) AS p
    WHERE p IS NULL OR p < 0 OR p > 100 OR p = 'NaN' LIMIT 1;
    IF FOUND THEN
        PERFORM skiplock._invalid(format('progress must be between 0 and 100, got %s', COALESCE(bad::text, 'NULL')));
    END IF;
    RETURN QUERY
    WITH input AS MATERIALIZED (
        SELECT u.id, u.lease_token, u.progress, left(u.message, 1000) AS message
        FROM unnest(set_progress.job_ids, set_progress.lease_tokens, set_progress.progress, set_progress.messages)
             AS u(id, lease_token, progress, message)
        ORDER BY u.id
    ),
    locked AS MATERIALIZED (
        SELECT j.ctid AS tid, i.progress, i.message
        FROM input AS i
        CROSS JOIN LATERAL (
            SELECT x.ctid FROM skiplock.job AS x
            WHERE x.id = i.id AND x.lease_token = i.lease_token AND x.state = 'running'
            FOR UPDATE
        ) AS j
    )
    UPDATE skiplock.job AS j
    SET progress = l.progress, progress_message = l.message
    FROM locked AS l
    WHERE j.ctid = l.tid
    RETURNING j.id;
END;
$$;

-- complete: as before (0001), plus the skiplock_done notification.
CREATE OR REPLACE FUNCTION skiplock.complete(
    job_ids      bigint[],
    lease_tokens uuid[],
    results      jsonb[]     DEFAULT NULL,
    as_of        timestamptz DEFAULT now()
)
RETURNS SETOF bigint
LANGUAGE sql
AS $$
    WITH input AS MATERIALIZED (
        SELECT u.id, u.lease_token, u.result
        FROM unnest(complete.job_ids, complete.lease_tokens, complete.results) AS u(id, lease_token, result)
        ORDER BY u.id
    ),
    locked AS MATERIALIZED (
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
        USING locked AS l
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
    SELECT a.id FROM archived AS a, woken;
$$;

-- fail: as before (0001), plus the skiplock_done notification when the job ends.
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
        PERFORM skiplock._invalid(format('retry_in must not be negative, got %s', fail.retry_in));
    END IF;

    j.errors := j.errors || jsonb_build_array(skiplock._error_entry(
        j.attempt, j.worker_id, fail.as_of, fail.error, fail.error_type, fail.traceback));

    IF fail.retryable AND j.attempt < j.max_attempts AND NOT j.cancel_requested THEN
        UPDATE skiplock.job AS x
        SET state = 'retryable',
            run_at = fail.as_of + COALESCE(fail.retry_in, skiplock.backoff(j.attempt)),
            lease_token = NULL, lease_expires_at = NULL,
            errors = j.errors
        WHERE x.id = j.id;
        RETURN 'retryable';
    END IF;

    new_state := CASE WHEN j.cancel_requested THEN 'cancelled' ELSE 'failed' END;
    DELETE FROM skiplock.job AS x WHERE x.id = j.id;
    INSERT INTO skiplock.job_history (id, queue, task, args, state, priority, attempt, max_attempts,
                                      run_at, created_at, attempted_at, worker_id, dedupe_key,
                                      errors, finished_at, result)
    VALUES (j.id, j.queue, j.task, j.args, new_state, j.priority, j.attempt, j.max_attempts,
            j.run_at, j.created_at, j.attempted_at, j.worker_id, j.dedupe_key,
            j.errors, fail.as_of, NULL);
    PERFORM skiplock._notify_done(ARRAY[j.queue]);
    RETURN new_state;
END;
$$;

-- jobs: as before (0001), plus progress (live jobs only).
CREATE OR REPLACE VIEW skiplock.jobs AS
    SELECT j.id, j.queue, j.task, j.args, j.state, j.priority, j.attempt, j.max_attempts,
           j.run_at, j.created_at, j.attempted_at, j.lease_expires_at, j.worker_id, j.dedupe_key,
           j.cancel_requested, j.errors, NULL::timestamptz AS finished_at, NULL::jsonb AS result,
           j.progress, j.progress_message
    FROM skiplock.job AS j
    UNION ALL
    SELECT h.id, h.queue, h.task, h.args, h.state, h.priority, h.attempt, h.max_attempts,
           h.run_at, h.created_at, h.attempted_at, NULL, h.worker_id, h.dedupe_key,
           false, h.errors, h.finished_at, h.result, NULL, NULL
    FROM skiplock.job_history AS h;
