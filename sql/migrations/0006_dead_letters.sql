-- 0006_dead_letters: redrive and purge the dead-letter set (failed jobs in history) by filter.
--
-- Migrations note: new functions only.

-- retry_failed: run again the failed jobs matching every filter given (NULL: any), oldest
-- failure first, at most max_jobs of them; returns their ids. They come back `available` with
-- their attempt count reset and their error history kept (see retry()).
-- Cost: a scan of the dead-letter index (queue, finished_at), never of all history.
CREATE FUNCTION skiplock.retry_failed(
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
CREATE FUNCTION skiplock.purge(
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
