-- name: pause_queue :one
-- nullable: until
-- returns: name text, paused_at timestamptz?, paused_until timestamptz?, created_at timestamptz
-- returns: concurrency_limit integer?, rate_limit double precision?, rate_burst integer?
-- returns: tokens double precision?, tokens_at timestamptz?, key_arg text?
-- returns: key_concurrency_limit integer?, key_rate_limit double precision?, key_rate_burst integer?
SELECT *
FROM skiplock.pause_queue(queue => %(queue)s::text, until => %(until)s::timestamptz);

-- name: resume_queue :one
-- returns: name text, paused_at timestamptz?, paused_until timestamptz?, created_at timestamptz
-- returns: concurrency_limit integer?, rate_limit double precision?, rate_burst integer?
-- returns: tokens double precision?, tokens_at timestamptz?, key_arg text?
-- returns: key_concurrency_limit integer?, key_rate_limit double precision?, key_rate_burst integer?
SELECT *
FROM skiplock.resume_queue(queue => %(queue)s::text);

-- name: set_queue_limits :one
-- nullable: concurrency, rate, burst, key_arg, per_key, key_rate, key_burst
-- returns: name text, paused_at timestamptz?, paused_until timestamptz?, created_at timestamptz
-- returns: concurrency_limit integer?, rate_limit double precision?, rate_burst integer?
-- returns: tokens double precision?, tokens_at timestamptz?, key_arg text?
-- returns: key_concurrency_limit integer?, key_rate_limit double precision?, key_rate_burst integer?
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
-- returns: name text, rate_limit double precision?, rate_burst integer?
-- returns: key_rate_limit double precision?, key_rate_burst integer?, slot_limited boolean?
SELECT name, rate_limit, rate_burst, key_rate_limit, key_rate_burst,
       concurrency_limit IS NOT NULL OR key_concurrency_limit IS NOT NULL AS slot_limited
FROM skiplock.queue
WHERE name = ANY(%(queues)s::text[])
  AND (rate_limit IS NOT NULL OR key_rate_limit IS NOT NULL
       OR concurrency_limit IS NOT NULL OR key_concurrency_limit IS NOT NULL);

-- name: queue_stats :many
-- returns: queue text?, state skiplock.job_state?, jobs bigint?, oldest_age interval?
-- returns: per_second numeric?, paused boolean?, concurrency_limit integer?
-- returns: rate_limit double precision?, key_arg text?, key_concurrency_limit integer?
-- returns: key_rate_limit double precision?
SELECT *
FROM skiplock.queue_stats
ORDER BY queue, state;

-- name: queue_job_counts :many
-- returns: state text, jobs bigint
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
