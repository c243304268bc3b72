-- 0001_init: the skiplock engine.
--
-- Layout:
--   skiplock.job           live jobs only (scheduled, available, running, retryable): small and hot.
--   skiplock.job_history   finished jobs (completed, failed, cancelled), range-partitioned by day on
--                          finished_at. A row is written once and never updated, so the partition key
--                          never changes under a contended row; retention is DROP of old partitions.
--   skiplock.queue         per-queue switches (pause).
--   skiplock.worker        worker registry and heartbeats.
--
-- Every state transition is a function below. Python (and any other language) calls these
-- functions and never writes DML against the tables itself.
--
-- Locking discipline (deadlock freedom): statements that lock many job rows either use
-- FOR UPDATE SKIP LOCKED (claim, reap, promotion) or lock in ascending id order (complete,
-- heartbeat, release, cancel, retry), so two callers never wait on each other in a cycle.
--
-- Migrations note: creates the schema; no existing objects are touched.

CREATE TYPE skiplock.job_state AS ENUM (
    'scheduled',   -- waiting for run_at
    'available',   -- due, can be claimed
    'running',     -- leased to a worker until lease_expires_at
    'retryable',   -- failed an attempt, waiting for its backoff (run_at)
    'completed',   -- finished successfully (history)
    'failed',      -- attempts exhausted or non-retryable: the dead-letter set (history)
    'cancelled'    -- cancelled before finishing (history)
);

CREATE SEQUENCE skiplock.job_id_seq AS bigint;

-- fillfactor 80: leave room on each page so lease extensions (heartbeats), which change no
-- indexed column, stay HOT updates and do not grow the indexes.
CREATE TABLE skiplock.job (
    id               bigint      NOT NULL DEFAULT nextval('skiplock.job_id_seq'),
    queue            text        NOT NULL,
    task             text        NOT NULL,
    args             jsonb       NOT NULL DEFAULT '{}',
    state            skiplock.job_state NOT NULL DEFAULT 'available',
    priority         smallint    NOT NULL DEFAULT 0,
    attempt          integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL DEFAULT 10,
    run_at           timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    attempted_at     timestamptz,
    lease_token      uuid,
    lease_expires_at timestamptz,
    worker_id        uuid,
    dedupe_key       text,
    cancel_requested boolean     NOT NULL DEFAULT false,
    errors           jsonb       NOT NULL DEFAULT '[]',
    CONSTRAINT job_pkey PRIMARY KEY (id),
    CONSTRAINT job_live_state CHECK (state IN ('scheduled', 'available', 'running', 'retryable')),
    CONSTRAINT job_args_object CHECK (jsonb_typeof(args) = 'object'),
    CONSTRAINT job_attempts_range CHECK (max_attempts >= 1 AND attempt >= 0),
    CONSTRAINT job_lease_when_running CHECK (
        (state = 'running') = (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL)
    )
) WITH (
    fillfactor = 80,
    -- The hot table churns constantly; vacuum it by dead-row count, not by a fraction of its size.
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 5000
);
ALTER SEQUENCE skiplock.job_id_seq OWNED BY skiplock.job.id;

-- claim: one range scan per queue in priority order. Only due, unleased rows are in it.
CREATE INDEX job_claim_idx ON skiplock.job (queue, priority DESC, run_at, id)
    WHERE state = 'available';
-- promotion of scheduled/retryable jobs whose run_at has come: an empty range scan when none are due.
CREATE INDEX job_scheduled_idx ON skiplock.job (queue, run_at)
    WHERE state IN ('scheduled', 'retryable');
-- running jobs only: the reaper's scan, and the per-id probes of complete/heartbeat/release. Keyed
-- on id so that, when statistics say few jobs run, the planner's favourite small index is still
-- a lookup and not a filter over every running job. lease_expires_at is deliberately not
-- indexed, so heartbeats change no indexed column and stay HOT.
CREATE INDEX job_running_idx ON skiplock.job (id)
    WHERE state = 'running';
-- dedupe keys are unique among live jobs; a finished job frees its key.
CREATE UNIQUE INDEX job_dedupe_key_idx ON skiplock.job (dedupe_key)
    WHERE dedupe_key IS NOT NULL;

CREATE TABLE skiplock.job_history (
    id               bigint      NOT NULL,
    queue            text        NOT NULL,
    task             text        NOT NULL,
    args             jsonb       NOT NULL,
    state            skiplock.job_state NOT NULL,
    priority         smallint    NOT NULL,
    attempt          integer     NOT NULL,
    max_attempts     integer     NOT NULL,
    run_at           timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    attempted_at     timestamptz,
    worker_id        uuid,
    dedupe_key       text,
    errors           jsonb       NOT NULL,
    finished_at      timestamptz NOT NULL,
    result           jsonb,
    CONSTRAINT job_history_final_state CHECK (state IN ('completed', 'failed', 'cancelled'))
) PARTITION BY RANGE (finished_at);

-- Safety net: a finished job is never lost because its day's partition does not exist yet.
-- ensure_partitions() moves any rows found here into a proper partition.
CREATE TABLE skiplock.job_history_default PARTITION OF skiplock.job_history DEFAULT;

CREATE INDEX job_history_id_idx ON skiplock.job_history (id);
-- BRIN: finished_at is append-ordered, so a block-range index costs almost nothing per insert.
CREATE INDEX job_history_finished_idx ON skiplock.job_history USING brin (finished_at);
-- the dead-letter set stays cheap to count and list however large history grows.
CREATE INDEX job_history_failed_idx ON skiplock.job_history (queue, finished_at)
    WHERE state = 'failed';

CREATE TABLE skiplock.queue (
    name         text        NOT NULL,
    paused_at    timestamptz,
    paused_until timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT queue_pkey PRIMARY KEY (name)
);

CREATE TABLE skiplock.worker (
    id           uuid        NOT NULL,
    host         text        NOT NULL,
    pid          integer     NOT NULL,
    queues       text[]      NOT NULL,
    concurrency  integer     NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    jobs_done    bigint      NOT NULL DEFAULT 0,
    CONSTRAINT worker_pkey PRIMARY KEY (id)
);


-- ---------------------------------------------------------------------------------------------
-- Internal helpers
-- ---------------------------------------------------------------------------------------------

-- _setting: an integer limit from the custom GUC skiplock.<name> (ALTER DATABASE … SET
-- skiplock.max_args_bytes = …), else the default.
CREATE FUNCTION skiplock._setting(name text, fallback integer)
RETURNS integer
LANGUAGE sql
STABLE
AS $$
    SELECT COALESCE(NULLIF(current_setting('skiplock.' || _setting.name, true), '')::integer,
                    _setting.fallback);
$$;

-- _invalid: raise invalid_parameter_value (22023) with a message. Returns its type so it can
-- stand inside CASE expressions; only ever evaluated on bad input.
CREATE FUNCTION skiplock._invalid(message text, hint text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
AS $$
BEGIN
    IF _invalid.hint IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'skiplock: ' || _invalid.message;
    END IF;
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'skiplock: ' || _invalid.message, HINT = _invalid.hint;
END;
$$;

-- _show: a value quoted as JSON (control characters escaped, truncated) for error messages, so
-- hostile input never reaches a terminal raw.
CREATE FUNCTION skiplock._show(value text)
RETURNS text
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT CASE WHEN _show.value IS NULL THEN 'NULL'
                ELSE to_json(left(_show.value, 80))::text END;
$$;

-- backoff: the default delay before retry number `attempt` (1-based): exponential, 2^attempt
-- seconds capped at one hour, with ±25% jitter so failed batches do not retry in lock step.
CREATE FUNCTION skiplock.backoff(attempt integer)
RETURNS interval
LANGUAGE sql
VOLATILE
AS $$
    SELECT make_interval(secs => least(3600, power(2, least(backoff.attempt, 20)))
                                 * (0.75 + random() * 0.5));
$$;

-- _error_entry: one element of job.errors.
CREATE FUNCTION skiplock._error_entry(attempt integer, worker_id uuid, at timestamptz,
                                      error text, error_type text, traceback text)
RETURNS jsonb
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'attempt', _error_entry.attempt,
        'at', _error_entry.at,
        'worker_id', _error_entry.worker_id,
        'type', left(_error_entry.error_type, 200),
        'error', left(_error_entry.error, 4096),
        'traceback', right(_error_entry.traceback, 16384)));
$$;

-- _notify: wake the workers of each distinct queue once. Postgres also folds identical
-- notifications within one transaction, so a batch costs one NOTIFY per queue.
CREATE FUNCTION skiplock._notify(queues text[])
RETURNS void
LANGUAGE sql
AS $$
    SELECT pg_notify('skiplock_insert', q)
    FROM (SELECT DISTINCT q FROM unnest(_notify.queues) AS q WHERE q IS NOT NULL) AS d;
$$;


-- ---------------------------------------------------------------------------------------------
-- Enqueue
-- ---------------------------------------------------------------------------------------------

-- _is_queue_name / _is_task_name: the naming rules, in one place (simple SQL, inlined by the planner).
CREATE FUNCTION skiplock._is_queue_name(name text)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT COALESCE(_is_queue_name.name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$', false);
$$;

CREATE FUNCTION skiplock._is_task_name(name text)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT COALESCE(_is_task_name.name ~ '^[A-Za-z0-9_][A-Za-z0-9_.:<>-]{0,199}$', false);
$$;

-- _check_job: validate one job's fields, raising invalid_parameter_value (22023) with a clear
-- message for the first problem; returns true when all is well. The single source of the
-- validation rules and messages: enqueue calls it once; enqueue_many calls it only for a row its
-- cheap inline predicate rejected, to raise the right message.
CREATE FUNCTION skiplock._check_job(
    queue        text,
    task         text,
    args         jsonb,
    priority     integer,
    delay        interval,
    max_attempts integer,
    dedupe_key   text,
    ord          bigint DEFAULT 1
)
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    max_bytes integer := skiplock._setting('max_args_bytes', 262144);
BEGIN
    IF NOT skiplock._is_queue_name(_check_job.queue) THEN
        PERFORM skiplock._invalid(
            format('invalid queue name %s (job %s)', skiplock._show(_check_job.queue), _check_job.ord),
            'queue names are 1-63 characters of letters, digits and _ . : - and start with a letter or digit');
    END IF;
    IF NOT skiplock._is_task_name(_check_job.task) THEN
        PERFORM skiplock._invalid(
            format('invalid task name %s (job %s)', skiplock._show(_check_job.task), _check_job.ord),
            'task names are 1-200 characters of letters, digits and _ . : - < > and start with a letter, digit or _');
    END IF;
    IF jsonb_typeof(_check_job.args) <> 'object' THEN
        PERFORM skiplock._invalid(
            format('args must be a JSON object, got %s (job %s)', jsonb_typeof(_check_job.args), _check_job.ord));
    END IF;
    IF pg_column_size(_check_job.args) > max_bytes THEN
        PERFORM skiplock._invalid(
            format('args of %s bytes exceed the limit of %s bytes (job %s)',
                   pg_column_size(_check_job.args), max_bytes, _check_job.ord),
            'store large payloads elsewhere and pass a reference, or raise skiplock.max_args_bytes');
    END IF;
    IF _check_job.priority NOT BETWEEN -32768 AND 32767 THEN
        PERFORM skiplock._invalid(
            format('priority %s out of range -32768..32767 (job %s)', _check_job.priority, _check_job.ord));
    END IF;
    IF _check_job.max_attempts NOT BETWEEN 1 AND 1000 THEN
        PERFORM skiplock._invalid(
            format('max_attempts %s out of range 1..1000 (job %s)', _check_job.max_attempts, _check_job.ord));
    END IF;
    IF _check_job.delay < interval '0' THEN
        PERFORM skiplock._invalid(
            format('delay must not be negative, got %s (job %s)', _check_job.delay, _check_job.ord));
    END IF;
    IF octet_length(_check_job.dedupe_key) NOT BETWEEN 1 AND 512 THEN
        PERFORM skiplock._invalid(format('dedupe_key must be 1-512 bytes (job %s)', _check_job.ord));
    END IF;
    RETURN true;
END;
$$;

-- enqueue_many: insert a batch of jobs in one statement and return their ids in input order.
-- Every array has one element per job, or exactly one element that applies to all of them;
-- NULL (or a NULL element) means the default. A job whose dedupe_key matches a live job is not
-- inserted: the existing job's id is returned in its place, and no error is raised (safe inside
-- the caller's transaction).
-- Validation (names, args object and size, priority, attempts, batch size) happens before
-- anything is written: a rejected call writes nothing.
-- Concurrency: any number of callers. Cost: one INSERT … SELECT FROM unnest, one NOTIFY per queue.
CREATE FUNCTION skiplock.enqueue_many(
    queues        text[],
    tasks         text[],
    args          jsonb[]       DEFAULT NULL,
    priorities    integer[]     DEFAULT NULL,
    run_ats       timestamptz[] DEFAULT NULL,
    delays        interval[]    DEFAULT NULL,
    max_attempts  integer[]     DEFAULT NULL,
    dedupe_keys   text[]        DEFAULT NULL,
    as_of         timestamptz   DEFAULT now()
)
RETURNS SETOF bigint
LANGUAGE plpgsql
-- The body's statements have plans that do not depend on the values passed: plan them once per
-- session instead of per call (custom plans cost more than a small batch's insert).
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_variable
DECLARE
    n             integer := greatest(cardinality(queues), cardinality(tasks), cardinality(args),
                                      cardinality(priorities), cardinality(run_ats), cardinality(delays),
                                      cardinality(max_attempts), cardinality(dedupe_keys));
    max_batch     integer := skiplock._setting('max_batch_size', 10000);
    max_bytes     integer := skiplock._setting('max_args_bytes', 262144);
    ids           bigint[];
    inserted_keys text[];
    resolved      bigint[];
    bad_ord       bigint;
    names_ok      boolean;
    redo          bigint[];
    again         bigint[];
BEGIN
    IF COALESCE(cardinality(queues), 0) = 0 OR COALESCE(cardinality(tasks), 0) = 0 THEN
        PERFORM skiplock._invalid('queues and tasks must be non-empty arrays');
    END IF;
    IF n > max_batch THEN
        PERFORM skiplock._invalid(format('batch of %s jobs exceeds the limit of %s', n, max_batch),
                                  'split the batch, or raise skiplock.max_batch_size');
    END IF;
    -- Names are checked once per distinct value, before the arrays are broadcast (a batch rarely
    -- holds more than a few); only when one is bad are the rows scanned, to report the first job
    -- that carries it.
    names_ok := NOT EXISTS (SELECT 1 FROM (SELECT DISTINCT v FROM unnest(queues) AS v) AS d
                            WHERE NOT skiplock._is_queue_name(d.v))
            AND NOT EXISTS (SELECT 1 FROM (SELECT DISTINCT v FROM unnest(tasks) AS v) AS d
                            WHERE NOT skiplock._is_task_name(d.v));
    queues       := skiplock._broadcast(queues, n, 'queues');
    tasks        := skiplock._broadcast(tasks, n, 'tasks');
    args         := skiplock._broadcast(args, n, 'args');
    priorities   := skiplock._broadcast(priorities, n, 'priorities');
    run_ats      := skiplock._broadcast(run_ats, n, 'run_ats');
    delays       := skiplock._broadcast(delays, n, 'delays');
    max_attempts := skiplock._broadcast(max_attempts, n, 'max_attempts');
    dedupe_keys  := skiplock._broadcast(dedupe_keys, n, 'dedupe_keys');

    IF NOT names_ok THEN
        SELECT min(x.ord) INTO bad_ord
        FROM unnest(queues, tasks) WITH ORDINALITY AS x(queue, task, ord)
        WHERE NOT skiplock._is_queue_name(x.queue) OR NOT skiplock._is_task_name(x.task);
        PERFORM skiplock._check_job(queues[bad_ord], tasks[bad_ord], args[bad_ord], priorities[bad_ord],
                                    delays[bad_ord], max_attempts[bad_ord], dedupe_keys[bad_ord], bad_ord);
    END IF;

    -- Check the other fields and insert in one pass: a row failing the cheap inline predicate
    -- makes _check_job raise its message, which aborts the statement, so nothing of the batch is
    -- written. Rows are inserted in input order, so the ids the sequence gives them increase in
    -- input order too. The statement is built once per call so that a batch without dedupe keys
    -- skips ON CONFLICT (speculative insertion costs ~15% of a keyless batch); planning it costs
    -- far less than a batch's insert.
    EXECUTE format($sql$
        WITH ins AS (
            INSERT INTO skiplock.job AS j (queue, task, args, state, priority, max_attempts, run_at,
                                           created_at, dedupe_key)
            SELECT u.queue, u.task, COALESCE(u.args, '{}'),
                   CASE WHEN t.due > $9 THEN 'scheduled' ELSE 'available' END::skiplock.job_state,
                   COALESCE(u.priority, 0)::smallint, COALESCE(u.max_attempts, 10), t.due, $9, u.dedupe_key
            FROM unnest($1, $2, $3, $4, $5, $6, $7, $8)
                 WITH ORDINALITY AS u(queue, task, args, priority, run_at, delay, max_attempts, dedupe_key, ord)
            CROSS JOIN LATERAL (SELECT COALESCE(u.run_at, $9 + u.delay, $9) AS due) AS t
            WHERE CASE WHEN (u.args IS NULL OR (jsonb_typeof(u.args) = 'object' AND pg_column_size(u.args) <= $10))
                            AND (u.priority IS NULL OR u.priority BETWEEN -32768 AND 32767)
                            AND (u.max_attempts IS NULL OR u.max_attempts BETWEEN 1 AND 1000)
                            AND (u.delay IS NULL OR u.delay >= interval '0')
                            AND (u.dedupe_key IS NULL OR octet_length(u.dedupe_key) BETWEEN 1 AND 512)
                       THEN true
                       ELSE skiplock._check_job(u.queue, u.task, u.args, u.priority, u.delay, u.max_attempts,
                                                u.dedupe_key, u.ord)
                  END
            ORDER BY u.ord
            %s
            RETURNING j.id, j.queue, j.state, j.dedupe_key
        ),
        woken AS (
            SELECT skiplock._notify(array_agg(DISTINCT i.queue) FILTER (WHERE i.state = 'available')) AS n
            FROM ins AS i
        )
        SELECT array_agg(i.id ORDER BY i.id), array_agg(i.dedupe_key) FILTER (WHERE i.dedupe_key IS NOT NULL)
        FROM woken LEFT JOIN ins AS i ON true
    $sql$, CASE WHEN dedupe_keys IS NULL THEN '' ELSE 'ON CONFLICT DO NOTHING' END)
    INTO ids, inserted_keys
    USING queues, tasks, args, priorities, run_ats, delays, max_attempts, dedupe_keys, as_of, max_bytes;

    IF dedupe_keys IS NULL THEN
        RETURN QUERY SELECT unnest(ids);
        RETURN;
    END IF;

    -- Some jobs carried dedupe keys: put each job's id back at its position. A job was inserted
    -- when it had no key, or was the first of the batch with a key no live job held; the others
    -- get the id of the live job holding their key. This is a new statement, so under READ
    -- COMMITTED it sees a holder another transaction committed while our INSERT waited on it.
    FOR attempt IN 1..5 LOOP
        WITH inp AS (
            SELECT k.ord, k.key,
                   (k.key IS NULL
                    OR (k.key = ANY (inserted_keys)
                        AND row_number() OVER (PARTITION BY k.key ORDER BY k.ord) = 1)) AS was_inserted
            FROM unnest(dedupe_keys) WITH ORDINALITY AS k(key, ord)
        ),
        numbered AS (
            SELECT inp.ord, inp.key, inp.was_inserted,
                   sum(inp.was_inserted::integer) OVER (ORDER BY inp.ord) AS k
            FROM inp
        )
        SELECT array_agg(CASE WHEN nb.was_inserted THEN ids[nb.k]
                              ELSE (SELECT j.id FROM skiplock.job AS j WHERE j.dedupe_key = nb.key)
                         END ORDER BY nb.ord)
        INTO resolved
        FROM numbered AS nb;
        EXIT WHEN array_position(resolved, NULL) IS NULL;
        -- A key's holder finished between our INSERT and this lookup: its key is free now, so
        -- enqueue those jobs again (rare; bounded by the loop).
        SELECT array_agg(r.ord ORDER BY r.ord) INTO redo
        FROM unnest(resolved) WITH ORDINALITY AS r(id, ord) WHERE r.id IS NULL;
        SELECT array_agg(e.id) INTO again
        FROM skiplock.enqueue_many(
            ARRAY(SELECT queues[o] FROM unnest(redo) WITH ORDINALITY AS x(o, i) ORDER BY i),
            ARRAY(SELECT tasks[o] FROM unnest(redo) WITH ORDINALITY AS x(o, i) ORDER BY i),
            ARRAY(SELECT args[o] FROM unnest(redo) WITH ORDINALITY AS x(o, i) ORDER BY i),
            ARRAY(SELECT priorities[o] FROM unnest(redo) WITH ORDINALITY AS x(o, i) ORDER BY i),
            ARRAY(SELECT run_ats[o] FROM unnest(redo) WITH ORDINALITY AS x(o, i) ORDER BY i),
            ARRAY(SELECT delays[o] FROM unnest(redo) WITH ORDINALITY AS x(o, i) ORDER BY i),
            ARRAY(SELECT max_attempts[o] FROM unnest(redo) WITH ORDINALITY AS x(o, i) ORDER BY i),
            ARRAY(SELECT dedupe_keys[o] FROM unnest(redo) WITH ORDINALITY AS x(o, i) ORDER BY i),
            as_of) AS e(id);
        FOR i IN 1..cardinality(redo) LOOP
            resolved[redo[i]] := again[i];
        END LOOP;
        EXIT WHEN array_position(resolved, NULL) IS NULL;
    END LOOP;
    IF array_position(resolved, NULL) IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '40001',
            MESSAGE = 'skiplock: could not resolve dedupe keys under concurrent churn; retry the transaction';
    END IF;
    RETURN QUERY SELECT unnest(resolved);
END;
$$;

-- _broadcast: normalise one enqueue_many argument array to n elements (NULL stays NULL, a
-- single element is repeated), or raise when its length is neither 1 nor n.
CREATE FUNCTION skiplock._broadcast(arr anyarray, n integer, name text)
RETURNS anyarray
LANGUAGE plpgsql
IMMUTABLE
AS $$
BEGIN
    IF arr IS NULL OR cardinality(arr) = n THEN
        RETURN arr;
    ELSIF cardinality(arr) = 1 THEN
        RETURN array_fill(arr[1], ARRAY[n]);
    END IF;
    PERFORM skiplock._invalid(format('%s has %s elements; expected 1 or %s (one per job)',
                                     name, cardinality(arr), n));
    RETURN NULL;
END;
$$;

-- enqueue: insert one job and return it (or the live job already holding dedupe_key).
-- `SELECT skiplock.enqueue('emails', 'send_welcome', '{"user_id": 7}')` works from psql, any
-- language and triggers. run_at wins over delay; with neither, the job is due at once.
-- Concurrency: any number of callers. Cost: one INSERT (a lean path: single-job enqueue is
-- dominated by per-call overhead, so it does not go through enqueue_many), one NOTIFY if due.
CREATE FUNCTION skiplock.enqueue(
    queue        text,
    task         text,
    args         jsonb       DEFAULT '{}',
    priority     integer     DEFAULT 0,
    run_at       timestamptz DEFAULT NULL,
    delay        interval    DEFAULT NULL,
    max_attempts integer     DEFAULT 10,
    dedupe_key   text        DEFAULT NULL,
    as_of        timestamptz DEFAULT now()
)
RETURNS skiplock.job
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    j   skiplock.job;
    due timestamptz := COALESCE(enqueue.run_at, enqueue.as_of + enqueue.delay, enqueue.as_of);
BEGIN
    PERFORM skiplock._check_job(enqueue.queue, enqueue.task, COALESCE(enqueue.args, '{}'), enqueue.priority,
                                enqueue.delay, enqueue.max_attempts, enqueue.dedupe_key);
    FOR attempt IN 1..5 LOOP
        INSERT INTO skiplock.job AS x (queue, task, args, state, priority, max_attempts, run_at,
                                       created_at, dedupe_key)
        VALUES (enqueue.queue, enqueue.task, COALESCE(enqueue.args, '{}'),
                CASE WHEN due > enqueue.as_of THEN 'scheduled' ELSE 'available' END::skiplock.job_state,
                COALESCE(enqueue.priority, 0), COALESCE(enqueue.max_attempts, 10), due, enqueue.as_of,
                enqueue.dedupe_key)
        ON CONFLICT DO NOTHING
        RETURNING x.* INTO j;
        IF j.id IS NOT NULL THEN
            IF due <= enqueue.as_of THEN
                PERFORM pg_notify('skiplock_insert', enqueue.queue);
            END IF;
            RETURN j;
        END IF;
        -- A live job holds the key. A new statement: under READ COMMITTED it sees a holder that
        -- another transaction committed while our INSERT waited on it.
        SELECT * INTO j FROM skiplock.job AS x WHERE x.dedupe_key = enqueue.dedupe_key;
        IF j.id IS NOT NULL THEN
            RETURN j;
        END IF;
        -- The holder finished in between and freed the key: insert again.
    END LOOP;
    RAISE EXCEPTION USING ERRCODE = '40001',
        MESSAGE = 'skiplock: could not resolve the dedupe key under concurrent churn; retry the transaction';
END;
$$;


-- ---------------------------------------------------------------------------------------------
-- Claim and finalize
-- ---------------------------------------------------------------------------------------------

-- claim: lease up to max_jobs due jobs from `queues` (taken in the given order: earlier queues
-- first, then priority DESC, run_at, id within a queue) to worker_id until as_of + lease.
-- Each returned job carries a fresh lease_token: complete/fail/heartbeat/release need it.
-- Paused queues yield nothing. Scheduled and retryable jobs whose run_at has come are promoted
-- to available first.
-- Concurrency: any number of callers; FOR UPDATE SKIP LOCKED means no two callers ever get the
-- same job and none waits on another. The candidate step is MATERIALIZED so the planner cannot
-- re-run the LIMIT subquery and lock more rows than asked. Cost: one job_claim_idx range scan
-- of max_jobs entries per queue (plus an empty job_scheduled_idx probe), flat in history size.
CREATE FUNCTION skiplock.claim(
    queues    text[],
    worker_id uuid,
    max_jobs  integer     DEFAULT 1,
    lease     interval    DEFAULT '30 seconds',
    as_of     timestamptz DEFAULT now()
)
RETURNS SETOF skiplock.job
LANGUAGE plpgsql
AS $$
DECLARE
    q         text;
    remaining integer := claim.max_jobs;
    got       integer;
BEGIN
    IF claim.max_jobs IS NULL OR claim.max_jobs < 1 OR claim.max_jobs > skiplock._setting('max_batch_size', 10000) THEN
        PERFORM skiplock._invalid(format('max_jobs must be between 1 and %s, got %s',
                                         skiplock._setting('max_batch_size', 10000), claim.max_jobs));
    END IF;
    IF claim.lease IS NULL OR claim.lease <= interval '0' THEN
        PERFORM skiplock._invalid(format('lease must be positive, got %s', claim.lease));
    END IF;
    IF claim.worker_id IS NULL THEN
        PERFORM skiplock._invalid('worker_id must not be NULL');
    END IF;
    IF claim.queues IS NULL OR cardinality(claim.queues) = 0 THEN
        PERFORM skiplock._invalid('queues must be a non-empty array');
    END IF;

    FOREACH q IN ARRAY claim.queues LOOP
        EXIT WHEN remaining <= 0;
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM skiplock.queue AS qu
            WHERE qu.name = q AND qu.paused_at IS NOT NULL
              AND (qu.paused_until IS NULL OR qu.paused_until > claim.as_of));

        -- Promote what has come due. SKIP LOCKED: concurrent claimers split the work.
        WITH due AS MATERIALIZED (
            SELECT j.id FROM skiplock.job AS j
            WHERE j.queue = q AND j.state IN ('scheduled', 'retryable') AND j.run_at <= claim.as_of
            ORDER BY j.run_at
            LIMIT 1000
            FOR UPDATE SKIP LOCKED
        )
        UPDATE skiplock.job AS j SET state = 'available'
        FROM due WHERE j.id = due.id;

        RETURN QUERY
        WITH candidate AS MATERIALIZED (
            SELECT j.id FROM skiplock.job AS j
            WHERE j.queue = q AND j.state = 'available' AND j.run_at <= claim.as_of
            ORDER BY j.priority DESC, j.run_at, j.id   -- higher priority first
            LIMIT remaining
            FOR UPDATE SKIP LOCKED
        )
        UPDATE skiplock.job AS j
        SET state = 'running',
            attempt = j.attempt + 1,
            attempted_at = claim.as_of,
            worker_id = claim.worker_id,
            lease_token = gen_random_uuid(),
            lease_expires_at = claim.as_of + claim.lease
        FROM candidate
        WHERE j.id = candidate.id
        RETURNING j.*;
        GET DIAGNOSTICS got = ROW_COUNT;
        remaining := remaining - got;
    END LOOP;
END;
$$;

-- complete: finalize a batch of jobs as completed, each with an optional JSON result, moving
-- them to history. Returns the ids that were completed; a job whose lease token no longer
-- matches (reaped, possibly re-claimed, or already finalized) is skipped: a stale worker can
-- never complete a newer attempt. Results larger than skiplock.max_result_bytes (default
-- 256 KiB) are replaced by {"truncated": true, "bytes": n}.
-- Concurrency: locks rows in id order. Cost: one DELETE … RETURNING → INSERT into history.
CREATE FUNCTION skiplock.complete(
    job_ids      bigint[],
    lease_tokens uuid[],
    results      jsonb[]     DEFAULT NULL,
    as_of        timestamptz DEFAULT now()
)
RETURNS SETOF bigint
LANGUAGE sql
AS $$
    -- Drive from the input, sorted by id, and probe the primary key once per job with a locking
    -- subquery: it cannot be flattened, so the plan stays O(n log N) (the planner underestimates
    -- unnest() of a parameter and would otherwise rescan the input for every running job), and
    -- rows are locked in id order.
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
    -- A locked row cannot move until we commit, so its ctid (read after the lock, from the
    -- latest version) finds it again with a TID scan instead of a second index probe.
    done AS (
        DELETE FROM skiplock.job AS j
        USING locked AS l
        WHERE j.ctid = l.tid
        RETURNING j.*, l.result
    )
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
    RETURNING id;
$$;

-- fail: record a failed attempt. The job goes back to the queue as retryable at
-- as_of + retry_in (default skiplock.backoff(attempt)) while attempts remain and `retryable`
-- is true; otherwise it moves to history as failed (or cancelled, when a cancel was requested
-- while it ran). Returns the job's new state, or NULL when the lease token does not match
-- (the attempt was reaped or already finalized; nothing is changed).
-- Concurrency: one row lock. Cost: one UPDATE, or one DELETE → INSERT into history.
CREATE FUNCTION skiplock.fail(
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
    RETURN new_state;
END;
$$;

-- heartbeat: extend the leases of a batch of running jobs to as_of + lease. Returns the ids
-- whose lease was extended; a missing id means the worker lost that job (reaped or finalized)
-- and must not finalize it.
-- Concurrency: locks rows in id order. Cost: one HOT UPDATE per job (no indexed column changes).
CREATE FUNCTION skiplock.heartbeat(
    job_ids      bigint[],
    lease_tokens uuid[],
    lease        interval    DEFAULT '30 seconds',
    as_of        timestamptz DEFAULT now()
)
RETURNS SETOF bigint
LANGUAGE sql
AS $$
    -- The same per-id locking probe (and ctid step) as complete(): linear in the batch, locks in id order.
    WITH input AS MATERIALIZED (
        SELECT u.id, u.lease_token
        FROM unnest(heartbeat.job_ids, heartbeat.lease_tokens) AS u(id, lease_token)
        ORDER BY u.id
    ),
    locked AS MATERIALIZED (
        SELECT j.ctid AS tid
        FROM input AS i
        CROSS JOIN LATERAL (
            SELECT x.ctid FROM skiplock.job AS x
            WHERE x.id = i.id AND x.lease_token = i.lease_token AND x.state = 'running'
            FOR UPDATE
        ) AS j
    )
    UPDATE skiplock.job AS j
    SET lease_expires_at = heartbeat.as_of + heartbeat.lease
    FROM locked
    WHERE j.ctid = locked.tid
    RETURNING j.id;
$$;

-- release: give leased jobs back to the queue without spending an attempt (graceful shutdown,
-- prefetched jobs never started). They keep their run_at, so they keep their place in line.
-- Returns the ids released; stale tokens are skipped.
-- Concurrency: locks rows in id order. Cost: one UPDATE per job and one NOTIFY per queue.
CREATE FUNCTION skiplock.release(
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
        SELECT j.ctid AS tid
        FROM input AS i
        CROSS JOIN LATERAL (
            SELECT x.ctid FROM skiplock.job AS x
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
        WHERE j.ctid = locked.tid
        RETURNING j.id, j.queue
    ),
    woken AS (
        SELECT skiplock._notify(array_agg(r.queue)) AS n FROM released AS r
    )
    SELECT r.id FROM released AS r, woken;
$$;

-- reap: return jobs whose lease expired (their worker died, stalled or lost its connection)
-- to the queue as available, attempt kept (it was spent), or to history as failed when their
-- attempts are used up (or cancelled, when a cancel was requested). Returns each job touched
-- with its new state. Also forgets workers whose heartbeat is older than worker_ttl.
-- Concurrency: safe from any number of workers at once: rows are taken with
-- FOR UPDATE SKIP LOCKED and re-checked, so a job completed or re-leased meanwhile is never
-- touched. Cost: a scan of running jobs (job_running_idx), at most max_jobs rows written.
CREATE FUNCTION skiplock.reap(
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
        RETURNING j.id
    ),
    archived AS (
        INSERT INTO skiplock.job_history (id, queue, task, args, state, priority, attempt, max_attempts,
                                          run_at, created_at, attempted_at, worker_id, dedupe_key,
                                          errors, finished_at, result)
        SELECT n.id, n.queue, n.task, n.args,
               CASE WHEN n.cancel_requested THEN 'cancelled' ELSE 'failed' END::skiplock.job_state,
               n.priority, n.attempt, n.max_attempts, n.run_at, n.created_at, n.attempted_at,
               n.worker_id, n.dedupe_key, n.new_errors, reap.as_of, NULL
        FROM noted AS n
        JOIN removed AS r ON r.id = n.id
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


-- ---------------------------------------------------------------------------------------------
-- Operator actions
-- ---------------------------------------------------------------------------------------------

-- retry: run jobs again now. Failed and cancelled jobs come back from history as available
-- with a fresh set of attempts (their error history is kept); scheduled and retryable jobs
-- become due at once. Returns the ids affected; ids that are running, completed or unknown are
-- ignored. A failed job whose dedupe_key is now held by another live job stays in history.
-- Concurrency: row locks in id order. Cost: one move per job, one NOTIFY per queue.
CREATE FUNCTION skiplock.retry(
    job_ids bigint[],
    as_of   timestamptz DEFAULT now()
)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY
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
    revived AS (
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
        USING revived AS r
        WHERE h.id = r.id
        RETURNING h.id
    ),
    woken AS (
        SELECT skiplock._notify(array_agg(x.queue)) AS n
        FROM (SELECT queue FROM made_due UNION ALL SELECT queue FROM revived) AS x
    )
    SELECT m.id FROM made_due AS m, woken
    UNION ALL
    SELECT u.id FROM unarchived AS u;
END;
$$;

-- cancel: cancel jobs. Jobs not yet running move to history as cancelled and never run. A
-- running job is marked cancel_requested: its current attempt finishes, and it is not retried
-- (a failure or an expired lease ends it as cancelled). Returns each known id with its state
-- after the call; finished jobs are reported unchanged (a no-op, not an error).
-- Concurrency: row locks in id order. Cost: one move per cancelled job.
CREATE FUNCTION skiplock.cancel(
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
END;
$$;

-- _check_queue: a valid queue name, or an invalid_parameter_value error.
CREATE FUNCTION skiplock._check_queue(queue text)
RETURNS text
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT CASE WHEN skiplock._is_queue_name(_check_queue.queue) THEN _check_queue.queue
                ELSE skiplock._invalid(format('invalid queue name %s', skiplock._show(_check_queue.queue)),
                     'queue names are 1-63 characters of letters, digits and _ . : - and start with a letter or digit')
           END;
$$;

-- pause_queue: stop all workers everywhere from claiming jobs of `queue` (running jobs finish),
-- until resume_queue or, when given, until `until`. Enqueue keeps working.
CREATE FUNCTION skiplock.pause_queue(
    queue text,
    until timestamptz DEFAULT NULL,
    as_of timestamptz DEFAULT now()
)
RETURNS skiplock.queue
LANGUAGE sql
AS $$
    INSERT INTO skiplock.queue AS q (name, paused_at, paused_until, created_at)
    VALUES (skiplock._check_queue(pause_queue.queue), pause_queue.as_of, pause_queue.until, pause_queue.as_of)
    ON CONFLICT (name) DO UPDATE
    SET paused_at = EXCLUDED.paused_at, paused_until = EXCLUDED.paused_until
    RETURNING q.*;
$$;

-- resume_queue: let workers claim from `queue` again and wake them.
CREATE FUNCTION skiplock.resume_queue(queue text)
RETURNS skiplock.queue
LANGUAGE sql
AS $$
    WITH upserted AS (
        INSERT INTO skiplock.queue AS q (name)
        VALUES (skiplock._check_queue(resume_queue.queue))
        ON CONFLICT (name) DO UPDATE SET paused_at = NULL, paused_until = NULL
        RETURNING q.*
    ),
    woken AS (
        SELECT skiplock._notify(ARRAY[resume_queue.queue]) AS n
    )
    SELECT u.* FROM upserted AS u, woken;
$$;


-- ---------------------------------------------------------------------------------------------
-- Workers
-- ---------------------------------------------------------------------------------------------

-- register_worker: announce (or re-announce) a worker; returns nothing.
CREATE FUNCTION skiplock.register_worker(
    worker_id   uuid,
    host        text,
    pid         integer,
    queues      text[],
    concurrency integer,
    as_of       timestamptz DEFAULT now()
)
RETURNS void
LANGUAGE sql
AS $$
    INSERT INTO skiplock.worker (id, host, pid, queues, concurrency, started_at, heartbeat_at)
    VALUES (register_worker.worker_id, left(register_worker.host, 255), register_worker.pid,
            register_worker.queues, register_worker.concurrency, register_worker.as_of, register_worker.as_of)
    ON CONFLICT (id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at;
$$;

-- worker_heartbeat: record that a worker is alive and how many jobs it finished since the last
-- beat. Returns false when the worker row is gone (reaped as dead): the worker re-registers.
CREATE FUNCTION skiplock.worker_heartbeat(
    worker_id uuid,
    jobs_done bigint      DEFAULT 0,
    as_of     timestamptz DEFAULT now()
)
RETURNS boolean
LANGUAGE sql
AS $$
    WITH beat AS (
        UPDATE skiplock.worker AS w
        SET heartbeat_at = worker_heartbeat.as_of, jobs_done = w.jobs_done + worker_heartbeat.jobs_done
        WHERE w.id = worker_heartbeat.worker_id
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM beat);
$$;

-- deregister_worker: remove a worker that stopped cleanly.
CREATE FUNCTION skiplock.deregister_worker(worker_id uuid)
RETURNS void
LANGUAGE sql
AS $$
    DELETE FROM skiplock.worker AS w WHERE w.id = deregister_worker.worker_id;
$$;


-- ---------------------------------------------------------------------------------------------
-- History partitions and retention
-- ---------------------------------------------------------------------------------------------

-- ensure_partitions: make sure daily history partitions exist from as_of's day (UTC) through
-- days_ahead days later; rows that landed in the default partition for those days are moved in.
-- Returns the names of partitions created.
-- Concurrency: serialised by an advisory lock; DDL waits at most lock_timeout (5 s) for the
-- parent table lock and fails rather than queueing behind long transactions.
CREATE FUNCTION skiplock.ensure_partitions(
    days_ahead integer     DEFAULT 3,
    as_of      timestamptz DEFAULT now()
)
RETURNS SETOF text
LANGUAGE plpgsql
SET lock_timeout = '5s'
AS $$
DECLARE
    day   date;
    part  text;
    lo    timestamptz;
    hi    timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('skiplock.partitions'));
    FOR i IN 0..greatest(ensure_partitions.days_ahead, 0) LOOP
        day  := (ensure_partitions.as_of AT TIME ZONE 'UTC')::date + i;
        part := 'job_history_p' || to_char(day, 'YYYYMMDD');
        CONTINUE WHEN to_regclass('skiplock.' || part) IS NOT NULL;
        lo := day::timestamp AT TIME ZONE 'UTC';
        hi := (day + 1)::timestamp AT TIME ZONE 'UTC';
        IF EXISTS (SELECT 1 FROM skiplock.job_history_default AS d
                   WHERE d.finished_at >= lo AND d.finished_at < hi) THEN
            -- Move the day's rows out of the default partition first, or ATTACH would fail.
            EXECUTE format('CREATE TABLE skiplock.%I (LIKE skiplock.job_history INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
            EXECUTE format('WITH moved AS (DELETE FROM skiplock.job_history_default AS d
                                           WHERE d.finished_at >= $1 AND d.finished_at < $2 RETURNING d.*)
                            INSERT INTO skiplock.%I SELECT * FROM moved', part) USING lo, hi;
            EXECUTE format('ALTER TABLE skiplock.job_history ATTACH PARTITION skiplock.%I FOR VALUES FROM (%L) TO (%L)',
                           part, lo, hi);
        ELSE
            EXECUTE format('CREATE TABLE skiplock.%I PARTITION OF skiplock.job_history FOR VALUES FROM (%L) TO (%L)',
                           part, lo, hi);
        END IF;
        RETURN NEXT part;
    END LOOP;
END;
$$;

-- drop_partitions: retention. Drop whole daily history partitions whose day ended more than
-- `retention` before as_of (never a mass DELETE), and delete expired rows from the default
-- partition. Returns the names of partitions dropped.
-- Concurrency: serialised by an advisory lock; waits at most lock_timeout (5 s).
CREATE FUNCTION skiplock.drop_partitions(
    retention interval    DEFAULT '7 days',
    as_of     timestamptz DEFAULT now()
)
RETURNS SETOF text
LANGUAGE plpgsql
SET lock_timeout = '5s'
AS $$
DECLARE
    part   text;
    cutoff timestamptz := drop_partitions.as_of - drop_partitions.retention;
BEGIN
    IF drop_partitions.retention IS NULL OR drop_partitions.retention < interval '0' THEN
        PERFORM skiplock._invalid(format('retention must not be negative, got %s', drop_partitions.retention));
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('skiplock.partitions'));
    FOR part IN
        SELECT c.relname
        FROM pg_inherits AS i
        JOIN pg_class AS c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'skiplock.job_history'::regclass
          AND c.relname ~ '^job_history_p[0-9]{8}$'
          AND ((to_date(substr(c.relname, 14), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC') <= cutoff
        ORDER BY c.relname
    LOOP
        EXECUTE format('DROP TABLE skiplock.%I', part);
        RETURN NEXT part;
    END LOOP;
    DELETE FROM skiplock.job_history_default AS d WHERE d.finished_at < cutoff;
END;
$$;


-- ---------------------------------------------------------------------------------------------
-- Views
-- ---------------------------------------------------------------------------------------------

-- jobs: live and finished jobs together, one row per job.
CREATE VIEW skiplock.jobs AS
    SELECT j.id, j.queue, j.task, j.args, j.state, j.priority, j.attempt, j.max_attempts,
           j.run_at, j.created_at, j.attempted_at, j.lease_expires_at, j.worker_id, j.dedupe_key,
           j.cancel_requested, j.errors, NULL::timestamptz AS finished_at, NULL::jsonb AS result
    FROM skiplock.job AS j
    UNION ALL
    SELECT h.id, h.queue, h.task, h.args, h.state, h.priority, h.attempt, h.max_attempts,
           h.run_at, h.created_at, h.attempted_at, NULL, h.worker_id, h.dedupe_key,
           false, h.errors, h.finished_at, h.result
    FROM skiplock.job_history AS h;

-- queue_stats: one row per queue and state. Live states (scheduled, available, running,
-- retryable) count every job; `failed` counts the whole retained dead-letter set; `completed`
-- and `cancelled` count the last minute only (history can be huge). oldest_age is how long the
-- oldest due job has waited (available, retryable and scheduled count from run_at), and
-- per_second is the finishing rate over the last minute (terminal states only).
CREATE VIEW skiplock.queue_stats AS
    WITH live AS (
        SELECT j.queue, j.state, count(*) AS jobs,
               greatest(now() - min(j.run_at), interval '0') AS oldest_age,
               NULL::numeric AS per_second
        FROM skiplock.job AS j
        GROUP BY j.queue, j.state
    ),
    recent AS (
        SELECT h.queue, h.state, count(*) AS jobs, NULL::interval AS oldest_age,
               round(count(*) / 60.0, 2) AS per_second
        FROM skiplock.job_history AS h
        WHERE h.finished_at >= now() - interval '1 minute' AND h.state <> 'failed'
        GROUP BY h.queue, h.state
    ),
    dead AS (
        SELECT h.queue, 'failed'::skiplock.job_state AS state, count(*) AS jobs,
               NULL::interval AS oldest_age,
               round(count(*) FILTER (WHERE h.finished_at >= now() - interval '1 minute') / 60.0, 2) AS per_second
        FROM skiplock.job_history AS h
        WHERE h.state = 'failed'
        GROUP BY h.queue
    ),
    together AS (
        SELECT * FROM live UNION ALL SELECT * FROM recent UNION ALL SELECT * FROM dead
    )
    SELECT t.queue, t.state, t.jobs, t.oldest_age, t.per_second,
           COALESCE(q.paused_at IS NOT NULL AND (q.paused_until IS NULL OR q.paused_until > now()), false) AS paused
    FROM together AS t
    LEFT JOIN skiplock.queue AS q ON q.name = t.queue;

SELECT skiplock.ensure_partitions(3);
