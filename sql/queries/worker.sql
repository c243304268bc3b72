-- name: register_worker :exec
SELECT skiplock.register_worker(
    worker_id => %(worker_id)s::uuid,
    host => %(host)s::text,
    pid => %(pid)s::integer,
    queues => %(queues)s::text[],
    concurrency => %(concurrency)s::integer
);

-- name: worker_heartbeat :one
-- returns: alive boolean?
SELECT skiplock.worker_heartbeat(
    worker_id => %(worker_id)s::uuid,
    jobs_done => %(jobs_done)s::bigint
) AS alive;

-- name: deregister_worker :exec
SELECT skiplock.deregister_worker(worker_id => %(worker_id)s::uuid);

-- name: ensure_partitions :many
-- returns: name text
SELECT name
FROM skiplock.ensure_partitions(
    days_ahead => %(days_ahead)s::integer, as_of => coalesce(%(as_of)s::timestamptz, now())
) AS name;

-- name: drop_partitions :many
-- returns: name text
SELECT name
FROM skiplock.drop_partitions(
    retention => %(retention)s::interval, as_of => coalesce(%(as_of)s::timestamptz, now())
) AS name;

-- name: list_workers :many
-- returns: id uuid?, host text?, pid integer?, queues text[]?, concurrency integer?
-- returns: started_at timestamptz?, heartbeat_at timestamptz?, heartbeat_age interval?
-- returns: running bigint?, jobs_done bigint?, stale boolean?
SELECT *
FROM skiplock.workers
ORDER BY host, pid, started_at;
