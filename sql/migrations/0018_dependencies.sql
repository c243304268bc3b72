-- 0018_dependencies: jobs that wait for other jobs (workflows).
--
-- A job enqueued with parents (depends_on) starts in the new state `waiting` and becomes due, in
-- the database, in the transaction that finishes its last unfinished parent. A parent that ends
-- failed or cancelled either cancels the child (on_failure 'cancel', the default) or counts as
-- finished (on_failure 'run': the child runs anyway, and reads the outcome with parent_results).
--
--   skiplock.job_dependency  one row per edge (parent_id, child_id, on_failure). `resolved` is set
--                            when the parent finishes; rows are kept for inspection (job_graph,
--                            parent_results) and pruned by drop_partitions with history.
--   skiplock.job.pending_parents  how many of a waiting job's parents have not finished. Each
--                            finishing parent decrements it by one: a fan-in of n parents costs n
--                            single-row updates, never a recount.
--
-- Every path that finishes a job (complete, fail, reap, cancel, release) inserts it into
-- skiplock.job_history; one statement-level trigger there resolves the edges of the jobs the
-- statement finished, in the same transaction. Cascades run as a loop inside that one trigger
-- call (a chain of any length costs no stack), so no child is ever stranded in `waiting`: a
-- parent that crashes its worker and is reaped to `failed` cancels its descendants in the
-- reaper's transaction.
--
-- Graphs cannot have cycles: a job's parents must exist when it is enqueued, and inside one
-- enqueue_many batch a job may only name jobs that come before it. Parents therefore always have
-- smaller ids than their children, and every function locks parents before children, in id
-- order (no deadlocks). Enqueueing a child takes FOR KEY SHARE on its live parents until the
-- transaction commits, so a parent cannot finish unseen between the check and the commit.
--
-- Migrations note: adds an enum value (usable once this migration commits), a column with a
-- default (no rewrite), a table, a trigger on job_history and functions; enqueue/enqueue_many
-- gain two parameters at the end (calls by position keep working); retry, drop_partitions,
-- heartbeat and set_progress are replaced (same signatures). The job_live_state constraint is
-- replaced (validated without blocking writes).

ALTER TYPE skiplock.job_state ADD VALUE IF NOT EXISTS 'waiting' BEFORE 'scheduled';

ALTER TABLE skiplock.job ADD COLUMN pending_parents integer NOT NULL DEFAULT 0;

-- Written without naming the new value, which cannot be used before this transaction commits.
ALTER TABLE skiplock.job DROP CONSTRAINT job_live_state;
ALTER TABLE skiplock.job ADD CONSTRAINT job_live_state
    CHECK (state NOT IN ('completed', 'failed', 'cancelled')) NOT VALID;
ALTER TABLE skiplock.job VALIDATE CONSTRAINT job_live_state;

CREATE TABLE skiplock.job_dependency (
    parent_id  bigint      NOT NULL,
    child_id   bigint      NOT NULL,
    on_failure text        NOT NULL DEFAULT 'cancel',
    resolved   boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT job_dependency_pkey PRIMARY KEY (parent_id, child_id),
    CONSTRAINT job_dependency_on_failure CHECK (on_failure IN ('cancel', 'run')),
    CONSTRAINT job_dependency_order CHECK (parent_id < child_id)
);
CREATE INDEX job_dependency_child_idx ON skiplock.job_dependency (child_id);
-- Edges whose parent has not finished: what a finishing statement looks up. Small (only work in
-- flight), and empty when no workflow is running, which makes the trigger's check one probe.
CREATE INDEX job_dependency_pending_idx ON skiplock.job_dependency (parent_id) WHERE NOT resolved;
CREATE INDEX job_dependency_created_idx ON skiplock.job_dependency USING brin (created_at);


-- _job_from_history: a history row as a skiplock.job value (what enqueue returns for a job that
-- is already finished).
CREATE FUNCTION skiplock._job_from_history(h skiplock.job_history)
RETURNS skiplock.job
LANGUAGE plpgsql
IMMUTABLE
AS $$
DECLARE
    j skiplock.job;
BEGIN
    j.id := h.id; j.queue := h.queue; j.task := h.task; j.args := h.args; j.state := h.state;
    j.priority := h.priority; j.attempt := h.attempt; j.max_attempts := h.max_attempts;
    j.run_at := h.run_at; j.created_at := h.created_at; j.attempted_at := h.attempted_at;
    j.worker_id := h.worker_id; j.dedupe_key := h.dedupe_key; j.cancel_requested := false;
    j.errors := h.errors; j.pending_parents := 0;
    RETURN j;
END;
$$;


-- _check_dependencies: validate the depends_on and on_parent_failure arrays of a batch (one
-- element per job, already broadcast), raising 22023 with a message naming the job by position.
-- A job's depends_on is NULL or a JSON array of parents; a parent is a job id (positive), -k for
-- the k-th job of the same batch (1-based, before this one), or an object {"job": <either>,
-- "on_failure": "cancel"|"run"} that overrides the job's on_parent_failure for that edge.
CREATE FUNCTION skiplock._check_dependencies(depends_on jsonb[], on_parent_failure text[])
RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE
AS $$
DECLARE
    max_parents integer := skiplock._setting('max_parents', 100000);
    bad         record;
BEGIN
    SELECT f.ord, f.mode INTO bad
    FROM unnest(on_parent_failure) WITH ORDINALITY AS f(mode, ord)
    WHERE f.mode IS NOT NULL AND f.mode NOT IN ('cancel', 'run')
    LIMIT 1;
    IF FOUND THEN
        PERFORM skiplock._invalid(format('on_parent_failure must be cancel or run, got %s (job %s)',
                                         skiplock._show(bad.mode), bad.ord));
    END IF;
    SELECT d.ord, jsonb_typeof(d.deps) AS kind INTO bad
    FROM unnest(depends_on) WITH ORDINALITY AS d(deps, ord)
    WHERE d.deps IS NOT NULL AND jsonb_typeof(d.deps) <> 'array'
    LIMIT 1;
    IF FOUND THEN
        PERFORM skiplock._invalid(format('depends_on must be a JSON array of jobs, got %s (job %s)',
                                         bad.kind, bad.ord));
    END IF;
    SELECT d.ord, jsonb_array_length(d.deps) AS n INTO bad
    FROM unnest(depends_on) WITH ORDINALITY AS d(deps, ord)
    WHERE jsonb_array_length(d.deps) > max_parents
    LIMIT 1;
    IF FOUND THEN
        PERFORM skiplock._invalid(format('job %s has %s parents, more than the limit of %s', bad.ord, bad.n,
                                         max_parents), 'raise skiplock.max_parents, or group the parents');
    END IF;
    SELECT d.ord, e.value AS ref INTO bad
    FROM unnest(depends_on) WITH ORDINALITY AS d(deps, ord)
    CROSS JOIN LATERAL jsonb_array_elements(d.deps) AS e(value)
    CROSS JOIN LATERAL (SELECT CASE WHEN jsonb_typeof(e.value) = 'object' THEN e.value -> 'job' ELSE e.value END AS ref)
        AS r
    WHERE NOT (jsonb_typeof(r.ref) = 'number' AND r.ref::text ~ '^-?[0-9]{1,18}$' AND r.ref::text::bigint <> 0
               AND (jsonb_typeof(e.value) <> 'object'
                    OR ((e.value - 'job' - 'on_failure') = '{}'::jsonb
                        AND COALESCE(e.value ->> 'on_failure', 'cancel') IN ('cancel', 'run'))))
    LIMIT 1;
    IF FOUND THEN
        PERFORM skiplock._invalid(
            format('job %s: a parent must be a job id, -k for the k-th job of the batch, or {"job": id, "on_failure": "cancel"|"run"}; got %s',
                   bad.ord, left(bad.ref::text, 100)));
    END IF;
    SELECT d.ord, -r.ref AS k INTO bad
    FROM unnest(depends_on) WITH ORDINALITY AS d(deps, ord)
    CROSS JOIN LATERAL jsonb_array_elements(d.deps) AS e(value)
    CROSS JOIN LATERAL (SELECT (CASE WHEN jsonb_typeof(e.value) = 'object' THEN e.value -> 'job' ELSE e.value END)::text::bigint
                        AS ref) AS r
    WHERE r.ref < 0 AND -r.ref >= d.ord
    LIMIT 1;
    IF FOUND THEN
        PERFORM skiplock._invalid(
            CASE WHEN bad.k = bad.ord THEN format('job %s depends on itself', bad.ord)
                 ELSE format('job %s depends on job %s of the batch, which does not come before it', bad.ord, bad.k)
            END,
            'list parents before their children (a topological order); a cycle cannot be written');
    END IF;
    RETURN true;
END;
$$;


-- _cancel_children: cancel waiting jobs because a parent did not complete: each child id with the
-- id of the parent to blame, recorded as a ParentFailed error. Returns the jobs it cancelled (their
-- insert into history fires the dependency trigger, unless the caller suppressed it).
CREATE FUNCTION skiplock._cancel_children(children bigint[], culprits bigint[], at timestamptz)
RETURNS TABLE (id bigint, state skiplock.job_state)
LANGUAGE plpgsql  -- not sql: its body names the enum value this migration adds
AS $$
BEGIN
    RETURN QUERY
    WITH removed AS (
        DELETE FROM skiplock.job AS j
        USING unnest(_cancel_children.children, _cancel_children.culprits) AS c(id, culprit)
        WHERE j.id = c.id AND c.culprit IS NOT NULL AND j.state = 'waiting'
        RETURNING j.*, c.culprit
    )
    INSERT INTO skiplock.job_history (id, queue, task, args, state, priority, attempt, max_attempts,
                                      run_at, created_at, attempted_at, worker_id, dedupe_key,
                                      errors, finished_at, result)
    SELECT r.id, r.queue, r.task, r.args, 'cancelled', r.priority, r.attempt, r.max_attempts,
           r.run_at, r.created_at, r.attempted_at, r.worker_id, r.dedupe_key,
           r.errors || jsonb_build_array(skiplock._error_entry(
               r.attempt, NULL, _cancel_children.at, format('parent job %s did not complete', r.culprit),
               'ParentFailed', NULL)),
           _cancel_children.at, NULL
    FROM removed AS r
    RETURNING job_history.id, job_history.state;
END;
$$;


-- _link_parents: the dependency half of enqueue_many, run after its insert. `ids` maps each
-- batch position to its job id; `mine` says which of those jobs this call inserted (a job
-- returned for its dedupe key keeps the parents it has). Inserts the edges of the jobs it
-- inserted, locks their live parents (FOR KEY SHARE, id order) and sets each child: waiting for
-- its unfinished parents, due when none is left, or cancelled at once when a parent already
-- failed or was cancelled and the edge says cancel.
CREATE FUNCTION skiplock._link_parents(
    ids               bigint[],
    mine              boolean[],
    depends_on        jsonb[],
    on_parent_failure text[],
    as_of             timestamptz
)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    bad       record;
    e_child   bigint[];
    e_parent  bigint[];
    e_cancels boolean[];
    e_ord     bigint[];
    p_ids     bigint[];
    p_states  skiplock.job_state[];
    pending   bigint[];
    culprits  bigint[];
    n         bigint;
BEGIN
    SELECT array_agg(x.child_id), array_agg(x.parent_id), array_agg(x.cancels), array_agg(x.ord)
    INTO e_child, e_parent, e_cancels, e_ord
    FROM (
        SELECT ids[d.ord] AS child_id, CASE WHEN r.ref < 0 THEN ids[-r.ref] ELSE r.ref END AS parent_id,
               bool_or(COALESCE(r.mode, on_parent_failure[d.ord], 'cancel') = 'cancel') AS cancels,
               min(d.ord) AS ord
        FROM unnest(depends_on) WITH ORDINALITY AS d(deps, ord)
        CROSS JOIN LATERAL jsonb_array_elements(d.deps) AS e(value)
        CROSS JOIN LATERAL (
            SELECT (CASE WHEN jsonb_typeof(e.value) = 'object' THEN e.value -> 'job' ELSE e.value END)::text::bigint
                       AS ref,
                   CASE WHEN jsonb_typeof(e.value) = 'object' THEN e.value ->> 'on_failure' END AS mode
        ) AS r
        WHERE mine[d.ord]
        GROUP BY 1, 2
    ) AS x;
    IF e_child IS NULL THEN
        RETURN;
    END IF;

    -- Lock the live parents in id order: none of them can finish before this transaction commits,
    -- so none finishes without seeing the edges below.
    p_ids := ARRAY(SELECT DISTINCT p FROM unnest(e_parent) AS p ORDER BY p);
    PERFORM 1 FROM (SELECT j.id FROM skiplock.job AS j WHERE j.id = ANY (p_ids) ORDER BY j.id FOR KEY SHARE) AS l;

    -- A new statement: it sees the final state of a parent that finished while we waited for it.
    SELECT array_agg(COALESCE(j.state, h.state) ORDER BY p.ord) INTO p_states
    FROM unnest(p_ids) WITH ORDINALITY AS p(id, ord)
    LEFT JOIN skiplock.job AS j ON j.id = p.id
    LEFT JOIN LATERAL (SELECT x.state FROM skiplock.job_history AS x WHERE x.id = p.id LIMIT 1) AS h ON j.id IS NULL;

    SELECT e.ord, e.parent_id INTO bad
    FROM unnest(e_parent, e_ord) AS e(parent_id, ord)
    JOIN unnest(p_ids, p_states) AS s(id, state) ON s.id = e.parent_id
    WHERE s.state IS NULL
    ORDER BY e.ord LIMIT 1;
    IF FOUND THEN
        PERFORM skiplock._invalid(format('job %s depends on job %s, which does not exist', bad.ord, bad.parent_id));
    END IF;

    SELECT x.ord, x.parent_id INTO bad
    FROM unnest(e_child, e_parent, e_ord) AS x(child_id, parent_id, ord)
    WHERE x.parent_id >= x.child_id
    ORDER BY x.ord LIMIT 1;
    IF FOUND THEN
        PERFORM skiplock._invalid(format('job %s depends on job %s, which was not enqueued before it',
                                         bad.ord, bad.parent_id),
                                  'parents must exist (or come earlier in the batch) when a job is enqueued');
    END IF;

    INSERT INTO skiplock.job_dependency (parent_id, child_id, on_failure, resolved, created_at)
    SELECT e.parent_id, e.child_id, CASE WHEN e.cancels THEN 'cancel' ELSE 'run' END,
           s.state IN ('completed', 'failed', 'cancelled'), as_of
    FROM unnest(e_child, e_parent, e_cancels) AS e(child_id, parent_id, cancels)
    JOIN unnest(p_ids, p_states) AS s(id, state) ON s.id = e.parent_id;

    -- Children whose parents are all finished become due now; a parent that failed or was
    -- cancelled on a cancelling edge cancels the child (and, through the history trigger, its
    -- descendants in this batch).
    SELECT array_agg(c.child_id ORDER BY c.child_id), array_agg(c.pending ORDER BY c.child_id),
           array_agg(c.culprit ORDER BY c.child_id)
    INTO e_child, pending, culprits
    FROM (
        SELECT e.child_id,
               count(*) FILTER (WHERE s.state NOT IN ('completed', 'failed', 'cancelled')) AS pending,
               min(e.parent_id) FILTER (WHERE e.cancels AND s.state IN ('failed', 'cancelled')) AS culprit
        FROM unnest(e_child, e_parent, e_cancels) AS e(child_id, parent_id, cancels)
        JOIN unnest(p_ids, p_states) AS s(id, state) ON s.id = e.parent_id
        GROUP BY e.child_id
    ) AS c;
    WITH set_up AS (
        UPDATE skiplock.job AS j
        SET pending_parents = c.pending,
            state = CASE WHEN c.pending > 0 THEN 'waiting'
                         WHEN j.run_at > as_of THEN 'scheduled'
                         ELSE 'available' END::skiplock.job_state
        FROM unnest(e_child, pending, culprits) AS c(child_id, pending, culprit)
        WHERE j.id = c.child_id AND c.culprit IS NULL
        RETURNING j.queue, j.state
    )
    SELECT count(*) INTO n
    FROM (SELECT skiplock._notify(array_agg(s.queue) FILTER (WHERE s.state = 'available')) FROM set_up AS s) AS done;
    PERFORM skiplock._cancel_children(e_child, culprits, as_of);
END;
$$;


-- _resolve_dependents: AFTER INSERT ... FOR EACH STATEMENT on job_history. For the jobs the
-- statement finished: mark their edges resolved; cancel the waiting children on a cancelling
-- edge from a parent that failed or was cancelled (then do the same for those children, in a
-- loop); count the others down and make the ones with no parent left due (notifying their
-- queues). Children are locked in id order. With no unfinished parent anywhere it costs one
-- probe of an empty index; otherwise one probe per finished job.
CREATE FUNCTION skiplock._resolve_dependents()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ids      bigint[];
    states   skiplock.job_state[];
    at       timestamptz;
    children bigint[];
    counts   bigint[];
    culprits bigint[];
    woken    bigint;
BEGIN
    -- This function's own cascade inserts into history too; the loop below handles those rows.
    IF current_setting('skiplock.cascading', true) = 'on' THEN
        RETURN NULL;
    END IF;
    -- No workflow in flight (the usual case): one probe of an empty index.
    PERFORM 1 FROM skiplock.job_dependency AS d WHERE NOT d.resolved LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT array_agg(f.id), array_agg(f.state), max(f.finished_at) INTO ids, states, at FROM finished AS f;
    WHILE ids IS NOT NULL LOOP
        WITH edges AS (
            UPDATE skiplock.job_dependency AS d
            SET resolved = true
            FROM unnest(ids, states) AS f(id, state)
            WHERE d.parent_id = f.id AND NOT d.resolved
            RETURNING d.child_id, d.parent_id, (f.state <> 'completed' AND d.on_failure = 'cancel') AS cancels
        ),
        per_child AS (
            SELECT e.child_id, count(*) AS n, min(e.parent_id) FILTER (WHERE e.cancels) AS culprit
            FROM edges AS e GROUP BY e.child_id
        )
        SELECT array_agg(c.child_id ORDER BY c.child_id), array_agg(c.n ORDER BY c.child_id),
               array_agg(c.culprit ORDER BY c.child_id)
        INTO children, counts, culprits
        FROM per_child AS c;
        EXIT WHEN children IS NULL;

        PERFORM 1 FROM (SELECT j.id FROM skiplock.job AS j
                        WHERE j.id = ANY (children) AND j.state = 'waiting'
                        ORDER BY j.id FOR UPDATE) AS l;

        -- New statements from here: they see the latest version of each child, which we hold.
        WITH u AS (
            UPDATE skiplock.job AS j
            SET pending_parents = j.pending_parents - c.n,
                state = CASE WHEN j.pending_parents - c.n > 0 THEN 'waiting'
                             WHEN j.run_at > at THEN 'scheduled'
                             ELSE 'available' END::skiplock.job_state
            FROM unnest(children, counts, culprits) AS c(id, n, culprit)
            WHERE j.id = c.id AND c.culprit IS NULL AND j.state = 'waiting'
            RETURNING j.queue, j.state
        )
        SELECT count(*) INTO woken FROM (
            SELECT skiplock._notify(array_agg(u.queue) FILTER (WHERE u.state = 'available')) FROM u
        ) AS x;

        PERFORM set_config('skiplock.cascading', 'on', true);
        SELECT array_agg(k.id), array_agg(k.state) INTO ids, states
        FROM skiplock._cancel_children(children, culprits, at) AS k;
        PERFORM set_config('skiplock.cascading', 'off', true);
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE TRIGGER job_history_resolve_dependents
    AFTER INSERT ON skiplock.job_history
    REFERENCING NEW TABLE AS finished
    FOR EACH STATEMENT
    EXECUTE FUNCTION skiplock._resolve_dependents();


DROP FUNCTION skiplock.enqueue(text, text, jsonb, integer, timestamptz, interval, integer, text, timestamptz,
                               interval, jsonb);

-- enqueue: insert one job and return it (see 0010), now with parents: depends_on is a JSON array
-- of existing job ids (or {"job": id, "on_failure": "cancel"|"run"} objects) and
-- on_parent_failure the default for its edges. Such a job is returned `waiting` until its
-- parents finish, or already `cancelled` when a parent failed on a cancelling edge.
CREATE FUNCTION skiplock.enqueue(
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

DROP FUNCTION skiplock.enqueue_many(text[], text[], jsonb[], integer[], timestamptz[], interval[], integer[],
                                    text[], timestamptz, interval[], jsonb[]);

-- enqueue_many: as in 0010, plus parents. depends_on holds one JSON array of parents per job (see
-- _check_dependencies: a job id, -k for the k-th job of this batch, or an object with
-- on_failure); on_parent_failure ('cancel' or 'run') is each job's default for its edges. A batch
-- is a whole graph in one call and one transaction. A job with parents is inserted `waiting`;
-- it is due once they finish. With parents, a batch is inserted in input order even when it
-- carries dedupe keys (parents keep smaller ids than their children); two such batches racing
-- on the same keys in opposite orders can deadlock, and PostgreSQL then aborts one of them.
CREATE FUNCTION skiplock.enqueue_many(
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


-- retry: as in 0001; a job brought back from failed or cancelled that has parents waits again
-- for the ones still live (and only for those: a parent that failed no longer holds it back, the
-- caller chose to run it), and its edges from them are unresolved again.
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


-- drop_partitions: as in 0011, and drop the dependency edges older than the retention whose
-- child has finished (its history goes with the partitions).
CREATE OR REPLACE FUNCTION skiplock.drop_partitions(
    retention interval    DEFAULT '7 days',
    as_of     timestamptz DEFAULT now()
)
RETURNS SETOF text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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
    DELETE FROM skiplock.job_dependency AS d
    WHERE d.created_at < cutoff
      AND NOT EXISTS (SELECT 1 FROM skiplock.job AS j WHERE j.id = d.child_id);
END;
$$;


-- job_graph: the workflow a job belongs to (every job connected to it through dependencies,
-- up to 100,000), one row per job with its direct parents. Rows whose history was dropped by
-- retention are left out. Runs as its owner: callers need no table privilege.
CREATE FUNCTION skiplock.job_graph(job_id bigint)
RETURNS TABLE (id bigint, queue text, task text, state skiplock.job_state, parents bigint[],
               on_failure text[], pending_parents integer, finished_at timestamptz)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE reach(id) AS (
        SELECT job_graph.job_id
        UNION
        SELECT CASE WHEN d.parent_id = r.id THEN d.child_id ELSE d.parent_id END
        FROM reach AS r
        JOIN skiplock.job_dependency AS d ON d.parent_id = r.id OR d.child_id = r.id
    ),
    nodes AS (
        SELECT r.id FROM reach AS r LIMIT 100000
    )
    SELECT n.id, x.queue, x.task, x.state,
           COALESCE(p.parents, '{}'), COALESCE(p.modes, '{}'), x.pending_parents, x.finished_at
    FROM nodes AS n
    CROSS JOIN LATERAL (
        SELECT j.queue, j.task, j.state, j.pending_parents, NULL::timestamptz AS finished_at
        FROM skiplock.job AS j WHERE j.id = n.id
        UNION ALL
        SELECT h.queue, h.task, h.state, 0, h.finished_at
        FROM skiplock.job_history AS h WHERE h.id = n.id
        LIMIT 1
    ) AS x
    LEFT JOIN LATERAL (
        SELECT array_agg(d.parent_id ORDER BY d.parent_id) AS parents,
               array_agg(d.on_failure ORDER BY d.parent_id) AS modes
        FROM skiplock.job_dependency AS d WHERE d.child_id = n.id
    ) AS p ON true
    ORDER BY n.id;
$$;


-- parent_results: a job's parents with their outcome: state, result (completed) and last error
-- (failed or cancelled), in parent id order. A child reads these when it runs (a group's callback
-- learns what happened to each member). Runs as its owner: callers need no table privilege.
CREATE FUNCTION skiplock.parent_results(job_id bigint)
RETURNS TABLE (parent_id bigint, task text, state skiplock.job_state, result jsonb, error text,
               on_failure text)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d.parent_id, x.task, x.state, x.result, x.errors -> -1 ->> 'error', d.on_failure
    FROM skiplock.job_dependency AS d
    CROSS JOIN LATERAL (
        SELECT h.task, h.state, h.result, h.errors FROM skiplock.job_history AS h WHERE h.id = d.parent_id
        UNION ALL
        SELECT j.task, j.state, NULL, j.errors FROM skiplock.job AS j WHERE j.id = d.parent_id
        LIMIT 1
    ) AS x
    WHERE d.child_id = parent_results.job_id
    ORDER BY d.parent_id;
$$;


-- _grant_roles: as in 0015, plus the workflow functions (job_graph, parent_results: they run as
-- their owner) for every role; the monitor reads job_dependency like every table.
CREATE OR REPLACE FUNCTION skiplock._grant_roles()
RETURNS TABLE (role_name text, granted boolean)
LANGUAGE plpgsql
AS $$
DECLARE
    roles   text[] := ARRAY['skiplock_producer', 'skiplock_worker', 'skiplock_monitor'];
    r       text;
    definer text;
BEGIN
    REVOKE ALL ON ALL FUNCTIONS IN SCHEMA skiplock FROM PUBLIC;

    FOREACH r IN ARRAY roles LOOP
        CONTINUE WHEN to_regrole(r) IS NOT NULL;
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        EXCEPTION
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'skiplock: role % does not exist and % may not create roles (needs CREATEROLE); skipped',
                    r, current_user
                    USING HINT = format('have a DBA run CREATE ROLE %I NOLOGIN, then run skiplock migrate --roles', r);
            WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created by a concurrent session (another database of the cluster migrating)
        END;
    END LOOP;

    FOREACH r IN ARRAY roles LOOP
        CONTINUE WHEN to_regrole(r) IS NULL;
        EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA skiplock FROM %I', r);
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA skiplock FROM %I', r);
        EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA skiplock FROM %I', r);
        EXECUTE format('REVOKE ALL ON SCHEMA skiplock FROM %I', r);
        EXECUTE format('GRANT USAGE ON SCHEMA skiplock TO %I', r);
        -- Migrator.check() (workers run it at start) reads the bookkeeping table.
        EXECUTE format('GRANT SELECT ON skiplock.migration TO %I', r);
    END LOOP;

    IF to_regrole('skiplock_producer') IS NOT NULL THEN
        -- Both run as their owner: no table privilege, no helper function needed.
        GRANT EXECUTE ON FUNCTION skiplock.enqueue, skiplock.enqueue_many TO skiplock_producer;
        GRANT SELECT ON skiplock.jobs TO skiplock_producer;
        -- Inspecting the workflows it enqueued (both run as their owner).
        GRANT EXECUTE ON FUNCTION skiplock.job_graph, skiplock.parent_results TO skiplock_producer;
    END IF;

    IF to_regrole('skiplock_worker') IS NOT NULL THEN
        -- The worker runtime's statements (sql/queries: job, worker, schedule, queue.rate_limits)
        -- and the helpers their bodies call as the invoker.
        GRANT EXECUTE ON FUNCTION
            skiplock.claim, skiplock.complete, skiplock.fail, skiplock.heartbeat, skiplock.release,
            skiplock.set_progress, skiplock.reap,
            skiplock.register_worker, skiplock.worker_heartbeat, skiplock.deregister_worker,
            skiplock.upsert_schedule, skiplock.fire_schedule,
            skiplock.ensure_partitions, skiplock.drop_partitions,
            skiplock.enqueue, skiplock.enqueue_many, skiplock.parent_results, skiplock.job_graph,
            skiplock.backoff, skiplock.retry_delay,
            skiplock._check_job, skiplock._check_cron, skiplock._check_tz, skiplock._error_entry,
            skiplock._invalid, skiplock._is_queue_name, skiplock._is_task_name, skiplock._limit_key,
            skiplock._notify, skiplock._notify_done, skiplock._setting, skiplock._show
        TO skiplock_worker;
        -- complete/fail/release/reap move rows out of job (DELETE) into history (INSERT ... RETURNING
        -- needs SELECT); claim and heartbeat update job; claim locks queue rows (FOR UPDATE needs
        -- UPDATE) and spends tokens; new jobs only come through enqueue, so no INSERT on job.
        -- The history trigger that resolves dependencies runs as its owner.
        GRANT SELECT, UPDATE, DELETE ON skiplock.job TO skiplock_worker;
        GRANT SELECT, INSERT ON skiplock.job_history TO skiplock_worker;
        GRANT SELECT, UPDATE ON skiplock.queue TO skiplock_worker;
        GRANT SELECT, INSERT, UPDATE, DELETE ON skiplock.queue_key_bucket TO skiplock_worker;
        GRANT SELECT, INSERT, UPDATE, DELETE ON skiplock.worker TO skiplock_worker;
        GRANT SELECT, INSERT, UPDATE ON skiplock.schedule TO skiplock_worker;
        -- It may read all of these tables already; the views add no data.
        GRANT SELECT ON skiplock.jobs, skiplock.queue_stats, skiplock.workers TO skiplock_worker;
        -- Delivering a webhook signs it with the webhook's secret (0015).
        GRANT SELECT ON skiplock.webhook TO skiplock_worker;
    END IF;

    IF to_regrole('skiplock_monitor') IS NOT NULL THEN
        GRANT SELECT ON ALL TABLES IN SCHEMA skiplock TO skiplock_monitor;
        GRANT EXECUTE ON FUNCTION skiplock.job_graph, skiplock.parent_results TO skiplock_monitor;
        -- Webhook secrets are not monitoring data: the monitor reads skiplock.webhooks instead.
        REVOKE SELECT ON skiplock.webhook FROM skiplock_monitor;
        -- History partitions created later (by ensure_partitions, as its owner) are readable too.
        SELECT pg_get_userbyid(p.proowner) INTO definer
        FROM pg_proc AS p
        WHERE p.oid = 'skiplock.ensure_partitions(integer, timestamptz)'::regprocedure;
        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA skiplock GRANT SELECT ON TABLES TO skiplock_monitor',
                       definer);
    END IF;

    RETURN QUERY
    SELECT x.r, to_regrole(x.r) IS NOT NULL
    FROM unnest(roles) WITH ORDINALITY AS x(r, ord)
    ORDER BY x.ord;
END;
$$;

-- heartbeat, set_progress: as in 0012, locking with FOR NO KEY UPDATE (they change no key):
-- a producer enqueueing a child holds FOR KEY SHARE on its live parents until it commits, and a
-- batched heartbeat must not wait for that transaction (its other jobs' leases would run out).
-- complete, fail and reap still wait: a parent must not finish before its new child is visible.
CREATE OR REPLACE FUNCTION skiplock.heartbeat(
    job_ids      bigint[],
    lease_tokens uuid[],
    lease        interval    DEFAULT '30 seconds',
    as_of        timestamptz DEFAULT now()
)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
DECLARE
    ids     bigint[] := heartbeat.job_ids;
    tokens  uuid[]   := heartbeat.lease_tokens;
    locked  bigint[];
    changed bigint[];
BEGIN
    FOR pass IN 1..2 LOOP
        WITH input AS MATERIALIZED (
            SELECT u.id, u.lease_token
            FROM unnest(ids, tokens) AS u(id, lease_token)
            ORDER BY u.id
        ),
        held AS MATERIALIZED (
            SELECT j.id, j.ctid AS tid
            FROM input AS i
            CROSS JOIN LATERAL (
                SELECT x.id, x.ctid FROM skiplock.job AS x
                WHERE x.id = i.id AND x.lease_token = i.lease_token AND x.state = 'running'
                FOR NO KEY UPDATE
            ) AS j
        ),
        extended AS (
            UPDATE skiplock.job AS j
            SET lease_expires_at = heartbeat.as_of + heartbeat.lease
            FROM held AS l
            WHERE j.ctid = l.tid
            RETURNING j.id
        )
        SELECT (SELECT array_agg(l.id) FROM held AS l), (SELECT array_agg(e.id) FROM extended AS e)
        INTO locked, changed;
        RETURN QUERY SELECT unnest(changed);
        EXIT WHEN COALESCE(cardinality(locked), 0) = COALESCE(cardinality(changed), 0);
        SELECT array_agg(u.id), array_agg(u.lease_token) INTO ids, tokens
        FROM unnest(ids, tokens) AS u(id, lease_token)
        WHERE u.id = ANY (locked) AND NOT u.id = ANY (COALESCE(changed, '{}'));
    END LOOP;
END;
$$;

CREATE OR REPLACE FUNCTION skiplock.set_progress(
    job_ids      bigint[],
    lease_tokens uuid[],
    progress     double precision[],
    messages     text[] DEFAULT NULL
)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
DECLARE
    bad     double precision;
    ids     bigint[]           := set_progress.job_ids;
    tokens  uuid[]             := set_progress.lease_tokens;
    pcts    double precision[] := set_progress.progress;
    msgs    text[]             := set_progress.messages;
    locked  bigint[];
    changed bigint[];
BEGIN
    SELECT p INTO bad FROM unnest(pcts) AS p
    WHERE p IS NULL OR p < 0 OR p > 100 OR p = 'NaN' LIMIT 1;
    IF FOUND THEN
        PERFORM skiplock._invalid(format('progress must be between 0 and 100, got %s', COALESCE(bad::text, 'NULL')));
    END IF;
    FOR pass IN 1..2 LOOP
        WITH input AS MATERIALIZED (
            SELECT u.id, u.lease_token, u.progress, left(u.message, 1000) AS message
            FROM unnest(ids, tokens, pcts, msgs) AS u(id, lease_token, progress, message)
            ORDER BY u.id
        ),
        held AS MATERIALIZED (
            SELECT j.id, j.ctid AS tid, i.progress, i.message
            FROM input AS i
            CROSS JOIN LATERAL (
                SELECT x.id, x.ctid FROM skiplock.job AS x
                WHERE x.id = i.id AND x.lease_token = i.lease_token AND x.state = 'running'
                FOR NO KEY UPDATE
            ) AS j
        ),
        reported AS (
            UPDATE skiplock.job AS j
            SET progress = l.progress, progress_message = l.message
            FROM held AS l
            WHERE j.ctid = l.tid
            RETURNING j.id
        )
        SELECT (SELECT array_agg(l.id) FROM held AS l), (SELECT array_agg(r.id) FROM reported AS r)
        INTO locked, changed;
        RETURN QUERY SELECT unnest(changed);
        EXIT WHEN COALESCE(cardinality(locked), 0) = COALESCE(cardinality(changed), 0);
        SELECT array_agg(u.id), array_agg(u.lease_token), array_agg(u.progress), array_agg(u.message)
        INTO ids, tokens, pcts, msgs
        FROM unnest(ids, tokens, pcts, msgs) AS u(id, lease_token, progress, message)
        WHERE u.id = ANY (locked) AND NOT u.id = ANY (COALESCE(changed, '{}'));
    END LOOP;
END;
$$;


-- jobs: as in 0005, plus pending_parents (0 for finished jobs).
CREATE OR REPLACE VIEW skiplock.jobs AS
    SELECT j.id, j.queue, j.task, j.args, j.state, j.priority, j.attempt, j.max_attempts,
           j.run_at, j.created_at, j.attempted_at, j.lease_expires_at, j.worker_id, j.dedupe_key,
           j.cancel_requested, j.errors, NULL::timestamptz AS finished_at, NULL::jsonb AS result,
           j.progress, j.progress_message, j.pending_parents
    FROM skiplock.job AS j
    UNION ALL
    SELECT h.id, h.queue, h.task, h.args, h.state, h.priority, h.attempt, h.max_attempts,
           h.run_at, h.created_at, h.attempted_at, NULL, h.worker_id, h.dedupe_key,
           false, h.errors, h.finished_at, h.result, NULL, NULL, 0
    FROM skiplock.job_history AS h;

SELECT * FROM skiplock._grant_roles();
