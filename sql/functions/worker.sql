-- sql/functions/worker.sql: The worker registry.
-- The current definitions (CREATE OR REPLACE), applied by the migrator in the order of
-- manifest.txt and re-applied when this file changes.

-- register_worker: announce (or re-announce) a worker; returns nothing.
CREATE OR REPLACE FUNCTION skiplock.register_worker(
    worker_id   uuid,
    host        text,
    pid         integer,
    queues      text[],
    concurrency integer,
    as_of       timestamptz DEFAULT now()
)
RETURNS void
LANGUAGE sql
AS $$
    INSERT INTO skiplock.worker (id, host, pid, queues, concurrency, started_at, heartbeat_at)
    VALUES (register_worker.worker_id, left(register_worker.host, 255), register_worker.pid,
            register_worker.queues, register_worker.concurrency, register_worker.as_of, register_worker.as_of)
    ON CONFLICT (id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at;
$$;

-- worker_heartbeat: record that a worker is alive and how many jobs it finished since the last
-- beat. Returns false when the worker row is gone (reaped as dead): the worker re-registers.
CREATE OR REPLACE FUNCTION skiplock.worker_heartbeat(
    worker_id uuid,
    jobs_done bigint      DEFAULT 0,
    as_of     timestamptz DEFAULT now()
)
RETURNS boolean
LANGUAGE sql
AS $$
    WITH beat AS (
        UPDATE skiplock.worker AS w
        SET heartbeat_at = worker_heartbeat.as_of, jobs_done = w.jobs_done + worker_heartbeat.jobs_done
        WHERE w.id = worker_heartbeat.worker_id
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM beat);
$$;

-- deregister_worker: remove a worker that stopped cleanly.
CREATE OR REPLACE FUNCTION skiplock.deregister_worker(worker_id uuid)
RETURNS void
LANGUAGE sql
AS $$
    DELETE FROM skiplock.worker AS w WHERE w.id = deregister_worker.worker_id;
$$;
