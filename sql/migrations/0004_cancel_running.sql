-- 0004_cancel_running: tell workers at once when a running job is cancelled, and never run a
-- cancelled job again.
--
-- cancel() of a running job sets cancel_requested (as before) and now also sends
-- NOTIFY skiplock_cancel with the job id, so the worker holding it can stop it: an async task is
-- cancelled, a sync task sees current_job().cancel_requested. Workers also poll for the flag with
-- their heartbeats, so a lost notification only delays the stop.
-- release() of a job whose cancellation was requested (a worker shutting down, or stopping it)
-- ends it as cancelled instead of returning it to its queue.
--
-- Migrations note: replaces cancel() and release(); same signatures and results.

CREATE OR REPLACE FUNCTION skiplock.cancel(
    job_ids bigint[],
    as_of   timestamptz DEFAULT now()
)
RETURNS TABLE (job_id bigint, state skiplock.job_state)
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY
    WITH locked AS MATERIALIZED (
        SELECT j.id, j.state FROM skiplock.job AS j
        WHERE j.id = ANY (cancel.job_ids)
        ORDER BY j.id
        FOR UPDATE
    ),
    flagged AS (
        UPDATE skiplock.job AS j SET cancel_requested = true
        FROM locked AS l
        WHERE j.id = l.id AND l.state = 'running'
        RETURNING j.id, j.state
    ),
    removed AS (
        DELETE FROM skiplock.job AS j
        USING locked AS l
        WHERE j.id = l.id AND l.state <> 'running'
        RETURNING j.*
    ),
    archived AS (
        INSERT INTO skiplock.job_history (id, queue, task, args, state, priority, attempt, max_attempts,
                                          run_at, created_at, attempted_at, worker_id, dedupe_key,
                                          errors, finished_at, result)
        SELECT r.id, r.queue, r.task, r.args, 'cancelled', r.priority, r.attempt, r.max_attempts,
               r.run_at, r.created_at, r.attempted_at, r.worker_id, r.dedupe_key, r.errors,
               cancel.as_of, NULL
        FROM removed AS r
        RETURNING job_history.id, job_history.state
    ),
    finished AS (
        SELECT h.id, h.state FROM skiplock.job_history AS h
        WHERE h.id = ANY (cancel.job_ids)
          AND NOT EXISTS (SELECT 1 FROM locked AS l WHERE l.id = h.id)
    )
    SELECT f.id, f.state FROM flagged AS f
    UNION ALL SELECT a.id, a.state FROM archived AS a
    UNION ALL SELECT h.id, h.state FROM finished AS h;

    -- Tell the workers holding them (delivered at commit; identical payloads are sent once).
    PERFORM pg_notify('skiplock_cancel', j.id::text)
    FROM skiplock.job AS j
    WHERE j.id = ANY (cancel.job_ids) AND j.state = 'running' AND j.cancel_requested;
END;
$$;

CREATE OR REPLACE FUNCTION skiplock.release(
    job_ids      bigint[],
    lease_tokens uuid[]
)
RETURNS SETOF bigint
LANGUAGE sql
AS $$
    -- The same per-id locking probe (and ctid step) as complete(): linear in the batch, locks in id order.
    WITH input AS MATERIALIZED (
        SELECT u.id, u.lease_token
        FROM unnest(release.job_ids, release.lease_tokens) AS u(id, lease_token)
        ORDER BY u.id
    ),
    locked AS MATERIALIZED (
        SELECT j.ctid AS tid, j.cancel_requested
        FROM input AS i
        CROSS JOIN LATERAL (
            SELECT x.ctid, x.cancel_requested FROM skiplock.job AS x
            WHERE x.id = i.id AND x.lease_token = i.lease_token AND x.state = 'running'
            FOR UPDATE
        ) AS j
    ),
    released AS (
        UPDATE skiplock.job AS j
        SET state = 'available',
            attempt = greatest(j.attempt - 1, 0),
            lease_token = NULL, lease_expires_at = NULL, worker_id = NULL
        FROM locked
        WHERE j.ctid = locked.tid AND NOT locked.cancel_requested
        RETURNING j.id, j.queue
    ),
    removed AS (
        DELETE FROM skiplock.job AS j
        USING locked
        WHERE j.ctid = locked.tid AND locked.cancel_requested
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
    SELECT r.id FROM released AS r, woken
    UNION ALL
    SELECT a.id FROM archived AS a;
$$;
