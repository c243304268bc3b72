-- name: pause_queue :one
SELECT *
FROM skiplock.pause_queue(queue => %(queue)s::text, until => %(until)s::timestamptz);

-- name: resume_queue :one
SELECT *
FROM skiplock.resume_queue(queue => %(queue)s::text);

-- name: set_queue_limits :one
SELECT *
FROM skiplock.set_queue_limits(
    queue => %(queue)s::text,
    concurrency => %(concurrency)s::integer,
    rate => %(rate)s::double precision,
    burst => %(burst)s::integer,
    key_arg => %(key_arg)s::text,
    per_key => %(per_key)s::integer,
    key_rate => %(key_rate)s::double precision,
    key_burst => %(key_burst)s::integer
);

-- name: rate_limits :many
SELECT name, rate_limit, rate_burst, key_rate_limit, key_rate_burst,
       concurrency_limit IS NOT NULL OR key_concurrency_limit IS NOT NULL AS slot_limited
FROM skiplock.queue
WHERE name = ANY(%(queues)s::text[])
  AND (rate_limit IS NOT NULL OR key_rate_limit IS NOT NULL
       OR concurrency_limit IS NOT NULL OR key_concurrency_limit IS NOT NULL);

-- name: queue_stats :many
SELECT *
FROM skiplock.queue_stats
ORDER BY queue, state;

-- name: queue_job_counts :many
-- Every job of one queue by state, live and retained (history is counted in full: a scan of the
-- queue's rows in every partition).
SELECT state::text AS state, count(*) AS jobs
FROM skiplock.job
WHERE queue = %(queue)s::text
GROUP BY 1
UNION ALL
SELECT state::text, count(*)
FROM skiplock.job_history
WHERE queue = %(queue)s::text
GROUP BY 1;
