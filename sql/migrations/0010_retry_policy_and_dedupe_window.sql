-- 0010_retry_policy_and_dedupe_window: two per-job enqueue options.
--
-- retry_policy  a retry backoff stored as data on the job, so it holds for whoever fails the job
--               (any language) and needs no code on the worker: fixed, linear or exponential
--               with a cap and jitter (see retry_delay). fail() uses it when no explicit retry_in
--               is given, before the default skiplock.backoff().
-- dedupe_window a dedupe key also holds for this long after a job with that key completed:
--               enqueueing it again returns the completed job (from history) and inserts nothing.
--               Race-safe without locks: the insert is checked against history afterwards, in
--               a new statement that sees any completion committed before the insert finished,
--               and undone when one falls in the window.
--
-- Migrations note: adds a nullable column to skiplock.job (no rewrite) and a partial index on
-- history (built over existing history partitions: time proportional to keyed history rows).
-- enqueue() and enqueue_many() gain parameters after as_of, so calls that pass arguments by
-- position keep working; fail() is replaced (same signature).

ALTER TABLE skiplock.job ADD COLUMN retry_policy jsonb;

-- Completed jobs that carried a dedupe key, newest first per key: the window check's lookup.
CREATE INDEX job_history_dedupe_idx ON skiplock.job_history (dedupe_key, finished_at)
    WHERE dedupe_key IS NOT NULL AND state = 'completed';

-- _check_retry_policy: validate a retry policy, raising 22023 with a clear message (naming the
-- job by its position) for the first problem; returns true when all is well. A policy is one of
--   {"kind": "fixed", "delay": s}
--   {"kind": "linear", "step": s, "cap": s}                         cap optional
--   {"kind": "exponential", "base": s, "factor": f, "cap": s, "jitter": b}   all but kind optional
-- with seconds between 0 and a year (365 days) and factor between 1 and 100.
CREATE FUNCTION skiplock._check_retry_policy(policy jsonb, ord bigint DEFAULT 1)
RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE
AS $$
DECLARE
    kind    text;
    allowed text[];
    field   text;
BEGIN
    IF policy IS NULL THEN
        RETURN true;
    END IF;
    IF jsonb_typeof(policy) <> 'object' THEN
        PERFORM skiplock._invalid(format('retry_policy must be a JSON object, got %s (job %s)',
                                         jsonb_typeof(policy), ord));
    END IF;
    kind := policy ->> 'kind';
    allowed := CASE kind WHEN 'fixed' THEN ARRAY['kind', 'delay']
                         WHEN 'linear' THEN ARRAY['kind', 'step', 'cap']
                         WHEN 'exponential' THEN ARRAY['kind', 'base', 'factor', 'cap', 'jitter'] END;
    IF allowed IS NULL THEN
        PERFORM skiplock._invalid(
            format('retry_policy kind must be fixed, linear or exponential, got %s (job %s)',
                   skiplock._show(kind), ord));
    END IF;
    FOR field IN SELECT k FROM jsonb_object_keys(policy) AS k LOOP
        IF NOT field = ANY (allowed) THEN
            PERFORM skiplock._invalid(format('retry_policy of kind %s has no field %s (job %s)',
                                             kind, skiplock._show(field), ord),
                                      'fields: ' || array_to_string(allowed, ', '));
        END IF;
        CONTINUE WHEN field = 'kind';
        IF field = 'jitter' THEN
            IF jsonb_typeof(policy -> field) <> 'boolean' THEN
                PERFORM skiplock._invalid(format('retry_policy jitter must be true or false (job %s)', ord));
            END IF;
        ELSIF jsonb_typeof(policy -> field) <> 'number' THEN
            PERFORM skiplock._invalid(format('retry_policy %s must be a number, got %s (job %s)',
                                             field, jsonb_typeof(policy -> field), ord));
        ELSIF field = 'factor' AND (policy ->> field)::numeric NOT BETWEEN 1 AND 100 THEN
            PERFORM skiplock._invalid(format('retry_policy factor must be between 1 and 100, got %s (job %s)',
                                             policy ->> field, ord));
        ELSIF field <> 'factor' AND (policy ->> field)::numeric NOT BETWEEN 0 AND 31536000 THEN
            PERFORM skiplock._invalid(
                format('retry_policy %s must be between 0 and 31536000 seconds (a year), got %s (job %s)',
                       field, policy ->> field, ord));
        END IF;
    END LOOP;
    IF kind = 'fixed' AND NOT policy ? 'delay' THEN
        PERFORM skiplock._invalid(format('retry_policy of kind fixed needs a delay (job %s)', ord));
    END IF;
    IF kind = 'linear' AND NOT policy ? 'step' THEN
        PERFORM skiplock._invalid(format('retry_policy of kind linear needs a step (job %s)', ord));
    END IF;
    RETURN true;
END;
$$;

-- retry_delay: the delay a retry policy gives before the retry that follows failed attempt
-- `attempt` (1-based); NULL for a NULL policy. fixed: `delay` every time. linear: attempt x
-- `step`, at most `cap`. exponential: base x factor^(attempt - 1) (defaults 1 s, 2), at most
-- `cap` (default an hour); with jitter (the default) a uniformly random delay between half of
-- that and all of it, so jobs that failed together do not retry together.
CREATE FUNCTION skiplock.retry_delay(policy jsonb, attempt integer)
RETURNS interval
LANGUAGE sql
VOLATILE
AS $$
    WITH p AS (
        SELECT policy ->> 'kind' AS kind,
               (policy ->> 'delay')::double precision AS delay,
               (policy ->> 'step')::double precision AS step,
               COALESCE((policy ->> 'base')::double precision, 1) AS base,
               COALESCE((policy ->> 'factor')::double precision, 2) AS factor,
               (policy ->> 'cap')::double precision AS cap,
               COALESCE((policy ->> 'jitter')::boolean, true) AS jitter,
               greatest(COALESCE(attempt, 1), 1) AS n
    ),
    raw AS (
        SELECT CASE p.kind
                   WHEN 'fixed' THEN p.delay
                   WHEN 'linear' THEN least(p.step * p.n, COALESCE(p.cap, 'Infinity'))
                   -- compared in the log domain: factor^n overflows long before attempts run out
                   WHEN 'exponential' THEN
                       CASE WHEN p.base = 0 THEN 0
                            WHEN ln(p.base) + (p.n - 1) * ln(p.factor) >= ln(greatest(COALESCE(p.cap, 3600), 1e-9))
                                THEN COALESCE(p.cap, 3600)
                            ELSE p.base * power(p.factor, p.n - 1) END
               END AS secs,
               p.kind = 'exponential' AND p.jitter AS jittered
        FROM p
    )
    SELECT make_interval(secs => CASE WHEN r.jittered THEN r.secs * (0.5 + random() * 0.5) ELSE r.secs END)
    FROM raw AS r
    WHERE policy IS NOT NULL;
$$;

-- _recently_completed: the newest completed job holding `key` that finished at or after
-- `since`, as a skiplock.job value (state 'completed'), or NULL.
CREATE FUNCTION skiplock._recently_completed(key text, since timestamptz)
RETURNS skiplock.job
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    j skiplock.job;
    h skiplock.job_history;
BEGIN
    SELECT * INTO h FROM skiplock.job_history AS x
    WHERE x.dedupe_key = _recently_completed.key AND x.state = 'completed'
      AND x.finished_at >= _recently_completed.since
    ORDER BY x.finished_at DESC
    LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    j.id := h.id; j.queue := h.queue; j.task := h.task; j.args := h.args; j.state := h.state;
    j.priority := h.priority; j.attempt := h.attempt; j.max_attempts := h.max_attempts;
    j.run_at := h.run_at; j.created_at := h.created_at; j.attempted_at := h.attempted_at;
    j.worker_id := h.worker_id; j.dedupe_key := h.dedupe_key; j.cancel_requested := false;
    j.errors := h.errors;
    RETURN j;
END;
$$;

-- _check_window: a dedupe window needs a dedupe key and must not be negative.
CREATE FUNCTION skiplock._check_window(dedupe_key text, dedupe_window interval, ord bigint DEFAULT 1)
RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE
AS $$
BEGIN
    IF dedupe_window IS NOT NULL AND dedupe_key IS NULL THEN
        PERFORM skiplock._invalid(format('dedupe_window needs a dedupe_key (job %s)', ord));
    END IF;
    IF dedupe_window < interval '0' THEN
        PERFORM skiplock._invalid(format('dedupe_window must not be negative, got %s (job %s)', dedupe_window, ord));
    END IF;
    RETURN true;
END;
$$;

DROP FUNCTION skiplock.enqueue(text, text, jsonb, integer, timestamptz, interval, integer, text, timestamptz);

-- enqueue: insert one job and return it, or the live job already holding dedupe_key, or (with
-- dedupe_window) the job holding it that completed within the window, unchanged.
-- `SELECT skiplock.enqueue('emails', 'send_welcome', '{"user_id": 7}')` works from psql, any
-- language and triggers. run_at wins over delay; with neither, the job is due at once.
-- retry_policy is stored on the job (see retry_delay). Concurrency: any number of callers.
-- Cost: one INSERT, one NOTIFY if due; with a window, one index probe of history before and
-- one after the insert.
CREATE FUNCTION skiplock.enqueue(
    queue         text,
    task          text,
    args          jsonb       DEFAULT '{}',
    priority      integer     DEFAULT 0,
    run_at        timestamptz DEFAULT NULL,
    delay         interval    DEFAULT NULL,
    max_attempts  integer     DEFAULT 10,
    dedupe_key    text        DEFAULT NULL,
    as_of         timestamptz DEFAULT now(),
    dedupe_window interval    DEFAULT NULL,
    retry_policy  jsonb       DEFAULT NULL
)
RETURNS skiplock.job
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    j    skiplock.job;
    done skiplock.job;
    due  timestamptz := COALESCE(enqueue.run_at, enqueue.as_of + enqueue.delay, enqueue.as_of);
BEGIN
    PERFORM skiplock._check_job(enqueue.queue, enqueue.task, COALESCE(enqueue.args, '{}'), enqueue.priority,
                                enqueue.delay, enqueue.max_attempts, enqueue.dedupe_key);
    PERFORM skiplock._check_window(enqueue.dedupe_key, enqueue.dedupe_window);
    PERFORM skiplock._check_retry_policy(enqueue.retry_policy);
    IF enqueue.dedupe_window IS NOT NULL THEN
        done := skiplock._recently_completed(enqueue.dedupe_key, enqueue.as_of - enqueue.dedupe_window);
        IF done.id IS NOT NULL THEN
            RETURN done;
        END IF;
    END IF;
    FOR attempt IN 1..5 LOOP
        INSERT INTO skiplock.job AS x (queue, task, args, state, priority, max_attempts, run_at,
                                       created_at, dedupe_key, retry_policy)
        VALUES (enqueue.queue, enqueue.task, COALESCE(enqueue.args, '{}'),
                CASE WHEN due > enqueue.as_of THEN 'scheduled' ELSE 'available' END::skiplock.job_state,
                COALESCE(enqueue.priority, 0), COALESCE(enqueue.max_attempts, 10), due, enqueue.as_of,
                enqueue.dedupe_key, enqueue.retry_policy)
        ON CONFLICT DO NOTHING
        RETURNING x.* INTO j;
        IF j.id IS NOT NULL THEN
            IF enqueue.dedupe_window IS NOT NULL THEN
                -- A holder that completed while our INSERT waited on it is visible now: the key
                -- is still taken for the window, so undo the insert.
                done := skiplock._recently_completed(enqueue.dedupe_key, enqueue.as_of - enqueue.dedupe_window);
                IF done.id IS NOT NULL THEN
                    DELETE FROM skiplock.job AS x WHERE x.id = j.id;
                    RETURN done;
                END IF;
            END IF;
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
        -- The holder finished in between and freed the key: within the window it still counts;
        -- otherwise insert again.
        IF enqueue.dedupe_window IS NOT NULL THEN
            done := skiplock._recently_completed(enqueue.dedupe_key, enqueue.as_of - enqueue.dedupe_window);
            IF done.id IS NOT NULL THEN
                RETURN done;
            END IF;
        END IF;
    END LOOP;
    RAISE EXCEPTION USING ERRCODE = '40001',
        MESSAGE = 'skiplock: could not resolve the dedupe key under concurrent churn; retry the transaction';
END;
$$;

DROP FUNCTION skiplock.enqueue_many(text[], text[], jsonb[], integer[], timestamptz[], interval[], integer[],
                                    text[], timestamptz);

-- enqueue_many: insert a batch of jobs in one statement and return their ids in input order.
-- Every array has one element per job, or exactly one element that applies to all of them;
-- NULL (or a NULL element) means the default. A job whose dedupe_key matches a live job is not
-- inserted: the existing job's id is returned in its place, and no error is raised (safe inside
-- the caller's transaction); with a dedupe window, a job that completed within it counts too.
-- Concurrency: any number of callers; keyed rows are inserted in key order (no deadlocks).
CREATE FUNCTION skiplock.enqueue_many(
    queues         text[],
    tasks          text[],
    args           jsonb[]       DEFAULT NULL,
    priorities     integer[]     DEFAULT NULL,
    run_ats        timestamptz[] DEFAULT NULL,
    delays         interval[]    DEFAULT NULL,
    max_attempts   integer[]     DEFAULT NULL,
    dedupe_keys    text[]        DEFAULT NULL,
    as_of          timestamptz   DEFAULT now(),
    dedupe_windows interval[]    DEFAULT NULL,
    retry_policies jsonb[]       DEFAULT NULL
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
                                      cardinality(max_attempts), cardinality(dedupe_keys),
                                      cardinality(dedupe_windows), cardinality(retry_policies));
    max_batch     integer := skiplock._setting('max_batch_size', 10000);
    max_bytes     integer := skiplock._setting('max_args_bytes', 262144);
    ids           bigint[];
    inserted_keys text[];
    key_ids       bigint[];
    resolved      bigint[];
    bad_ord       bigint;
    names_ok      boolean;
    redo          bigint[];
    again         bigint[];
    undone        bigint[];
    done_ids      bigint[];
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
    queues         := skiplock._broadcast(queues, n, 'queues');
    tasks          := skiplock._broadcast(tasks, n, 'tasks');
    args           := skiplock._broadcast(args, n, 'args');
    priorities     := skiplock._broadcast(priorities, n, 'priorities');
    run_ats        := skiplock._broadcast(run_ats, n, 'run_ats');
    delays         := skiplock._broadcast(delays, n, 'delays');
    max_attempts   := skiplock._broadcast(max_attempts, n, 'max_attempts');
    dedupe_keys    := skiplock._broadcast(dedupe_keys, n, 'dedupe_keys');
    dedupe_windows := skiplock._broadcast(dedupe_windows, n, 'dedupe_windows');
    retry_policies := skiplock._broadcast(retry_policies, n, 'retry_policies');

    IF NOT names_ok THEN
        SELECT min(x.ord) INTO bad_ord
        FROM unnest(queues, tasks) WITH ORDINALITY AS x(queue, task, ord)
        WHERE NOT skiplock._is_queue_name(x.queue) OR NOT skiplock._is_task_name(x.task);
        PERFORM skiplock._check_job(queues[bad_ord], tasks[bad_ord], args[bad_ord], priorities[bad_ord],
                                    delays[bad_ord], max_attempts[bad_ord], dedupe_keys[bad_ord], bad_ord);
    END IF;
    -- The two rarer options are checked in a pass of their own, only when given.
    IF dedupe_windows IS NOT NULL THEN
        PERFORM skiplock._check_window(w.key, w.win, w.ord)
        FROM unnest(dedupe_keys, dedupe_windows) WITH ORDINALITY AS w(key, win, ord)
        WHERE w.win IS NOT NULL;
    END IF;
    IF retry_policies IS NOT NULL THEN
        PERFORM skiplock._check_retry_policy(p.policy, p.ord)
        FROM unnest(retry_policies) WITH ORDINALITY AS p(policy, ord)
        WHERE p.policy IS NOT NULL;
    END IF;

    -- Check the other fields and insert in one pass: a row failing the cheap inline predicate
    -- makes _check_job raise its message, which aborts the statement, so nothing of the batch is
    -- written. Without dedupe keys, rows are inserted in input order, so the ids the sequence
    -- gives them increase in input order too. With keys, rows carrying a key go first, in key
    -- order: concurrent producers then wait on each other's keys in one order and cannot
    -- deadlock; keyless rows follow in input order. The statement is built once per call so
    -- that a batch without dedupe keys skips ON CONFLICT (speculative insertion costs ~15% of a
    -- keyless batch); planning it costs far less than a batch's insert.
    EXECUTE format($sql$
        WITH ins AS (
            INSERT INTO skiplock.job AS j (queue, task, args, state, priority, max_attempts, run_at,
                                           created_at, dedupe_key, retry_policy)
            SELECT u.queue, u.task, COALESCE(u.args, '{}'),
                   CASE WHEN t.due > $9 THEN 'scheduled' ELSE 'available' END::skiplock.job_state,
                   COALESCE(u.priority, 0)::smallint, COALESCE(u.max_attempts, 10), t.due, $9, u.dedupe_key,
                   u.retry_policy
            FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $11)
                 WITH ORDINALITY AS u(queue, task, args, priority, run_at, delay, max_attempts, dedupe_key,
                                      retry_policy, ord)
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
            ORDER BY %1$s
            %2$s
            RETURNING j.id, j.queue, j.state, j.dedupe_key
        ),
        woken AS (
            SELECT skiplock._notify(array_agg(DISTINCT i.queue) FILTER (WHERE i.state = 'available')) AS n
            FROM ins AS i
        )
        SELECT array_agg(i.id ORDER BY i.id) FILTER (WHERE i.dedupe_key IS NULL),
               array_agg(i.dedupe_key ORDER BY i.dedupe_key) FILTER (WHERE i.dedupe_key IS NOT NULL),
               array_agg(i.id ORDER BY i.dedupe_key) FILTER (WHERE i.dedupe_key IS NOT NULL)
        FROM woken LEFT JOIN ins AS i ON true
    $sql$,
        CASE WHEN dedupe_keys IS NULL THEN 'u.ord' ELSE 'u.dedupe_key IS NULL, u.dedupe_key, u.ord' END,
        CASE WHEN dedupe_keys IS NULL THEN '' ELSE 'ON CONFLICT DO NOTHING' END)
    INTO ids, inserted_keys, key_ids
    USING queues, tasks, args, priorities, run_ats, delays, max_attempts, dedupe_keys, as_of, max_bytes,
          retry_policies;

    IF dedupe_keys IS NULL THEN
        RETURN QUERY SELECT unnest(ids);
        RETURN;
    END IF;

    -- Keys with a window that this call inserted, whose key a job completed within the window
    -- (seen now, in a new statement): undo those inserts and answer with the completed job.
    IF dedupe_windows IS NOT NULL THEN
        WITH win AS (
            SELECT w.key, max(w.win) AS win
            FROM unnest(dedupe_keys, dedupe_windows) AS w(key, win)
            WHERE w.key IS NOT NULL AND w.win IS NOT NULL
            GROUP BY w.key
        )
        SELECT array_agg(m.id), array_agg(d.id)
        INTO undone, done_ids
        FROM unnest(inserted_keys, key_ids) AS m(key, id)
        JOIN win ON win.key = m.key
        CROSS JOIN LATERAL skiplock._recently_completed(m.key, as_of - win.win) AS d
        WHERE d.id IS NOT NULL;
        IF undone IS NOT NULL THEN
            DELETE FROM skiplock.job AS j WHERE j.id = ANY (undone);
            SELECT array_agg(COALESCE(d.done_id, m.id) ORDER BY m.ord) INTO key_ids
            FROM unnest(key_ids) WITH ORDINALITY AS m(id, ord)
            LEFT JOIN unnest(undone, done_ids) AS d(undone_id, done_id) ON d.undone_id = m.id;
        END IF;
    END IF;

    -- Some jobs carried dedupe keys: put each job's id back at its position. Keyless jobs were
    -- all inserted, in input order: the k-th keyless job has the k-th smallest keyless id. A key
    -- inserted by this call maps to its new job (every occurrence of it in the batch); any other
    -- key to the live job holding it, or within its window to the job that completed. This is a
    -- new statement, so under READ COMMITTED it sees a holder another transaction committed
    -- while our INSERT waited on it.
    FOR attempt IN 1..5 LOOP
        WITH numbered AS (
            SELECT k.ord, k.key, k.win,
                   row_number() OVER (PARTITION BY k.key IS NULL ORDER BY k.ord) AS k
            FROM unnest(dedupe_keys, COALESCE(dedupe_windows, array_fill(NULL::interval, ARRAY[n])))
                 WITH ORDINALITY AS k(key, win, ord)
        ),
        inserted AS (
            SELECT m.key, m.id FROM unnest(inserted_keys, key_ids) AS m(key, id)
        )
        SELECT array_agg(CASE WHEN nb.key IS NULL THEN ids[nb.k]
                              ELSE COALESCE(ins.id,
                                            (SELECT j.id FROM skiplock.job AS j WHERE j.dedupe_key = nb.key),
                                            CASE WHEN nb.win IS NOT NULL
                                                 THEN (skiplock._recently_completed(nb.key, as_of - nb.win)).id END)
                         END ORDER BY nb.ord)
        INTO resolved
        FROM numbered AS nb LEFT JOIN inserted AS ins ON ins.key = nb.key;
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
            as_of,
            CASE WHEN dedupe_windows IS NOT NULL
                 THEN ARRAY(SELECT dedupe_windows[o] FROM unnest(redo) WITH ORDINALITY AS x(o, i) ORDER BY i) END,
            CASE WHEN retry_policies IS NOT NULL
                 THEN ARRAY(SELECT retry_policies[o] FROM unnest(redo) WITH ORDINALITY AS x(o, i) ORDER BY i) END
        ) AS e(id);
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

-- fail: as in 0005, with the job's own retry policy between an explicit retry_in and the
-- default skiplock.backoff().
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
            run_at = fail.as_of + COALESCE(fail.retry_in, skiplock.retry_delay(j.retry_policy, j.attempt),
                                           skiplock.backoff(j.attempt)),
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
