-- Read-only statements of `skiplock monitor`, `skiplock doctor` and metrics: each a short read
-- of a view over a small time window (see 0013_monitoring_views).

-- name: queue_activity :many
-- returns: queue text?, enqueued_per_second numeric?, started_per_second numeric?
-- returns: completed_per_second numeric?, failed_per_second numeric?, pickup_p50 interval?
-- returns: pickup_p95 interval?, pickup_p99 interval?
SELECT *
FROM skiplock.queue_activity
ORDER BY queue;

-- name: task_stats :many
-- returns: queue text?, task text?, completed bigint?, failed bigint?, cancelled bigint?
-- returns: failure_rate numeric?, run_p50 interval?, run_p95 interval?, run_p99 interval?
-- returns: retries bigint?
SELECT *
FROM skiplock.task_stats
ORDER BY queue, task;

-- name: recent_failures :many
-- returns: id bigint?, queue text?, task text?, final boolean?, attempt integer?
-- returns: failed_at timestamptz?, error_type text?, error text?
SELECT *
FROM skiplock.recent_failures
ORDER BY failed_at DESC
LIMIT %(limit)s::integer;

-- name: health :many
-- returns: name text?, status text?, value text?, detail text?, fix text?
SELECT *
FROM skiplock.health;

-- name: finished_since :many
-- returns: queue text, state text, jobs bigint
SELECT queue, state::text AS state, count(*) AS jobs
FROM skiplock.job_history
WHERE finished_at >= now() - make_interval(secs => %(seconds)s::double precision)
GROUP BY queue, state;

-- name: database_info :one
-- returns: database name?, server_version text?, schema_version integer?
SELECT current_database() AS database, current_setting('server_version') AS server_version,
       (SELECT max(version) FROM skiplock.migration) AS schema_version;

-- name: enable_events :one
-- returns: enabled boolean?
SELECT skiplock.enable_events() AS enabled;

-- name: disable_events :one
-- returns: was_enabled boolean?
SELECT skiplock.disable_events() AS was_enabled;

-- name: add_webhook :one
-- nullable: queues, tasks
-- returns: id bigint
SELECT skiplock.add_webhook(
    url => %(url)s::text,
    secret => %(secret)s::text,
    events => %(events)s::text[],
    queues => %(queues)s::text[],
    tasks => %(tasks)s::text[]
) AS id;

-- name: remove_webhook :one
-- returns: removed boolean
SELECT skiplock.remove_webhook(webhook_id => %(webhook_id)s::bigint) AS removed;

-- name: list_webhooks :many
-- returns: id bigint?, url text?, events text[]?, queues text[]?, tasks text[]?, active boolean?
-- returns: created_at timestamptz?
SELECT *
FROM skiplock.webhooks
ORDER BY id;

-- name: webhook_for_delivery :one
-- returns: url text, secret text, active boolean, now bigint?
SELECT url, secret, active, floor(extract(epoch FROM now()))::bigint AS now
FROM skiplock.webhook
WHERE id = %(webhook_id)s::bigint;
