-- sql/functions/copy.sql: Batch enqueue at COPY speed: a session's staging table, and one
-- set-based call that validates the staged jobs and moves them into skiplock.job.
-- The current definitions (CREATE OR REPLACE), applied by the migrator in the order of
-- manifest.txt and re-applied when this file changes.
--
-- The staging table is a temporary table, pg_temp.skiplock_job_stage, created once per session
-- by stage_jobs and emptied at every commit (ON COMMIT DELETE ROWS): sessions never see each
-- other's rows, nothing is WAL-logged, no batch id is needed, and a rollback takes the staged
-- rows with it. A caller runs, in ONE transaction (under PgBouncer transaction pooling a
-- transaction is the only unit that stays on one server connection):
--     SELECT skiplock.stage_jobs();
--     COPY pg_temp.skiplock_job_stage (ord, queue, task, args, ...) FROM STDIN;
--     SELECT * FROM skiplock.enqueue_staged();
-- The table is created by stage_jobs (SECURITY DEFINER), so it belongs to the owner of these
-- functions, and the caller may only INSERT into it: it cannot add a trigger or rule that
-- enqueue_staged would run with its owner's rights, and enqueue_staged refuses a table of that
-- name that its owner did not create.

-- stage_jobs: make sure this session's staging table exists and is empty, ready for a COPY.
-- Concurrency: per session (a temporary table). Cost: one catalog lookup; the first call of a
-- session creates the table (a few catalog rows).
-- SECURITY DEFINER with a pinned search_path: the table belongs to the owner (see above); the
-- caller needs PostgreSQL's default TEMPORARY privilege on the database.
CREATE OR REPLACE FUNCTION skiplock.stage_jobs()
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF to_regclass('pg_temp.skiplock_job_stage') IS NULL THEN
        CREATE TEMPORARY TABLE skiplock_job_stage (
            ord           bigint NOT NULL,  -- the job's position in the batch, 1..n
            queue         text,
            task          text,
            args          jsonb,
            priority      integer,
            run_at        timestamptz,
            delay         interval,
            max_attempts  integer,
            dedupe_key    text,
            dedupe_window interval,
            retry_policy  jsonb
        ) ON COMMIT DELETE ROWS;
        -- A temporary table is out of every other session's reach, so PUBLIC means "this
        -- session, whatever role it has SET": COPY needs INSERT, nothing else is granted.
        GRANT INSERT ON pg_temp.skiplock_job_stage TO PUBLIC;
        RETURN;
    END IF;
    PERFORM skiplock._check_stage();
    -- Rows left by an earlier batch of this transaction that was never enqueued.
    IF EXISTS (SELECT FROM pg_temp.skiplock_job_stage) THEN
        DELETE FROM pg_temp.skiplock_job_stage;
    END IF;
END;
$$;

-- _check_stage: raise unless pg_temp.skiplock_job_stage is the plain table stage_jobs created
-- (owned by the current user, the definer of the functions calling this).
CREATE OR REPLACE FUNCTION skiplock._check_stage()
RETURNS void
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    stage oid := to_regclass('pg_temp.skiplock_job_stage');
BEGIN
    IF stage IS NULL THEN
        PERFORM skiplock._invalid('no staged jobs: call skiplock.stage_jobs() first, in the same transaction');
    END IF;
    IF NOT EXISTS (SELECT FROM pg_class AS c
                   WHERE c.oid = stage AND c.relkind = 'r' AND c.relowner = current_user::regrole) THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = 'skiplock: pg_temp.skiplock_job_stage was not created by skiplock.stage_jobs()',
            HINT = 'drop it and call skiplock.stage_jobs()';
    END IF;
END;
$$;

-- enqueue_staged: enqueue every job in this session's staging table, empty the table, and
-- return the jobs' ids in the order of the `ord` column, which numbers the staged jobs 1..n
-- (their positions in the batch). The same jobs as enqueue_many with one array element per
-- staged row, and the same promises: NULL means the default; every row is validated before
-- anything is written, and a rejected call writes nothing, with a message naming the job by its
-- position (`(batch position 3)`); a job whose dedupe_key a live job holds (or, with a dedupe
-- window, a job that completed within it) is not inserted and that job's id is returned in its
-- place; one NOTIFY per distinct queue with a job due now. Batches with dedupe keys or windows
-- go through enqueue_many itself, so dedupe behaves exactly as there; parents (depends_on)
-- need enqueue_many.
-- Concurrency: any number of callers (each session stages its own rows). Cost: one scan of the
-- staged rows for counts and names, then one INSERT ... SELECT FROM (DELETE ... RETURNING).
-- SECURITY DEFINER with a pinned search_path, as enqueue_many.
CREATE OR REPLACE FUNCTION skiplock.enqueue_staged(as_of timestamptz DEFAULT now())
RETURNS SETOF bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_variable
DECLARE
    max_batch integer := skiplock._setting('max_batch_size', 10000);
    max_bytes integer := skiplock._setting('max_args_bytes', 262144);
    n         bigint;
    ords      bigint;
    first_ord bigint;
    last_ord  bigint;
    queues    text[];
    tasks     text[];
    keyed     boolean;
    policies  boolean;
    ids       bigint[];
BEGIN
    PERFORM skiplock._check_stage();
    SELECT count(*), count(DISTINCT s.ord), min(s.ord), max(s.ord),
           array_agg(DISTINCT s.queue), array_agg(DISTINCT s.task),
           bool_or(s.dedupe_key IS NOT NULL OR s.dedupe_window IS NOT NULL), bool_or(s.retry_policy IS NOT NULL)
    INTO n, ords, first_ord, last_ord, queues, tasks, keyed, policies
    FROM pg_temp.skiplock_job_stage AS s;
    IF n = 0 THEN
        RETURN;
    END IF;
    IF n > max_batch THEN
        PERFORM skiplock._invalid(format('batch of %s jobs exceeds the limit of %s', n, max_batch),
                                  'split the batch, or raise skiplock.max_batch_size');
    END IF;
    -- Positions are the ord values themselves: ranking the rows instead cost more than all the
    -- checks of the insert together.
    IF ords <> n OR first_ord <> 1 OR last_ord <> n THEN
        PERFORM skiplock._invalid(format('ord must number the %s staged jobs 1..%s, each once', n, n));
    END IF;

    IF keyed THEN
        -- Dedupe keys or windows: enqueue_many itself, with the staged rows as arrays in ord
        -- order (element k is position k; a column NULL throughout is passed as NULL, as a
        -- client passes it), so its rules apply as they are rather than as a copy of them.
        RETURN QUERY
        SELECT e.id
        FROM (
            SELECT array_agg(s.queue ORDER BY s.ord) AS queues, array_agg(s.task ORDER BY s.ord) AS tasks,
                   array_agg(s.args ORDER BY s.ord) AS args,
                   CASE WHEN bool_or(s.priority IS NOT NULL) THEN array_agg(s.priority ORDER BY s.ord) END AS priorities,
                   CASE WHEN bool_or(s.run_at IS NOT NULL) THEN array_agg(s.run_at ORDER BY s.ord) END AS run_ats,
                   CASE WHEN bool_or(s.delay IS NOT NULL) THEN array_agg(s.delay ORDER BY s.ord) END AS delays,
                   CASE WHEN bool_or(s.max_attempts IS NOT NULL)
                        THEN array_agg(s.max_attempts ORDER BY s.ord) END AS max_attempts,
                   array_agg(s.dedupe_key ORDER BY s.ord) AS dedupe_keys,
                   CASE WHEN bool_or(s.dedupe_window IS NOT NULL)
                        THEN array_agg(s.dedupe_window ORDER BY s.ord) END AS dedupe_windows,
                   CASE WHEN bool_or(s.retry_policy IS NOT NULL)
                        THEN array_agg(s.retry_policy ORDER BY s.ord) END AS retry_policies
            FROM pg_temp.skiplock_job_stage AS s
        ) AS a
        CROSS JOIN LATERAL skiplock.enqueue_many(
            queues => a.queues, tasks => a.tasks, args => a.args, priorities => a.priorities,
            run_ats => a.run_ats, delays => a.delays, max_attempts => a.max_attempts,
            dedupe_keys => a.dedupe_keys, as_of => as_of, dedupe_windows => a.dedupe_windows,
            retry_policies => a.retry_policies
        ) WITH ORDINALITY AS e(id, k)
        ORDER BY e.k;
        DELETE FROM pg_temp.skiplock_job_stage;
        RETURN;
    END IF;

    -- Names are checked once per distinct value; only when one is bad are the rows read again,
    -- to report the first job that carries it (enqueue_many's order of checks and messages).
    IF EXISTS (SELECT FROM unnest(queues) AS q WHERE NOT skiplock._is_queue_name(q))
       OR EXISTS (SELECT FROM unnest(tasks) AS t WHERE NOT skiplock._is_task_name(t)) THEN
        PERFORM skiplock._check_job(s.queue, s.task, s.args, s.priority, s.delay, s.max_attempts, NULL, s.ord)
        FROM pg_temp.skiplock_job_stage AS s
        WHERE NOT skiplock._is_queue_name(s.queue) OR NOT skiplock._is_task_name(s.task)
        ORDER BY s.ord
        LIMIT 1;
    END IF;
    IF policies THEN
        PERFORM skiplock._check_retry_policy(p.retry_policy, p.ord)
        FROM (SELECT s.retry_policy, s.ord FROM pg_temp.skiplock_job_stage AS s
              WHERE s.retry_policy IS NOT NULL ORDER BY s.ord) AS p;
    END IF;

    -- Move the rows: the other fields are checked inline, and a row failing the cheap predicate
    -- makes _check_job raise its message, which aborts the statement, so nothing is written.
    -- Rows are inserted in ord order, so the ids the sequence gives them increase in that order
    -- too (as in enqueue_many without keys).
    WITH staged AS (
        DELETE FROM pg_temp.skiplock_job_stage AS s
        RETURNING s.*
    ),
    ins AS (
        INSERT INTO skiplock.job AS j (queue, task, args, state, priority, max_attempts, run_at,
                                       created_at, retry_policy)
        SELECT u.queue, u.task, COALESCE(u.args, '{}'),
               CASE WHEN t.due > as_of THEN 'scheduled' ELSE 'available' END::skiplock.job_state,
               COALESCE(u.priority, 0)::smallint, COALESCE(u.max_attempts, 10), t.due, as_of, u.retry_policy
        FROM staged AS u
        CROSS JOIN LATERAL (SELECT COALESCE(u.run_at, as_of + u.delay, as_of) AS due) AS t
        WHERE CASE WHEN (u.args IS NULL OR (jsonb_typeof(u.args) = 'object' AND pg_column_size(u.args) <= max_bytes))
                        AND (u.priority IS NULL OR u.priority BETWEEN -32768 AND 32767)
                        AND (u.max_attempts IS NULL OR u.max_attempts BETWEEN 1 AND 1000)
                        AND (u.delay IS NULL OR u.delay >= interval '0')
                   THEN true
                   ELSE skiplock._check_job(u.queue, u.task, u.args, u.priority, u.delay, u.max_attempts,
                                            NULL, u.ord)
              END
        ORDER BY u.ord
        RETURNING j.id, j.queue, j.state
    ),
    woken AS (
        SELECT skiplock._notify(array_agg(DISTINCT i.queue) FILTER (WHERE i.state = 'available')) AS n
        FROM ins AS i
    )
    SELECT array_agg(i.id ORDER BY i.id)
    INTO ids
    FROM woken LEFT JOIN ins AS i ON true;
    RETURN QUERY SELECT unnest(ids);
END;
$$;
