-- sql/functions/common.sql: Shared helpers: settings, errors, names, notifications, the history row.
-- The current definitions (CREATE OR REPLACE), applied by the migrator in the order of
-- manifest.txt and re-applied when this file changes.

-- _setting: an integer limit from the custom GUC skiplock.<name> (ALTER DATABASE … SET
-- skiplock.max_args_bytes = …), else the default.
CREATE OR REPLACE FUNCTION skiplock._setting(name text, fallback integer)
RETURNS integer
LANGUAGE sql
STABLE
AS $$
    SELECT COALESCE(NULLIF(current_setting('skiplock.' || _setting.name, true), '')::integer,
                    _setting.fallback);
$$;

-- _invalid: raise invalid_parameter_value (22023) with a message. Returns its type so it can
-- stand inside CASE expressions; only ever evaluated on bad input.
CREATE OR REPLACE FUNCTION skiplock._invalid(message text, hint text DEFAULT NULL)
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
CREATE OR REPLACE FUNCTION skiplock._show(value text)
RETURNS text
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT CASE WHEN _show.value IS NULL THEN 'NULL'
                ELSE to_json(left(_show.value, 80))::text END;
$$;

-- ---------------------------------------------------------------------------------------------
-- Enqueue
-- ---------------------------------------------------------------------------------------------

-- _is_queue_name / _is_task_name: the naming rules, in one place (simple SQL, inlined by the planner).
CREATE OR REPLACE FUNCTION skiplock._is_queue_name(name text)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT COALESCE(_is_queue_name.name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$', false);
$$;

CREATE OR REPLACE FUNCTION skiplock._is_task_name(name text)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT COALESCE(_is_task_name.name ~ '^[A-Za-z0-9_][A-Za-z0-9_.:<>-]{0,199}$', false);
$$;

-- _broadcast: normalise one enqueue_many argument array to n elements (NULL stays NULL, a
-- single element is repeated), or raise when its length is neither 1 nor n.
CREATE OR REPLACE FUNCTION skiplock._broadcast(arr anyarray, n integer, name text)
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

-- _notify: wake the workers of each distinct queue once. Postgres also folds identical
-- notifications within one transaction, so a batch costs one NOTIFY per queue.
CREATE OR REPLACE FUNCTION skiplock._notify(queues text[])
RETURNS void
LANGUAGE sql
AS $$
    SELECT pg_notify('skiplock_insert', q)
    FROM (SELECT DISTINCT q FROM unnest(_notify.queues) AS q WHERE q IS NOT NULL) AS d;
$$;

-- _notify_done: one NOTIFY per distinct queue on skiplock_done.
CREATE OR REPLACE FUNCTION skiplock._notify_done(queues text[])
RETURNS integer
LANGUAGE sql
AS $$
    SELECT count(pg_notify('skiplock_done', q))::integer FROM (SELECT DISTINCT unnest(_notify_done.queues) AS q) AS d;
$$;

-- _error_entry: one element of job.errors.
CREATE OR REPLACE FUNCTION skiplock._error_entry(attempt integer, worker_id uuid, at timestamptz,
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

-- _job_from_history: a history row as a skiplock.job value (what enqueue returns for a job that
-- is already finished).
CREATE OR REPLACE FUNCTION skiplock._job_from_history(h skiplock.job_history)
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

-- _at: where in a batch a rejected job is, for error messages: " (batch position 3)", or
-- nothing for a single job (NULL).
CREATE OR REPLACE FUNCTION skiplock._at(ord bigint)
RETURNS text
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT CASE WHEN _at.ord IS NULL THEN '' ELSE format(' (batch position %s)', _at.ord) END;
$$;

-- _history_row: the history row of a live job that finishes: its columns, with its final state,
-- when it finished, its errors (by default the job's own) and its result. Every path that moves a
-- job into skiplock.job_history (complete, fail, release, reap, cancel, a workflow's cancelled
-- children) builds the row here, so the column list lives in one place:
--     INSERT INTO skiplock.job_history SELECT (skiplock._history_row(j, 'completed', now())).*
-- A single-expression SQL function: the planner inlines it, so the expansion costs no calls.
CREATE OR REPLACE FUNCTION skiplock._history_row(
    j           skiplock.job,
    state       skiplock.job_state,
    finished_at timestamptz,
    errors      jsonb DEFAULT NULL,
    result      jsonb DEFAULT NULL
)
RETURNS skiplock.job_history
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ROW(j.id, j.queue, j.task, j.args, state, j.priority, j.attempt, j.max_attempts, j.run_at,
               j.created_at, j.attempted_at, j.worker_id, j.dedupe_key, coalesce(errors, j.errors),
               finished_at, result)::skiplock.job_history
$$;
