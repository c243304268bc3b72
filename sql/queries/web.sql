-- Statements of the web dashboard (`skiplock web`): reads of the views and catalogs, and bulk
-- actions that pass the ids a filter selects to the same skiplock.retry / skiplock.cancel the CLI
-- calls. Every filter argument is optional (NULL: no filter).

-- name: web_search_top :one
-- returns: top bigint?
-- Where a page of web_search_jobs starts: one above the highest job id below before_id (all jobs
-- when NULL); NULL when no job is left below it. One backward probe of each id index, also in a
-- generic plan (hence coalesce rather than "IS NULL OR", which a generic plan cannot fold).
SELECT max(id) + 1 AS top
FROM skiplock.jobs
WHERE id < coalesce(%(before_id)s::bigint, 9223372036854775807);

-- name: web_search_jobs :many
-- returns: id bigint?, queue text?, task text?, state text?, attempt integer?, max_attempts integer?
-- returns: priority smallint?, created_at timestamptz?, run_at timestamptz?, finished_at timestamptz?
-- returns: args_preview text?, last_error text?
-- One page of the job search, newest first, among the ids in [top - window, top): a page never
-- examines more than `window` jobs, so a filter that matches little costs the same bounded walk
-- as one that matches everything (ids come from one sequence, so the range holds at most
-- `window` jobs). The next page starts below the smallest id shown, or, after a short page, at
-- top - window. ORDER BY id over the jobs view is a merge of backward range scans of job_pkey
-- and of each history partition's id index, each stopping at the window's floor.
SELECT id, queue, task, state::text AS state, attempt, max_attempts, priority, created_at, run_at,
       finished_at, left(args::text, 300) AS args_preview,
       errors -> -1 ->> 'error' AS last_error
FROM skiplock.jobs
WHERE id < %(top)s::bigint
  AND id >= %(top)s::bigint - %(window)s::integer
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(state)s::skiplock.job_state IS NULL OR state = %(state)s::skiplock.job_state)
  AND (%(task)s::text IS NULL OR task = %(task)s::text)
  AND (%(args_path)s::jsonpath IS NULL OR args @@ %(args_path)s::jsonpath)
  AND (%(error)s::text IS NULL OR (errors <> '[]' AND EXISTS (
        SELECT 1 FROM jsonb_array_elements(errors) AS e
        WHERE strpos(lower(e ->> 'error'), lower(%(error)s::text)) > 0)))
  AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)
  AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s::timestamptz)
ORDER BY id DESC
LIMIT %(limit)s::integer;

-- name: web_count_jobs :one
-- returns: jobs bigint, max_id bigint?
-- How many jobs a bulk action would touch (counted up to cap + 1, so the count stays cheap), and
-- the highest id among them: the action then touches no job enqueued after the confirmation.
SELECT count(*) AS jobs, max(id) AS max_id
FROM (
    SELECT id
    FROM skiplock.jobs
    WHERE state = ANY (%(states)s::skiplock.job_state[])
      AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
      AND (%(state)s::skiplock.job_state IS NULL OR state = %(state)s::skiplock.job_state)
      AND (%(task)s::text IS NULL OR task = %(task)s::text)
      AND (%(args_path)s::jsonpath IS NULL OR args @@ %(args_path)s::jsonpath)
      AND (%(error)s::text IS NULL OR EXISTS (
            SELECT 1 FROM jsonb_array_elements(errors) AS e
            WHERE strpos(lower(e ->> 'error'), lower(%(error)s::text)) > 0))
      AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)
      AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s::timestamptz)
    ORDER BY id DESC
    LIMIT %(cap)s::integer + 1
) AS matched;

-- name: web_bulk_retry :many
-- returns: id bigint
-- Run again (skiplock.retry) the failed, cancelled, scheduled and retryable jobs a filter selects,
-- ids up to max_id only, at most cap of them.
SELECT id
FROM skiplock.retry(job_ids => ARRAY(
    SELECT id
    FROM skiplock.jobs
    WHERE state IN ('failed', 'cancelled', 'scheduled', 'retryable')
      AND id <= %(max_id)s::bigint
      AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
      AND (%(state)s::skiplock.job_state IS NULL OR state = %(state)s::skiplock.job_state)
      AND (%(task)s::text IS NULL OR task = %(task)s::text)
      AND (%(args_path)s::jsonpath IS NULL OR args @@ %(args_path)s::jsonpath)
      AND (%(error)s::text IS NULL OR EXISTS (
            SELECT 1 FROM jsonb_array_elements(errors) AS e
            WHERE strpos(lower(e ->> 'error'), lower(%(error)s::text)) > 0))
      AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)
      AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s::timestamptz)
    ORDER BY id DESC
    LIMIT %(cap)s::integer
)) AS id;

-- name: web_bulk_cancel :many
-- returns: job_id bigint?, state text?
-- Cancel (skiplock.cancel) the live jobs a filter selects, ids up to max_id only, at most cap.
SELECT job_id, state::text AS state
FROM skiplock.cancel(job_ids => ARRAY(
    SELECT id
    FROM skiplock.job
    WHERE id <= %(max_id)s::bigint
      AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
      AND (%(state)s::skiplock.job_state IS NULL OR state = %(state)s::skiplock.job_state)
      AND (%(task)s::text IS NULL OR task = %(task)s::text)
      AND (%(args_path)s::jsonpath IS NULL OR args @@ %(args_path)s::jsonpath)
      AND (%(error)s::text IS NULL OR EXISTS (
            SELECT 1 FROM jsonb_array_elements(errors) AS e
            WHERE strpos(lower(e ->> 'error'), lower(%(error)s::text)) > 0))
      AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)
      AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s::timestamptz)
    ORDER BY id DESC
    LIMIT %(cap)s::integer
));

-- name: web_queue :one
-- returns: name text, paused_at timestamptz?, paused_until timestamptz?, concurrency_limit integer?
-- returns: rate_limit double precision?, rate_burst integer?, key_arg text?
-- returns: key_concurrency_limit integer?, key_rate_limit double precision?, key_rate_burst integer?
-- One queue's row (pause and limits); NULL fields when it has none.
SELECT name, paused_at, paused_until, concurrency_limit, rate_limit, rate_burst, key_arg,
       key_concurrency_limit, key_rate_limit, key_rate_burst
FROM skiplock.queue
WHERE name = %(queue)s::text;

-- name: web_tables :many
-- returns: name name?, live bigint?, dead bigint?, vacuumed_at timestamptz?, bytes bigint?
-- The skiplock tables' live and dead rows, sizes and last vacuum (pg_stat_user_tables).
SELECT s.relname AS name, s.n_live_tup AS live, s.n_dead_tup AS dead,
       greatest(s.last_vacuum, s.last_autovacuum) AS vacuumed_at,
       pg_total_relation_size(s.relid) AS bytes
FROM pg_stat_user_tables AS s
WHERE s.schemaname = 'skiplock'
ORDER BY s.n_dead_tup DESC, s.relname;

-- name: web_partitions :many
-- returns: name name, bounds text?, rows_estimate bigint?, bytes bigint?
-- The history partitions, oldest first, with estimated rows and size.
SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bounds,
       greatest(c.reltuples, 0)::bigint AS rows_estimate, pg_total_relation_size(c.oid) AS bytes
FROM pg_inherits AS i
JOIN pg_class AS c ON c.oid = i.inhrelid
WHERE i.inhparent = 'skiplock.job_history'::regclass
ORDER BY c.relname;

-- name: web_notify_usage :one
-- returns: usage double precision?
SELECT pg_notification_queue_usage() AS usage;

-- name: web_monitor_role :one
-- returns: usable boolean
-- Whether this login may SET ROLE skiplock_monitor (the role exists and it is a member).
SELECT COALESCE((SELECT pg_has_role(current_user, r.oid, 'MEMBER')
                 FROM pg_roles AS r WHERE r.rolname = 'skiplock_monitor'), false) AS usable;

-- name: web_sees_all_sessions :one
-- returns: sees boolean
-- Whether this session sees other sessions' transactions in pg_stat_activity (superusers and
-- members of pg_read_all_stats, which pg_monitor includes): without it the xmin-horizon checks of
-- skiplock.health cannot name a session of another user.
SELECT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS sees;

-- name: web_current_user :one
-- returns: role text
-- The role the dashboard's connections run as (after any SET ROLE), shown in its header.
SELECT current_user::text AS role;

-- name: web_set_monitor_role :exec
-- A read-only dashboard's connections run as skiplock_monitor when web_monitor_role says the login may.
SET ROLE skiplock_monitor;
