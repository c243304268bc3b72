-- Named statements over the job functions, with psycopg placeholders: %(name)s for text
-- parameters, %(name)b where binary transfer saves work on the worker's hot path (arrays of ids
-- and lease tokens). Every parameter is cast, so no statement depends on inferred types.

-- name: enqueue :one
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
SELECT set_config('skiplock.traceparent', %(traceparent)s::text, true) AS traceparent;

-- name: enqueue_many :many
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
SELECT id
FROM skiplock.heartbeat(
    job_ids => %(job_ids)b::bigint[],
    lease_tokens => %(lease_tokens)b::uuid[],
    lease => %(lease)s::interval
) AS id;

-- name: set_progress :many
SELECT id
FROM skiplock.set_progress(
    job_ids => %(job_ids)b::bigint[],
    lease_tokens => %(lease_tokens)b::uuid[],
    progress => %(progress)s::double precision[],
    messages => %(messages)s::text[]
) AS id;

-- name: cancel_requested :many
SELECT id
FROM skiplock.job
WHERE id = ANY(%(job_ids)b::bigint[]) AND cancel_requested;

-- name: release :many
SELECT id
FROM skiplock.release(
    job_ids => %(job_ids)s::bigint[],
    lease_tokens => %(lease_tokens)s::uuid[]
) AS id;

-- name: reap :many
SELECT job_id, state
FROM skiplock.reap(max_jobs => %(max_jobs)s::integer, as_of => coalesce(%(as_of)s::timestamptz, now()));

-- name: retry_failed :many
SELECT id
FROM skiplock.retry_failed(
    queue => %(queue)s::text,
    task => %(task)s::text,
    since => %(since)s::timestamptz,
    max_jobs => %(max_jobs)s::integer
) AS id;

-- name: purge :one
SELECT skiplock.purge(
    queue => %(queue)s::text,
    task => %(task)s::text,
    before => %(before)s::timestamptz,
    states => %(states)s::text[]::skiplock.job_state[],
    max_jobs => %(max_jobs)s::integer
) AS purged;

-- name: retry :many
SELECT id
FROM skiplock.retry(job_ids => %(job_ids)s::bigint[]) AS id;

-- name: cancel :many
SELECT job_id, state
FROM skiplock.cancel(job_ids => %(job_ids)s::bigint[]);

-- name: get_job :one
SELECT *
FROM skiplock.jobs
WHERE id = %(job_id)s::bigint;

-- name: job_graph :many
SELECT id, queue, task, state::text AS state, parents, on_failure, pending_parents, finished_at
FROM skiplock.job_graph(%(job_id)s::bigint);

-- name: parent_results :many
SELECT parent_id, task, state::text AS state, result, error, on_failure
FROM skiplock.parent_results(%(job_id)s::bigint);

-- name: list_jobs :many
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
SELECT queue, state::text AS state, count(*) AS jobs, sum(greatest(attempt - 1, 0)) AS retries
FROM skiplock.jobs
WHERE id BETWEEN %(lo)s::bigint AND %(hi)s::bigint
GROUP BY queue, state;
