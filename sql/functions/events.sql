-- sql/functions/events.sql: Lifecycle events (opt-in NOTIFYs).
-- The current definitions (CREATE OR REPLACE), applied by the migrator in the order of
-- manifest.txt and re-applied when this file changes.

-- Job lifecycle events as NOTIFYs on channel skiplock_event, opt-in.
--
-- Payload: '<event>:<queue>', one per event kind and queue per transaction (NOTIFY folds
-- identical payloads), never job data: listeners read what they need from the views. Events:
--   enqueued   jobs were inserted (due now or later)
--   started    jobs were claimed
--   progress   running jobs reported progress
--   retried    an attempt failed and the job will run again (or a lease expired and it was reaped)
--   completed / failed / cancelled   jobs reached that final state
--
-- The events come from statement-level triggers with transition tables on skiplock.job and
-- skiplock.job_history, which exist only while events are enabled (enable_events() /
-- disable_events()): a database that does not use them pays nothing, and one that does pays a
-- scan of each statement's changed rows plus one NOTIFY per kind and queue. Every NOTIFY takes
-- the notification queue's lock at commit, so enable them where someone listens.

-- The trigger functions call only pg_notify (executable by anyone): they run with the rights of
-- whoever changed the rows, and a worker or producer role holds no EXECUTE on skiplock helpers.
CREATE OR REPLACE FUNCTION skiplock._events_job_insert()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('skiplock_event', 'enqueued:' || q.queue)
    FROM (SELECT DISTINCT n.queue FROM new_rows AS n) AS q;
    RETURN NULL;
END;
$$;

-- _events_job_update: started, retried and progress, from the old and new rows of an UPDATE.
CREATE OR REPLACE FUNCTION skiplock._events_job_update()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('skiplock_event', c.event || ':' || c.queue)
    FROM (
        SELECT DISTINCT n.queue,
               CASE WHEN n.state = 'running' AND o.state <> 'running' THEN 'started'
                    WHEN n.state = 'retryable' AND o.state = 'running' THEN 'retried'
                    -- reaped: back to available with the attempt spent (a release gives it back)
                    WHEN n.state = 'available' AND o.state = 'running' AND n.attempt = o.attempt THEN 'retried'
                    WHEN n.state = 'running' AND n.progress IS DISTINCT FROM o.progress THEN 'progress'
               END AS event
        FROM new_rows AS n JOIN old_rows AS o ON o.id = n.id
    ) AS c
    WHERE c.event IS NOT NULL;
    RETURN NULL;
END;
$$;

-- _events_history_insert: completed, failed and cancelled, from the rows inserted into history.
CREATE OR REPLACE FUNCTION skiplock._events_history_insert()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('skiplock_event', f.state::text || ':' || f.queue)
    FROM (SELECT DISTINCT n.state, n.queue FROM new_rows AS n) AS f;
    RETURN NULL;
END;
$$;

-- enable_events: start emitting lifecycle events on channel skiplock_event (creates the
-- triggers). Idempotent; returns true. Takes a brief lock on the two tables.
CREATE OR REPLACE FUNCTION skiplock.enable_events()
RETURNS boolean
LANGUAGE plpgsql
SET lock_timeout = '5s'
AS $$
BEGIN
    IF to_regclass('skiplock.job') IS NULL THEN
        RETURN false;
    END IF;
    DROP TRIGGER IF EXISTS skiplock_events_insert ON skiplock.job;
    DROP TRIGGER IF EXISTS skiplock_events_update ON skiplock.job;
    DROP TRIGGER IF EXISTS skiplock_events_finish ON skiplock.job_history;
    CREATE TRIGGER skiplock_events_insert AFTER INSERT ON skiplock.job
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION skiplock._events_job_insert();
    CREATE TRIGGER skiplock_events_update AFTER UPDATE ON skiplock.job
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION skiplock._events_job_update();
    CREATE TRIGGER skiplock_events_finish AFTER INSERT ON skiplock.job_history
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION skiplock._events_history_insert();
    RETURN true;
END;
$$;

-- disable_events: stop emitting lifecycle events (drops the triggers). Idempotent; returns
-- whether events were enabled.
CREATE OR REPLACE FUNCTION skiplock.disable_events()
RETURNS boolean
LANGUAGE plpgsql
SET lock_timeout = '5s'
AS $$
DECLARE
    was boolean := EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'skiplock_events_insert'
                           AND tgrelid = 'skiplock.job'::regclass);
BEGIN
    DROP TRIGGER IF EXISTS skiplock_events_insert ON skiplock.job;
    DROP TRIGGER IF EXISTS skiplock_events_update ON skiplock.job;
    DROP TRIGGER IF EXISTS skiplock_events_finish ON skiplock.job_history;
    RETURN was;
END;
$$;
