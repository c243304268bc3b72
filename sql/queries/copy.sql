-- Named statements of batch enqueue through COPY (sql/functions/copy.sql), run in this order in
-- one transaction: make the session's staging table ready, COPY the jobs into it in text
-- format (one row per job, ord = its 1-based position), then enqueue them in one call.

-- name: stage_jobs :exec
SELECT skiplock.stage_jobs() AS staged;

-- name: copy_jobs :exec
COPY pg_temp.skiplock_job_stage (ord, queue, task, args, priority, run_at, delay, max_attempts, dedupe_key,
                                 dedupe_window, retry_policy)
FROM STDIN;

-- name: enqueue_staged :many
-- returns: id bigint
SELECT id
FROM skiplock.enqueue_staged() AS id;
