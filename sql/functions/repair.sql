-- sql/functions/repair.sql: Operator actions: cancel, retry, redrive and purge the dead-letter set.
-- The current definitions (CREATE OR REPLACE), applied by the migrator in the order of
-- manifest.txt and re-applied when this file changes.

-- cancel: cancel jobs. Jobs not yet running move to history as cancelled and never run. A
-- running job is marked cancel_requested and NOTIFY skiplock_cancel is sent with its id, so the
-- worker holding it can stop it (an async task is cancelled, a sync task sees
-- current_job().cancel_requested; workers also poll the flag with their heartbeats). Its current
-- attempt ends it as cancelled: it is not retried, and a release ends it too. Returns each known
-- id with its state after the call; finished jobs are reported unchanged (a no-op, not an error).
-- Concurrency: row locks in id order. Cost: one move per cancelled job.
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
        RETURNING j AS job
    ),
    archived AS (
        INSERT INTO skiplock.job_history
        SELECT (skiplock._history_row(r.job, 'cancelled', cancel.as_of)).*
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

-- retry: run jobs again now. Failed and cancelled jobs come back from history as available
-- with a fresh set of attempts (their error history is kept); scheduled and retryable jobs
-- become due at once. Returns the ids affected; ids that are running, completed or unknown are
-- ignored. A failed job whose dedupe_key is now held by another live job stays in history.
-- A job brought back that has parents waits again for the ones still live (and only for those:
-- a parent that failed no longer holds it back, the caller chose to run it), and its edges from
-- them are unresolved again.
-- Concurrency: row locks in id order. Cost: one move per job, one NOTIFY per queue.
CREATE OR REPLACE FUNCTION skiplock.retry(
    job_ids bigint[],
    as_of   timestamptz DEFAULT now()
)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
DECLARE
    out_ids bigint[];
    revived bigint[];
BEGIN
    WITH live AS MATERIALIZED (
        SELECT j.id FROM skiplock.job AS j
        WHERE j.id = ANY (retry.job_ids) AND j.state IN ('scheduled', 'retryable')
        ORDER BY j.id
        FOR UPDATE
    ),
    made_due AS (
        UPDATE skiplock.job AS j SET state = 'available', run_at = retry.as_of
        FROM live WHERE j.id = live.id
        RETURNING j.id, j.queue
    ),
    dead AS MATERIALIZED (
        SELECT h.* FROM skiplock.job_history AS h
        WHERE h.id = ANY (retry.job_ids) AND h.state IN ('failed', 'cancelled')
        ORDER BY h.id
        FOR UPDATE
    ),
    back AS (
        INSERT INTO skiplock.job (id, queue, task, args, state, priority, attempt, max_attempts,
                                  run_at, created_at, dedupe_key, errors)
        SELECT d.id, d.queue, d.task, d.args, 'available', d.priority, 0, d.max_attempts,
               retry.as_of, d.created_at, d.dedupe_key, d.errors
        FROM dead AS d
        ON CONFLICT DO NOTHING
        RETURNING id, queue
    ),
    unarchived AS (
        DELETE FROM skiplock.job_history AS h
        USING back AS r
        WHERE h.id = r.id
        RETURNING h.id
    ),
    woken AS (
        SELECT skiplock._notify(array_agg(x.queue)) AS n
        FROM (SELECT queue FROM made_due UNION ALL SELECT queue FROM back) AS x
    )
    SELECT array_agg(x.id), (SELECT array_agg(u.id) FROM unarchived AS u)
    INTO out_ids, revived
    FROM (SELECT m.id FROM made_due AS m, woken UNION ALL SELECT u.id FROM unarchived AS u) AS x;

    IF revived IS NOT NULL AND EXISTS (SELECT 1 FROM skiplock.job_dependency AS d WHERE d.child_id = ANY (revived)) THEN
        -- New statements: they see the jobs revived above (parents included).
        UPDATE skiplock.job_dependency AS d
        SET resolved = NOT EXISTS (SELECT 1 FROM skiplock.job AS p WHERE p.id = d.parent_id)
        WHERE d.child_id = ANY (revived);
        UPDATE skiplock.job AS j
        SET pending_parents = c.pending, state = 'waiting'
        FROM (SELECT d.child_id, count(*) AS pending FROM skiplock.job_dependency AS d
              WHERE d.child_id = ANY (revived) AND NOT d.resolved GROUP BY d.child_id) AS c
        WHERE j.id = c.child_id;
    END IF;
    RETURN QUERY SELECT unnest(out_ids);
END;
$$;

-- The dead-letter set (failed jobs in history): redrive and purge by filter.

-- retry_failed: run again the failed jobs matching every filter given (NULL: any), oldest
-- failure first, at most max_jobs of them; returns their ids. They come back `available` with
-- their attempt count reset and their error history kept (see retry()).
-- Cost: a scan of the dead-letter index (queue, finished_at), never of all history.
CREATE OR REPLACE FUNCTION skiplock.retry_failed(
    queue    text        DEFAULT NULL,
    task     text        DEFAULT NULL,
    since    timestamptz DEFAULT NULL,
    max_jobs integer     DEFAULT 10000,
    as_of    timestamptz DEFAULT now()
)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
BEGIN
    IF retry_failed.max_jobs IS NULL OR retry_failed.max_jobs NOT BETWEEN 1 AND skiplock._setting('max_batch_size', 10000) THEN
        PERFORM skiplock._invalid(format('max_jobs must be between 1 and %s, got %s',
                                         skiplock._setting('max_batch_size', 10000), retry_failed.max_jobs));
    END IF;
    RETURN QUERY
    SELECT r.id
    FROM skiplock.retry(ARRAY(
        SELECT h.id FROM skiplock.job_history AS h
        WHERE h.state = 'failed'
          AND (retry_failed.queue IS NULL OR h.queue = retry_failed.queue)
          AND (retry_failed.task IS NULL OR h.task = retry_failed.task)
          AND (retry_failed.since IS NULL OR h.finished_at >= retry_failed.since)
        ORDER BY h.finished_at, h.id
        LIMIT retry_failed.max_jobs
    ), retry_failed.as_of) AS r(id);
END;
$$;

-- purge: delete finished jobs in `states` (default: the dead-letter set) matching every filter
-- given, finished before `before` (default: now), at most max_jobs per call; returns how many.
-- Deliberate and final: a purged job is gone. Old history is better dropped by partition
-- (drop_partitions); purge is for a dead-letter set you have looked at and decided about.
CREATE OR REPLACE FUNCTION skiplock.purge(
    queue    text                 DEFAULT NULL,
    task     text                 DEFAULT NULL,
    before   timestamptz          DEFAULT now(),
    states   skiplock.job_state[] DEFAULT '{failed}',
    max_jobs integer              DEFAULT 10000
)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    n bigint;
BEGIN
    IF purge.max_jobs IS NULL OR purge.max_jobs NOT BETWEEN 1 AND 1000000 THEN
        PERFORM skiplock._invalid(format('max_jobs must be between 1 and 1000000, got %s', purge.max_jobs));
    END IF;
    IF purge.states IS NULL OR cardinality(purge.states) = 0
       OR NOT purge.states <@ ARRAY['completed', 'failed', 'cancelled']::skiplock.job_state[] THEN
        PERFORM skiplock._invalid(format('states must be finished states (completed, failed, cancelled), got %s',
                                         purge.states));
    END IF;
    WITH doomed AS (
        SELECT h.id, h.finished_at FROM skiplock.job_history AS h
        WHERE h.state = ANY (purge.states)
          AND (purge.queue IS NULL OR h.queue = purge.queue)
          AND (purge.task IS NULL OR h.task = purge.task)
          AND h.finished_at < COALESCE(purge.before, now())
        ORDER BY h.finished_at
        LIMIT purge.max_jobs
    ),
    gone AS (
        DELETE FROM skiplock.job_history AS h
        USING doomed AS d
        WHERE h.id = d.id AND h.finished_at = d.finished_at
        RETURNING 1
    )
    SELECT count(*) INTO n FROM gone;
    RETURN n;
END;
$$;
