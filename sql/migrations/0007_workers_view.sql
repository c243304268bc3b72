-- 0007_workers_view: the worker registry with what each worker holds, for `skiplock workers list`
-- and plain SQL.
--
-- Migrations note: creates a view only.

-- workers: one row per registered worker: where it runs, what it serves, how long since its last
-- heartbeat, the jobs it holds now (running, prefetched included) and has finished. A worker
-- heartbeats every lease/3 (10 s by default); `stale` marks one silent for over a minute: it
-- crashed or hangs, and the reaper returns its jobs once their leases expire.
CREATE VIEW skiplock.workers AS
    SELECT w.id, w.host, w.pid, w.queues, w.concurrency, w.started_at, w.heartbeat_at,
           now() - w.heartbeat_at AS heartbeat_age,
           (SELECT count(*) FROM skiplock.job AS j WHERE j.state = 'running' AND j.worker_id = w.id) AS running,
           w.jobs_done,
           w.heartbeat_at < now() - interval '1 minute' AS stale
    FROM skiplock.worker AS w;
