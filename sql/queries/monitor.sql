-- Read-only statements of `skiplock monitor`, `skiplock doctor` and metrics: each a short read
-- of a view over a small time window (see 0013_monitoring_views).

-- name: queue_activity :many
SELECT *
FROM skiplock.queue_activity
ORDER BY queue;

-- name: task_stats :many
SELECT *
FROM skiplock.task_stats
ORDER BY queue, task;

-- name: recent_failures :many
SELECT *
FROM skiplock.recent_failures
ORDER BY failed_at DESC
LIMIT %(limit)s::integer;

-- name: health :many
SELECT *
FROM skiplock.health;

-- name: finished_since :many
SELECT queue, state::text AS state, count(*) AS jobs
FROM skiplock.job_history
WHERE finished_at >= now() - make_interval(secs => %(seconds)s::double precision)
GROUP BY queue, state;

-- name: database_info :one
SELECT current_database() AS database, current_setting('server_version') AS server_version,
       (SELECT max(version) FROM skiplock.migration) AS schema_version;

-- name: enable_events :one
SELECT skiplock.enable_events() AS enabled;

-- name: disable_events :one
SELECT skiplock.disable_events() AS was_enabled;

-- name: add_webhook :one
SELECT skiplock.add_webhook(
    url => %(url)s::text,
    secret => %(secret)s::text,
    events => %(events)s::text[],
    queues => %(queues)s::text[],
    tasks => %(tasks)s::text[]
) AS id;

-- name: remove_webhook :one
SELECT skiplock.remove_webhook(webhook_id => %(webhook_id)s::bigint) AS removed;

-- name: list_webhooks :many
SELECT *
FROM skiplock.webhooks
ORDER BY id;

-- name: webhook_for_delivery :one
SELECT url, secret, active, floor(extract(epoch FROM now()))::bigint AS now
FROM skiplock.webhook
WHERE id = %(webhook_id)s::bigint;
