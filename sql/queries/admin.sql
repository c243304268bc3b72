-- Read-only lookups the command line makes before it writes: does a queue exist, what limits
-- does it have now, are lifecycle events on. Each is a few index probes, however large the
-- queue's history.

-- name: queue_known :one
-- returns: known boolean
-- Whether anything names the queue: a row in skiplock.queue (it was paused, resumed or limited),
-- a live job (job_claim_idx), a dead-lettered job (job_history_failed_idx), or a registered
-- worker serving it. Completed and cancelled history is not searched: no index leads there by
-- queue, and a typo would scan every partition.
SELECT EXISTS (SELECT 1 FROM skiplock.queue AS q WHERE q.name = %(queue)s::text)
       OR EXISTS (SELECT 1 FROM skiplock.job AS j WHERE j.queue = %(queue)s::text)
       OR EXISTS (SELECT 1 FROM skiplock.job_history AS h
                  WHERE h.queue = %(queue)s::text AND h.state = 'failed')
       OR EXISTS (SELECT 1 FROM skiplock.worker AS w WHERE %(queue)s::text = ANY (w.queues)) AS known;

-- name: queue_limits :one
-- returns: name text, concurrency_limit integer?, rate_limit double precision?, rate_burst integer?
-- returns: key_arg text?, key_concurrency_limit integer?, key_rate_limit double precision?
-- returns: key_rate_burst integer?
-- A queue's fleet-wide limits as skiplock.set_queue_limits stored them; no row when the queue
-- was never paused or limited.
SELECT name, concurrency_limit, rate_limit, rate_burst, key_arg, key_concurrency_limit,
       key_rate_limit, key_rate_burst
FROM skiplock.queue
WHERE name = %(queue)s::text;

-- name: events_enabled :one
-- returns: enabled boolean
-- Whether skiplock.enable_events() installed its triggers (pg_trigger is readable by every role).
SELECT EXISTS (
    SELECT 1
    FROM pg_trigger
    WHERE tgname = 'skiplock_events_insert' AND tgrelid = to_regclass('skiplock.job')
) AS enabled;

-- name: database_now :one
-- returns: now timestamptz
SELECT now() AS now;
