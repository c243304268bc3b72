-- sql/functions/workflow.sql: Workflows: jobs that wait for other jobs, and how a finishing parent resolves them.
-- The current definitions (CREATE OR REPLACE), applied by the migrator in the order of
-- manifest.txt and re-applied when this file changes.

-- _check_dependencies: validate the depends_on and on_parent_failure arrays of a batch (one
-- element per job, already broadcast), raising 22023 with a message naming the job by position.
-- A job's depends_on is NULL or a JSON array of parents; a parent is a job id (positive), -k for
-- the k-th job of the same batch (1-based, before this one), or an object {"job": <either>,
-- "on_failure": "cancel"|"run"} that overrides the job's on_parent_failure for that edge.
CREATE OR REPLACE FUNCTION skiplock._check_dependencies(depends_on jsonb[], on_parent_failure text[])
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
        PERFORM skiplock._invalid(format('on_parent_failure must be cancel or run, got %s (batch position %s)',
                                         skiplock._show(bad.mode), bad.ord));
    END IF;
    SELECT d.ord, jsonb_typeof(d.deps) AS kind INTO bad
    FROM unnest(depends_on) WITH ORDINALITY AS d(deps, ord)
    WHERE d.deps IS NOT NULL AND jsonb_typeof(d.deps) <> 'array'
    LIMIT 1;
    IF FOUND THEN
        PERFORM skiplock._invalid(format('depends_on must be a JSON array of jobs, got %s (batch position %s)',
                                         bad.kind, bad.ord));
    END IF;
    SELECT d.ord, jsonb_array_length(d.deps) AS n INTO bad
    FROM unnest(depends_on) WITH ORDINALITY AS d(deps, ord)
    WHERE jsonb_array_length(d.deps) > max_parents
    LIMIT 1;
    IF FOUND THEN
        PERFORM skiplock._invalid(format('the job at batch position %s has %s parents, more than the limit of %s', bad.ord, bad.n,
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
            format('batch position %s: a parent must be a job id, -k for the k-th job of the batch, or {"job": id, "on_failure": "cancel"|"run"}; got %s',
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
            CASE WHEN bad.k = bad.ord THEN format('the job at batch position %s depends on itself', bad.ord)
                 ELSE format('the job at batch position %s depends on batch position %s, which does not come before it', bad.ord, bad.k)
            END,
            'list parents before their children (a topological order); a cycle cannot be written');
    END IF;
    RETURN true;
END;
$$;

-- _cancel_children: cancel waiting jobs because a parent did not complete: each child id with the
-- id of the parent to blame, recorded as a ParentFailed error. Returns the jobs it cancelled (their
-- insert into history fires the dependency trigger, unless the caller suppressed it).
CREATE OR REPLACE FUNCTION skiplock._cancel_children(children bigint[], culprits bigint[], at timestamptz)
RETURNS TABLE (id bigint, state skiplock.job_state)
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY
    WITH removed AS (
        DELETE FROM skiplock.job AS j
        USING unnest(_cancel_children.children, _cancel_children.culprits) AS c(id, culprit)
        WHERE j.id = c.id AND c.culprit IS NOT NULL AND j.state = 'waiting'
        RETURNING j AS job, c.culprit
    )
    INSERT INTO skiplock.job_history
    SELECT (skiplock._history_row(
        r.job, 'cancelled', _cancel_children.at,
        errors => (r.job).errors || jsonb_build_array(skiplock._error_entry(
            (r.job).attempt, NULL, _cancel_children.at, format('parent job %s did not complete', r.culprit),
            'ParentFailed', NULL)))).*
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
CREATE OR REPLACE FUNCTION skiplock._link_parents(
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
        PERFORM skiplock._invalid(format('the job at batch position %s depends on job %s, which does not exist', bad.ord, bad.parent_id));
    END IF;

    SELECT x.ord, x.parent_id INTO bad
    FROM unnest(e_child, e_parent, e_ord) AS x(child_id, parent_id, ord)
    WHERE x.parent_id >= x.child_id
    ORDER BY x.ord LIMIT 1;
    IF FOUND THEN
        PERFORM skiplock._invalid(format('the job at batch position %s depends on job %s, which was not enqueued before it',
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
CREATE OR REPLACE FUNCTION skiplock._resolve_dependents()
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

-- The trigger that resolves workflow edges: once per statement that finishes jobs.
CREATE OR REPLACE TRIGGER job_history_resolve_dependents
    AFTER INSERT ON skiplock.job_history
    REFERENCING NEW TABLE AS finished
    FOR EACH STATEMENT
    EXECUTE FUNCTION skiplock._resolve_dependents();

-- job_graph: the workflow a job belongs to (every job connected to it through dependencies,
-- up to 100,000), one row per job with its direct parents. Rows whose history was dropped by
-- retention are left out. Runs as its owner: callers need no table privilege.
CREATE OR REPLACE FUNCTION skiplock.job_graph(job_id bigint)
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
CREATE OR REPLACE FUNCTION skiplock.parent_results(job_id bigint)
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
