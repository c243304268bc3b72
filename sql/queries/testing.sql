-- Statements of skiplock.testing (drain jobs in-process at a controllable time): the worker's,
-- with an explicit as_of.

-- name: testing_now :one
SELECT now() AS now;

-- name: testing_claim :many
SELECT *
FROM skiplock.claim(
    queues => %(queues)s::text[],
    worker_id => %(worker_id)s::uuid,
    max_jobs => %(max_jobs)s::integer,
    lease => %(lease)s::interval,
    as_of => %(as_of)s::timestamptz
);

-- name: testing_complete :many
SELECT id
FROM skiplock.complete(
    job_ids => ARRAY[%(job_id)s::bigint],
    lease_tokens => ARRAY[%(lease_token)s::uuid],
    results => ARRAY[%(result)s::text::jsonb],
    as_of => %(as_of)s::timestamptz
) AS id;

-- name: testing_fail :one
SELECT skiplock.fail(
    job_id => %(job_id)s::bigint,
    lease_token => %(lease_token)s::uuid,
    error => %(error)s::text,
    error_type => %(error_type)s::text,
    traceback => %(traceback)s::text,
    retry_in => %(retry_in)s::interval,
    retryable => %(retryable)s::boolean,
    as_of => %(as_of)s::timestamptz
)::text AS state;

-- name: testing_reap :many
SELECT job_id, state::text AS state
FROM skiplock.reap(max_jobs => 10000, as_of => %(as_of)s::timestamptz);

-- name: testing_fire_schedule :many
SELECT tick, job_id
FROM skiplock.fire_schedule(name => %(name)s::text, ticks => %(ticks)s::timestamptz[],
                            as_of => %(as_of)s::timestamptz);
