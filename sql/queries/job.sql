-- Named statements over the job functions, with psycopg placeholders: %(name)s for text
-- parameters, %(name)b where binary transfer saves work on the worker's hot path (arrays of ids
-- and lease tokens). Every parameter is cast, so no statement depends on inferred types.
--
-- The annotations of every file in sql/queries (tools/bindings.py generates the typed binders and
-- row types of skiplock._core.queries from them; tests/integration/test_named_queries.py
-- prepares each statement and compares what the server says with them):
--   -- name: claim :many         starts a block; :one and :many return rows, :exec returns none.
--   -- returns: id bigint, ...   the result columns in order, as format_type() names them
--                                (timestamptz for short); "type?" may be NULL. Required for
--                                :one and :many (SELECT * and function results hide them); the
--                                line may repeat, the lists join.
--   -- nullable: as_of, ...      parameters that may be NULL. A parameter the statement tests with
--                                "IS NULL" or passes to coalesce( is nullable without saying so.
-- Parameters are not declared: each is a placeholder, cast where it first appears
-- (%(queue)s::text), and cast the same way wherever it appears again.

-- name: enqueue :one
-- nullable: run_at, delay, max_attempts, dedupe_key, dedupe_window, retry_policy, depends_on
-- nullable: on_parent_failure
-- returns: id bigint, queue text, task text, args jsonb, state skiplock.job_state, priority smallint
-- returns: attempt integer, max_attempts integer, run_at timestamptz, created_at timestamptz
-- returns: attempted_at timestamptz?, lease_token uuid?, lease_expires_at timestamptz?
-- returns: worker_id uuid?, dedupe_key text?, cancel_requested boolean, errors jsonb
-- returns: progress double precision?, progress_message text?, retry_policy jsonb?, trace_parent text?
-- returns: pending_parents integer
SELECT *
FROM skiplock.enqueue(
    queue => %(queue)s::text,
    task => %(task)s::text,
    args => %(args)s::jsonb,
    priority => %(priority)s::integer,
    run_at => %(run_at)s::timestamptz,
    delay => %(delay)s::interval,
    max_attempts => %(max_attempts)s::integer,
    dedupe_key => %(dedupe_key)s::text,
    dedupe_window => %(dedupe_window)s::interval,
    retry_policy => %(retry_policy)s::jsonb,
    depends_on => %(depends_on)s::jsonb,
    on_parent_failure => %(on_parent_failure)s::text
);

-- name: set_traceparent :one
-- returns: traceparent text
SELECT set_config('skiplock.traceparent', %(traceparent)s::text, true) AS traceparent;

-- name: enqueue_many :many
-- nullable: queues, tasks, priorities, run_ats, delays, max_attempts, dedupe_keys, dedupe_windows
-- nullable: retry_policies, depends_on, on_parent_failure
-- returns: id bigint
SELECT id
FROM skiplock.enqueue_many(
    queues => %(queues)s::text[],
    tasks => %(tasks)s::text[],
    args => %(args)b::text[]::jsonb[],
    priorities => %(priorities)s::integer[],
    run_ats => %(run_ats)s::timestamptz[],
    delays => %(delays)s::interval[],
    max_attempts => %(max_attempts)s::integer[],
    dedupe_keys => %(dedupe_keys)s::text[],
    dedupe_windows => %(dedupe_windows)s::interval[],
    retry_policies => %(retry_policies)s::text[]::jsonb[],
    depends_on => %(depends_on)s::text[]::jsonb[],
    on_parent_failure => %(on_parent_failure)s::text[]
) AS id;

-- name: claim :many
-- returns: id bigint, queue text, task text, args jsonb, state skiplock.job_state, priority smallint
-- returns: attempt integer, max_attempts integer, run_at timestamptz, created_at timestamptz
-- returns: attempted_at timestamptz?, lease_token uuid?, lease_expires_at timestamptz?
-- returns: worker_id uuid?, dedupe_key text?, cancel_requested boolean, retry_policy jsonb?
-- returns: trace_parent text?
SELECT id, queue, task, args, state, priority, attempt, max_attempts, run_at, created_at,
       attempted_at, lease_token, lease_expires_at, worker_id, dedupe_key, cancel_requested, retry_policy,
       trace_parent
FROM skiplock.claim(
    queues => %(queues)s::text[],
    worker_id => %(worker_id)s::uuid,
    max_jobs => %(max_jobs)s::integer,
    lease => %(lease)s::interval,
    as_of => coalesce(%(as_of)s::timestamptz, now())  -- as_of: a test's or skiplock.testing's clock
);

-- name: complete :many
-- nullable: results
-- returns: id bigint
SELECT id
FROM skiplock.complete(
    job_ids => %(job_ids)b::bigint[],
    lease_tokens => %(lease_tokens)b::uuid[],
    results => %(results)s::text[]::jsonb[],
    -- by default the statement's time, not the transaction's: a task's job transaction
    -- completes it at its end
    as_of => coalesce(%(as_of)s::timestamptz, statement_timestamp())
) AS id;

-- name: fail :one
-- nullable: error_type, traceback, retry_in
-- returns: state skiplock.job_state?
SELECT skiplock.fail(
    job_id => %(job_id)s::bigint,
    lease_token => %(lease_token)s::uuid,
    error => %(error)s::text,
    error_type => %(error_type)s::text,
    traceback => %(traceback)s::text,
    retry_in => %(retry_in)s::interval,
    retryable => %(retryable)s::boolean,
    as_of => coalesce(%(as_of)s::timestamptz, now())
) AS state;

-- name: heartbeat :many
-- returns: id bigint
SELECT id
FROM skiplock.heartbeat(
    job_ids => %(job_ids)b::bigint[],
    lease_tokens => %(lease_tokens)b::uuid[],
    lease => %(lease)s::interval
) AS id;

-- name: set_progress :many
-- returns: id bigint
SELECT id
FROM skiplock.set_progress(
    job_ids => %(job_ids)b::bigint[],
    lease_tokens => %(lease_tokens)b::uuid[],
    progress => %(progress)s::double precision[],
    messages => %(messages)s::text[]
) AS id;

-- name: cancel_requested :many
-- returns: id bigint
SELECT id
FROM skiplock.job
WHERE id = ANY(%(job_ids)b::bigint[]) AND cancel_requested;

-- name: release :many
-- returns: id bigint
SELECT id
FROM skiplock.release(
    job_ids => %(job_ids)s::bigint[],
    lease_tokens => %(lease_tokens)s::uuid[]
) AS id;

-- name: reap :many
-- returns: job_id bigint?, state skiplock.job_state?
SELECT job_id, state
FROM skiplock.reap(max_jobs => %(max_jobs)s::integer, as_of => coalesce(%(as_of)s::timestamptz, now()));

-- name: retry_failed :many
-- nullable: queue, task, since
-- returns: id bigint
SELECT id
FROM skiplock.retry_failed(
    queue => %(queue)s::text,
    task => %(task)s::text,
    since => %(since)s::timestamptz,
    max_jobs => %(max_jobs)s::integer
) AS id;

-- name: purge :one
-- nullable: queue, task, before
-- returns: purged bigint
SELECT skiplock.purge(
    queue => %(queue)s::text,
    task => %(task)s::text,
    before => %(before)s::timestamptz,
    states => %(states)s::text[]::skiplock.job_state[],
    max_jobs => %(max_jobs)s::integer
) AS purged;

-- name: retry :many
-- returns: id bigint
SELECT id
FROM skiplock.retry(job_ids => %(job_ids)s::bigint[]) AS id;

-- name: cancel :many
-- returns: job_id bigint?, state skiplock.job_state?
SELECT job_id, state
FROM skiplock.cancel(job_ids => %(job_ids)s::bigint[]);

-- name: get_job :one
-- returns: id bigint?, queue text?, task text?, args jsonb?, state skiplock.job_state?
-- returns: priority smallint?, attempt integer?, max_attempts integer?, run_at timestamptz?
-- returns: created_at timestamptz?, attempted_at timestamptz?, lease_expires_at timestamptz?
-- returns: worker_id uuid?, dedupe_key text?, cancel_requested boolean?, errors jsonb?
-- returns: finished_at timestamptz?, result jsonb?, progress double precision?, progress_message text?
-- returns: pending_parents integer?
SELECT *
FROM skiplock.jobs
WHERE id = %(job_id)s::bigint;

-- name: job_graph :many
-- returns: id bigint?, queue text?, task text?, state text?, parents bigint[]?, on_failure text[]?
-- returns: pending_parents integer?, finished_at timestamptz?
SELECT id, queue, task, state::text AS state, parents, on_failure, pending_parents, finished_at
FROM skiplock.job_graph(%(job_id)s::bigint);

-- name: parent_results :many
-- returns: parent_id bigint?, task text?, state text?, result jsonb?, error text?, on_failure text?
SELECT parent_id, task, state::text AS state, result, error, on_failure
FROM skiplock.parent_results(%(job_id)s::bigint);

-- name: list_jobs :many
-- returns: id bigint?, queue text?, task text?, args jsonb?, state skiplock.job_state?
-- returns: priority smallint?, attempt integer?, max_attempts integer?, run_at timestamptz?
-- returns: created_at timestamptz?, attempted_at timestamptz?, lease_expires_at timestamptz?
-- returns: worker_id uuid?, dedupe_key text?, cancel_requested boolean?, errors jsonb?
-- returns: finished_at timestamptz?, result jsonb?, progress double precision?, progress_message text?
-- returns: pending_parents integer?
SELECT *
FROM skiplock.jobs
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(state)s::skiplock.job_state IS NULL OR state = %(state)s::skiplock.job_state)
  AND (%(task)s::text IS NULL OR task = %(task)s::text)
  AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
ORDER BY id DESC
LIMIT %(limit)s::integer;

-- name: job_range_stats :many
-- returns: queue text, state text, jobs bigint, retries bigint?
SELECT queue, state::text AS state, count(*) AS jobs, sum(greatest(attempt - 1, 0)) AS retries
FROM skiplock.jobs
WHERE id BETWEEN %(lo)s::bigint AND %(hi)s::bigint
GROUP BY queue, state;
