-- sql/functions/enqueue.sql: Enqueueing: validation, dedupe keys and windows, one job and batches.
-- The current definitions (CREATE OR REPLACE), applied by the migrator in the order of
-- manifest.txt and re-applied when this file changes.

-- _check_job: validate one job's fields, raising invalid_parameter_value (22023) with a clear
-- message for the first problem; returns true when all is well. The single source of the
-- validation rules and messages: enqueue calls it once; enqueue_many calls it only for a row its
-- cheap inline predicate rejected, to raise the right message.
CREATE OR REPLACE FUNCTION skiplock._check_job(
    queue        text,
    task         text,
    args         jsonb,
    priority     integer,
    delay        interval,
    max_attempts integer,
    dedupe_key   text,
    ord          bigint DEFAULT NULL
)
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    max_bytes integer := skiplock._setting('max_args_bytes', 262144);
BEGIN
    IF NOT skiplock._is_queue_name(_check_job.queue) THEN
        PERFORM skiplock._invalid(
            format('invalid queue name %s%s', skiplock._show(_check_job.queue), skiplock._at(_check_job.ord)),
            'queue names are 1-63 characters of letters, digits and _ . : - and start with a letter or digit');
    END IF;
    IF NOT skiplock._is_task_name(_check_job.task) THEN
        PERFORM skiplock._invalid(
            format('invalid task name %s%s', skiplock._show(_check_job.task), skiplock._at(_check_job.ord)),
            'task names are 1-200 characters of letters, digits and _ . : - < > and start with a letter, digit or _');
    END IF;
    IF jsonb_typeof(_check_job.args) <> 'object' THEN
        PERFORM skiplock._invalid(
            format('args must be a JSON object, got %s%s', jsonb_typeof(_check_job.args), skiplock._at(_check_job.ord)));
    END IF;
    IF pg_column_size(_check_job.args) > max_bytes THEN
        PERFORM skiplock._invalid(
            format('args of %s bytes exceed the limit of %s bytes%s',
                   pg_column_size(_check_job.args), max_bytes, skiplock._at(_check_job.ord)),
            'store large payloads elsewhere and pass a reference, or raise skiplock.max_args_bytes');
    END IF;
    IF _check_job.priority NOT BETWEEN -32768 AND 32767 THEN
        PERFORM skiplock._invalid(
            format('priority %s out of range -32768..32767%s', _check_job.priority, skiplock._at(_check_job.ord)));
    END IF;
    IF _check_job.max_attempts NOT BETWEEN 1 AND 1000 THEN
        PERFORM skiplock._invalid(
            format('max_attempts %s out of range 1..1000%s', _check_job.max_attempts, skiplock._at(_check_job.ord)));
    END IF;
    IF _check_job.delay < interval '0' THEN
        PERFORM skiplock._invalid(
            format('delay must not be negative, got %s%s', justify_interval(_check_job.delay), skiplock._at(_check_job.ord)));
    END IF;
    IF octet_length(_check_job.dedupe_key) NOT BETWEEN 1 AND 512 THEN
        PERFORM skiplock._invalid(format('dedupe_key must be 1-512 bytes%s', skiplock._at(_check_job.ord)));
    END IF;
    RETURN true;
END;
$$;

-- _recently_completed: the newest completed job holding `key` that finished at or after
-- `since`, as a skiplock.job value (state 'completed'), or NULL.
CREATE OR REPLACE FUNCTION skiplock._recently_completed(key text, since timestamptz)
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
CREATE OR REPLACE FUNCTION skiplock._check_window(dedupe_key text, dedupe_window interval, ord bigint DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE
AS $$
BEGIN
    IF dedupe_window IS NOT NULL AND dedupe_key IS NULL THEN
        PERFORM skiplock._invalid(format('dedupe_window needs a dedupe_key%s', skiplock._at(ord)));
    END IF;
    IF dedupe_window < interval '0' THEN
        PERFORM skiplock._invalid(format('dedupe_window must not be negative, got %s%s', justify_interval(dedupe_window), skiplock._at(ord)));
    END IF;
    RETURN true;
END;
$$;

-- enqueue_many: insert a batch of jobs in one statement and return their ids in input order.
-- Every array has one element per job, or exactly one element that applies to all of them;
-- NULL (or a NULL element) means the default. A job whose dedupe_key matches a live job is not
-- inserted: the existing job's id is returned in its place, and no error is raised (safe inside
-- the caller's transaction); with a dedupe window, a job that completed within it counts too.
-- retry_policies are stored on the jobs (see retry_delay).
-- Parents: depends_on holds one JSON array of parents per job (see _check_dependencies: a job
-- id, -k for the k-th job of this batch, or an object with on_failure); on_parent_failure
-- ('cancel' or 'run') is each job's default for its edges. A batch is a whole graph in one call
-- and one transaction. A job with parents is inserted `waiting`; it is due once they finish.
-- Validation (names, args object and size, priority, attempts, policies, parents, batch size)
-- happens before anything is written: a rejected call writes nothing.
-- Concurrency: any number of callers. Rows that carry a dedupe key are inserted in key order, so
-- producers racing on the same keys take them in one order (no deadlocks); with parents a batch
-- is inserted in input order even when it carries keys (parents keep smaller ids than their
-- children), so two such batches racing on the same keys in opposite orders can deadlock, and
-- PostgreSQL then aborts one. Cost: one INSERT ... SELECT FROM unnest, one NOTIFY per queue.
-- SECURITY DEFINER with a pinned search_path: a producer needs no privilege on skiplock.job
-- (with INSERT it could write a row in any state, with any lease token).
CREATE OR REPLACE FUNCTION skiplock.enqueue_many(
    queues            text[],
    tasks             text[],
    args              jsonb[]       DEFAULT NULL,
    priorities        integer[]     DEFAULT NULL,
    run_ats           timestamptz[] DEFAULT NULL,
    delays            interval[]    DEFAULT NULL,
    max_attempts      integer[]     DEFAULT NULL,
    dedupe_keys       text[]        DEFAULT NULL,
    as_of             timestamptz   DEFAULT now(),
    dedupe_windows    interval[]    DEFAULT NULL,
    retry_policies    jsonb[]       DEFAULT NULL,
    depends_on        jsonb[]       DEFAULT NULL,
    on_parent_failure text[]        DEFAULT NULL
)
RETURNS SETOF bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- The body's statements have plans that do not depend on the values passed: plan them once per
-- session instead of per call (custom plans cost more than a small batch's insert).
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_variable
DECLARE
    n             integer := greatest(cardinality(queues), cardinality(tasks), cardinality(args),
                                      cardinality(priorities), cardinality(run_ats), cardinality(delays),
                                      cardinality(max_attempts), cardinality(dedupe_keys),
                                      cardinality(dedupe_windows), cardinality(retry_policies),
                                      cardinality(depends_on), cardinality(on_parent_failure));
    max_batch     integer := skiplock._setting('max_batch_size', 10000);
    max_bytes     integer := skiplock._setting('max_args_bytes', 262144);
    graph         boolean;
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
    mine_ids      bigint[];
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
    queues            := skiplock._broadcast(queues, n, 'queues');
    tasks             := skiplock._broadcast(tasks, n, 'tasks');
    args              := skiplock._broadcast(args, n, 'args');
    priorities        := skiplock._broadcast(priorities, n, 'priorities');
    run_ats           := skiplock._broadcast(run_ats, n, 'run_ats');
    delays            := skiplock._broadcast(delays, n, 'delays');
    max_attempts      := skiplock._broadcast(max_attempts, n, 'max_attempts');
    dedupe_keys       := skiplock._broadcast(dedupe_keys, n, 'dedupe_keys');
    dedupe_windows    := skiplock._broadcast(dedupe_windows, n, 'dedupe_windows');
    retry_policies    := skiplock._broadcast(retry_policies, n, 'retry_policies');
    depends_on        := skiplock._broadcast(depends_on, n, 'depends_on');
    on_parent_failure := skiplock._broadcast(on_parent_failure, n, 'on_parent_failure');

    IF NOT names_ok THEN
        SELECT min(x.ord) INTO bad_ord
        FROM unnest(queues, tasks) WITH ORDINALITY AS x(queue, task, ord)
        WHERE NOT skiplock._is_queue_name(x.queue) OR NOT skiplock._is_task_name(x.task);
        PERFORM skiplock._check_job(queues[bad_ord], tasks[bad_ord], args[bad_ord], priorities[bad_ord],
                                    delays[bad_ord], max_attempts[bad_ord], dedupe_keys[bad_ord], bad_ord);
    END IF;
    -- The rarer options are checked in a pass of their own, only when given.
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
    graph := depends_on IS NOT NULL OR on_parent_failure IS NOT NULL;
    IF graph THEN
        PERFORM skiplock._check_dependencies(depends_on, on_parent_failure);
        graph := EXISTS (SELECT 1 FROM unnest(depends_on) AS d WHERE jsonb_array_length(d) > 0);
    END IF;

    -- Check the other fields and insert in one pass: a row failing the cheap inline predicate
    -- makes _check_job raise its message, which aborts the statement, so nothing of the batch is
    -- written. Without dedupe keys, rows are inserted in input order, so the ids the sequence
    -- gives them increase in input order too. With keys, rows carrying a key go first, in key
    -- order: concurrent producers then wait on each other's keys in one order and cannot
    -- deadlock; keyless rows follow in input order (a batch with parents keeps input order, see
    -- above). Jobs with parents start `waiting`. The statement is built once per call so that
    -- a batch without dedupe keys skips ON CONFLICT (speculative insertion costs ~15% of a
    -- keyless batch); planning it costs far less than a batch's insert.
    EXECUTE format($sql$
        WITH ins AS (
            INSERT INTO skiplock.job AS j (queue, task, args, state, priority, max_attempts, run_at,
                                           created_at, dedupe_key, retry_policy)
            SELECT u.queue, u.task, COALESCE(u.args, '{}'),
                   CASE WHEN jsonb_array_length(u.deps) > 0 THEN 'waiting'
                        WHEN t.due > $9 THEN 'scheduled' ELSE 'available' END::skiplock.job_state,
                   COALESCE(u.priority, 0)::smallint, COALESCE(u.max_attempts, 10), t.due, $9, u.dedupe_key,
                   u.retry_policy
            FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $11, $12)
                 WITH ORDINALITY AS u(queue, task, args, priority, run_at, delay, max_attempts, dedupe_key,
                                      retry_policy, deps, ord)
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
        CASE WHEN dedupe_keys IS NULL OR graph THEN 'u.ord' ELSE 'u.dedupe_key IS NULL, u.dedupe_key, u.ord' END,
        CASE WHEN dedupe_keys IS NULL THEN '' ELSE 'ON CONFLICT DO NOTHING' END)
    INTO ids, inserted_keys, key_ids
    USING queues, tasks, args, priorities, run_ats, delays, max_attempts, dedupe_keys, as_of, max_bytes,
          retry_policies, depends_on;

    IF dedupe_keys IS NULL THEN
        IF graph THEN
            PERFORM skiplock._link_parents(ids, array_fill(true, ARRAY[n]), depends_on, on_parent_failure, as_of);
        END IF;
        RETURN QUERY SELECT unnest(ids);
        RETURN;
    END IF;
    -- Jobs this call inserted (a job with parents keeps the parents it was enqueued with).
    mine_ids := COALESCE(ids, '{}') || COALESCE(key_ids, '{}');

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
        -- enqueue those jobs again (rare; bounded by the loop). Parents inside the batch cannot
        -- be carried over to such a job: the caller retries the transaction.
        SELECT array_agg(r.ord ORDER BY r.ord) INTO redo
        FROM unnest(resolved) WITH ORDINALITY AS r(id, ord) WHERE r.id IS NULL;
        IF graph THEN
            RAISE EXCEPTION USING ERRCODE = '40001',
                MESSAGE = 'skiplock: a dedupe key of this graph was freed while it was enqueued; retry the transaction';
        END IF;
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
    IF graph THEN
        mine_ids := ARRAY(SELECT m FROM unnest(mine_ids) AS m WHERE NOT m = ANY (COALESCE(undone, '{}')));
        PERFORM skiplock._link_parents(resolved, ARRAY(SELECT r = ANY (mine_ids) FROM unnest(resolved) AS r),
                                       depends_on, on_parent_failure, as_of);
    END IF;
    RETURN QUERY SELECT unnest(resolved);
END;
$$;

-- enqueue: insert one job and return it, or the live job already holding dedupe_key, or (with
-- dedupe_window) the job holding it that completed within the window, unchanged.
-- `SELECT skiplock.enqueue('emails', 'send_welcome', '{"user_id": 7}')` works from psql, any
-- language and triggers. run_at wins over delay; with neither, the job is due at once.
-- retry_policy is stored on the job (see retry_delay). depends_on is a JSON array of existing job
-- ids (or {"job": id, "on_failure": "cancel"|"run"} objects) and on_parent_failure the default for
-- its edges: such a job is returned `waiting` until its parents finish, or already `cancelled`
-- when a parent failed on a cancelling edge.
-- Concurrency: any number of callers. Cost: one INSERT (a lean path: single-job enqueue is
-- dominated by per-call overhead, so it does not go through enqueue_many), one NOTIFY if due;
-- with a window, one index probe of history before and one after the insert.
-- SECURITY DEFINER with a pinned search_path, as enqueue_many.
CREATE OR REPLACE FUNCTION skiplock.enqueue(
    queue             text,
    task              text,
    args              jsonb       DEFAULT '{}',
    priority          integer     DEFAULT 0,
    run_at            timestamptz DEFAULT NULL,
    delay             interval    DEFAULT NULL,
    max_attempts      integer     DEFAULT 10,
    dedupe_key        text        DEFAULT NULL,
    as_of             timestamptz DEFAULT now(),
    dedupe_window     interval    DEFAULT NULL,
    retry_policy      jsonb       DEFAULT NULL,
    depends_on        jsonb       DEFAULT NULL,
    on_parent_failure text        DEFAULT NULL
)
RETURNS skiplock.job
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    j    skiplock.job;
    done skiplock.job;
    due  timestamptz := COALESCE(enqueue.run_at, enqueue.as_of + enqueue.delay, enqueue.as_of);
    new_id bigint;
    h      skiplock.job_history;
BEGIN
    IF enqueue.depends_on IS NOT NULL OR enqueue.on_parent_failure IS NOT NULL THEN
        -- The batch path knows parents; a job alone can only name existing jobs.
        IF jsonb_typeof(enqueue.depends_on) = 'array' AND EXISTS (
            SELECT 1 FROM jsonb_array_elements(enqueue.depends_on) AS e(v)
            WHERE (CASE WHEN jsonb_typeof(e.v) = 'object' THEN e.v -> 'job' ELSE e.v END)::text ~ '^-') THEN
            PERFORM skiplock._invalid('a job enqueued alone can only depend on existing job ids (positive numbers)');
        END IF;
        SELECT e.id INTO new_id
        FROM skiplock.enqueue_many(ARRAY[enqueue.queue], ARRAY[enqueue.task], ARRAY[COALESCE(enqueue.args, '{}')],
                                   ARRAY[enqueue.priority], ARRAY[enqueue.run_at], ARRAY[enqueue.delay],
                                   ARRAY[enqueue.max_attempts], ARRAY[enqueue.dedupe_key], enqueue.as_of,
                                   ARRAY[enqueue.dedupe_window], ARRAY[enqueue.retry_policy],
                                   ARRAY[enqueue.depends_on], ARRAY[enqueue.on_parent_failure]) AS e(id);
        SELECT * INTO j FROM skiplock.job AS x WHERE x.id = new_id;
        IF j.id IS NOT NULL THEN
            RETURN j;
        END IF;
        SELECT * INTO h FROM skiplock.job_history AS x WHERE x.id = new_id LIMIT 1;
        RETURN skiplock._job_from_history(h);
    END IF;
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
