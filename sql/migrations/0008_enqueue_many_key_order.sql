-- 0008_enqueue_many_key_order: concurrent producers enqueueing the same dedupe keys in
-- different orders could deadlock each other (a deadlock error inside the caller's
-- transaction). enqueue_many now inserts the rows that carry a key in key order, so all
-- producers take the keys in one order, and maps ids back to input positions by key.
--
-- Migrations note: replaces enqueue_many() (same signature, same results).

CREATE OR REPLACE FUNCTION skiplock.enqueue_many(
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
    key_ids       bigint[];
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
    -- written. Without dedupe keys, rows are inserted in input order, so the ids the sequence
    -- gives them increase in input order too. With keys, rows carrying a key go first, in key
    -- order: concurrent producers then wait on each other's keys in one order and cannot
    -- deadlock; keyless rows follow in input order. The statement is built once per call so
    -- that a batch without dedupe keys skips ON CONFLICT (speculative insertion costs ~15% of a
    -- keyless batch); planning it costs far less than a batch's insert.
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
    USING queues, tasks, args, priorities, run_ats, delays, max_attempts, dedupe_keys, as_of, max_bytes;

    IF dedupe_keys IS NULL THEN
        RETURN QUERY SELECT unnest(ids);
        RETURN;
    END IF;

    -- Some jobs carried dedupe keys: put each job's id back at its position. Keyless jobs were
    -- all inserted, in input order: the k-th keyless job has the k-th smallest keyless id. A key
    -- inserted by this call maps to its new job (every occurrence of it in the batch); any other
    -- key to the live job holding it. This is a new statement, so under READ COMMITTED it sees a
    -- holder another transaction committed while our INSERT waited on it.
    FOR attempt IN 1..5 LOOP
        WITH numbered AS (
            SELECT k.ord, k.key, row_number() OVER (PARTITION BY k.key IS NULL ORDER BY k.ord) AS k
            FROM unnest(dedupe_keys) WITH ORDINALITY AS k(key, ord)
        ),
        inserted AS (
            SELECT m.key, m.id FROM unnest(inserted_keys, key_ids) AS m(key, id)
        )
        SELECT array_agg(CASE WHEN nb.key IS NULL THEN ids[nb.k]
                              ELSE COALESCE(ins.id, (SELECT j.id FROM skiplock.job AS j WHERE j.dedupe_key = nb.key))
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

