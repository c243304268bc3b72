-- sql/functions/views.sql: Views for inspection with plain SQL, the CLI, the monitor, the dashboard and metrics.
-- The current definitions (CREATE OR REPLACE), applied by the migrator in the order of
-- manifest.txt and re-applied when this file changes.

-- jobs: live and finished jobs together, one row per job, with progress (live jobs only) and
-- pending_parents (0 for finished jobs).
CREATE OR REPLACE VIEW skiplock.jobs AS
    SELECT j.id, j.queue, j.task, j.args, j.state, j.priority, j.attempt, j.max_attempts,
           j.run_at, j.created_at, j.attempted_at, j.lease_expires_at, j.worker_id, j.dedupe_key,
           j.cancel_requested, j.errors, NULL::timestamptz AS finished_at, NULL::jsonb AS result,
           j.progress, j.progress_message, j.pending_parents
    FROM skiplock.job AS j
    UNION ALL
    SELECT h.id, h.queue, h.task, h.args, h.state, h.priority, h.attempt, h.max_attempts,
           h.run_at, h.created_at, h.attempted_at, NULL, h.worker_id, h.dedupe_key,
           false, h.errors, h.finished_at, h.result, NULL, NULL, 0
    FROM skiplock.job_history AS h;

-- queue_stats: one row per queue and state. Live states (scheduled, available, running,
-- retryable) count every job; `failed` counts the whole retained dead-letter set; `completed`
-- and `cancelled` count the last minute only (history can be huge). oldest_age is how long the
-- oldest due job has waited (available, retryable and scheduled count from run_at), and
-- per_second is the finishing rate over the last minute (terminal states only). Each row also
-- carries its queue's limits.
CREATE OR REPLACE VIEW skiplock.queue_stats AS
    WITH live AS (
        SELECT j.queue, j.state, count(*) AS jobs,
               greatest(now() - min(j.run_at), interval '0') AS oldest_age,
               NULL::numeric AS per_second
        FROM skiplock.job AS j
        GROUP BY j.queue, j.state
    ),
    recent AS (
        SELECT h.queue, h.state, count(*) AS jobs, NULL::interval AS oldest_age,
               round(count(*) / 60.0, 2) AS per_second
        FROM skiplock.job_history AS h
        WHERE h.finished_at >= now() - interval '1 minute' AND h.state <> 'failed'
        GROUP BY h.queue, h.state
    ),
    dead AS (
        SELECT h.queue, 'failed'::skiplock.job_state AS state, count(*) AS jobs,
               NULL::interval AS oldest_age,
               round(count(*) FILTER (WHERE h.finished_at >= now() - interval '1 minute') / 60.0, 2) AS per_second
        FROM skiplock.job_history AS h
        WHERE h.state = 'failed'
        GROUP BY h.queue
    ),
    together AS (
        SELECT * FROM live UNION ALL SELECT * FROM recent UNION ALL SELECT * FROM dead
    )
    SELECT t.queue, t.state, t.jobs, t.oldest_age, t.per_second,
           COALESCE(q.paused_at IS NOT NULL AND (q.paused_until IS NULL OR q.paused_until > now()), false) AS paused,
           q.concurrency_limit, q.rate_limit, q.key_arg, q.key_concurrency_limit, q.key_rate_limit
    FROM together AS t
    LEFT JOIN skiplock.queue AS q ON q.name = t.queue;

-- workers: one row per registered worker: where it runs, what it serves, how long since its last
-- heartbeat, the jobs it holds now (running, prefetched included) and has finished. A worker
-- heartbeats every lease/3 (10 s by default); `stale` marks one silent for over a minute: it
-- crashed or hangs, and the reaper returns its jobs once their leases expire.
CREATE OR REPLACE VIEW skiplock.workers AS
    SELECT w.id, w.host, w.pid, w.queues, w.concurrency, w.started_at, w.heartbeat_at,
           now() - w.heartbeat_at AS heartbeat_age,
           (SELECT count(*) FROM skiplock.job AS j WHERE j.state = 'running' AND j.worker_id = w.id) AS running,
           w.jobs_done,
           w.heartbeat_at < now() - interval '1 minute' AS stale
    FROM skiplock.worker AS w;

-- The monitoring views: what `skiplock monitor`, `skiplock doctor`, the dashboard and metrics
-- read, for plain SQL too.
--
-- queue_activity  per queue, the last minute: jobs enqueued, started, finished per second, and
--                 pickup latency (due -> first started) percentiles.
-- task_stats      per queue and task, the last five minutes of history: outcomes, failure rate,
--                 run time percentiles.
-- recent_failures the latest failed attempts (final or not) of the last hour.
-- health          one row per check of the PostgreSQL under the queue, with a status
--                 (ok / warn / critical) at documented thresholds, the value, and a fix.
--
-- The long-transaction thresholds are settings: skiplock.long_transaction_warn (default 1 minute)
-- and skiplock.long_transaction_critical (5 minutes), e.g. ALTER DATABASE app SET ... = '30s'.
--
-- Every view reads a short time window through the indexes (BRIN on finished_at for history,
-- the claim and running-job indexes for live jobs) or small catalogs; none holds a snapshot
-- beyond its own statement. Seeing other sessions' transactions in `health` needs pg_monitor
-- (or pg_read_all_stats) for roles other than superusers.
CREATE OR REPLACE VIEW skiplock.queue_activity AS
    WITH created AS (
        SELECT j.queue, count(*) AS n FROM skiplock.job AS j
        WHERE j.created_at >= now() - interval '1 minute' GROUP BY j.queue
        UNION ALL
        SELECT h.queue, count(*) FROM skiplock.job_history AS h
        WHERE h.finished_at >= now() - interval '1 minute' AND h.created_at >= now() - interval '1 minute'
        GROUP BY h.queue
    ),
    started AS (
        SELECT j.queue, j.attempted_at, j.run_at FROM skiplock.job AS j
        WHERE j.state = 'running' AND j.attempt = 1 AND j.attempted_at >= now() - interval '1 minute'
        UNION ALL
        SELECT h.queue, h.attempted_at, h.run_at FROM skiplock.job_history AS h
        WHERE h.finished_at >= now() - interval '1 minute' AND h.attempt = 1
          AND h.attempted_at >= now() - interval '1 minute'
    ),
    finished AS (
        SELECT h.queue, count(*) FILTER (WHERE h.state = 'completed') AS completed,
               count(*) FILTER (WHERE h.state = 'failed') AS failed
        FROM skiplock.job_history AS h
        WHERE h.finished_at >= now() - interval '1 minute'
        GROUP BY h.queue
    ),
    latency AS (
        SELECT s.queue, count(*) AS started,
               percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (
                   ORDER BY extract(epoch FROM greatest(s.attempted_at - s.run_at, interval '0'))) AS p
        FROM started AS s
        GROUP BY s.queue
    ),
    queues AS (
        SELECT c.queue FROM created AS c UNION SELECT l.queue FROM latency AS l
        UNION SELECT f.queue FROM finished AS f
    )
    SELECT q.queue,
           round(COALESCE((SELECT sum(c.n) FROM created AS c WHERE c.queue = q.queue), 0) / 60.0, 2)
               AS enqueued_per_second,
           round(COALESCE(l.started, 0) / 60.0, 2) AS started_per_second,
           round(COALESCE(f.completed, 0) / 60.0, 2) AS completed_per_second,
           round(COALESCE(f.failed, 0) / 60.0, 2) AS failed_per_second,
           make_interval(secs => l.p[1]) AS pickup_p50,
           make_interval(secs => l.p[2]) AS pickup_p95,
           make_interval(secs => l.p[3]) AS pickup_p99
    FROM queues AS q
    LEFT JOIN latency AS l ON l.queue = q.queue
    LEFT JOIN finished AS f ON f.queue = q.queue;

-- task_stats: per queue and task, the last five minutes of history: outcomes, failure rate, run
-- time percentiles.
CREATE OR REPLACE VIEW skiplock.task_stats AS
    SELECT h.queue, h.task,
           count(*) FILTER (WHERE h.state = 'completed') AS completed,
           count(*) FILTER (WHERE h.state = 'failed') AS failed,
           count(*) FILTER (WHERE h.state = 'cancelled') AS cancelled,
           round(count(*) FILTER (WHERE h.state = 'failed')::numeric / count(*), 4) AS failure_rate,
           make_interval(secs => percentile_cont(0.5) WITHIN GROUP (
               ORDER BY extract(epoch FROM h.finished_at - h.attempted_at)) FILTER (WHERE h.state = 'completed'))
               AS run_p50,
           make_interval(secs => percentile_cont(0.95) WITHIN GROUP (
               ORDER BY extract(epoch FROM h.finished_at - h.attempted_at)) FILTER (WHERE h.state = 'completed'))
               AS run_p95,
           make_interval(secs => percentile_cont(0.99) WITHIN GROUP (
               ORDER BY extract(epoch FROM h.finished_at - h.attempted_at)) FILTER (WHERE h.state = 'completed'))
               AS run_p99,
           sum(greatest(h.attempt - 1, 0)) AS retries
    FROM skiplock.job_history AS h
    WHERE h.finished_at >= now() - interval '5 minutes'
    GROUP BY h.queue, h.task;

-- recent_failures: the latest failed attempts (final or not) of the last hour.
CREATE OR REPLACE VIEW skiplock.recent_failures AS
    SELECT f.id, f.queue, f.task, f.final, (f.e ->> 'attempt')::integer AS attempt,
           (f.e ->> 'at')::timestamptz AS failed_at, f.e ->> 'type' AS error_type, f.e ->> 'error' AS error
    FROM (
        SELECT h.id, h.queue, h.task, true AS final, h.errors -> -1 AS e
        FROM skiplock.job_history AS h
        WHERE h.state = 'failed' AND h.finished_at >= now() - interval '1 hour'
        UNION ALL
        SELECT j.id, j.queue, j.task, false, j.errors -> -1
        FROM skiplock.job AS j
        WHERE j.state = 'retryable'
    ) AS f
    WHERE (f.e ->> 'at')::timestamptz >= now() - interval '1 hour';

-- health: one row per check of the PostgreSQL under the queue, with a status (ok / warn /
-- critical) at documented thresholds, the value, and a fix.
--
-- The xmin horizon: vacuum cannot remove a row version that some snapshot may still see, so the
-- oldest snapshot or transaction id anywhere that can see this database's tables decides how many
-- of the dead rows every claim leaves behind stay in the hot table. `holders` lists what can pin
-- it: sessions of this database with a snapshot (backend_xmin) or a transaction id (backend_xid)
-- (since PostgreSQL 14 other databases' sessions do not pin this one's tables), replication slots
-- (xmin pins every table; catalog_xmin, what a logical slot keeps, pins the system catalogs only),
-- and prepared transactions of this database. Each row carries the statement that would end it,
-- for a person to run: the view never runs it.
CREATE OR REPLACE VIEW skiplock.health AS
    WITH hot AS (
        SELECT s.n_live_tup, s.n_dead_tup, greatest(s.last_vacuum, s.last_autovacuum) AS vacuumed_at,
               pg_table_size('skiplock.job'::regclass) AS table_bytes,
               pg_indexes_size('skiplock.job'::regclass) AS index_bytes,
               c.reloptions
        FROM pg_stat_user_tables AS s
        JOIN pg_class AS c ON c.oid = s.relid
        WHERE s.relid = 'skiplock.job'::regclass
    ),
    limits AS (
        SELECT COALESCE(NULLIF(current_setting('skiplock.long_transaction_warn', true), '')::interval,
                        interval '1 minute') AS warn,
               COALESCE(NULLIF(current_setting('skiplock.long_transaction_critical', true), '')::interval,
                        interval '5 minutes') AS critical
    ),
    holders AS (
        -- kind, age (NULL when there is no start time to go by), xmin_age in transactions, pins
        -- (whether it keeps skiplock.job's dead rows), the text naming it (the essentials first,
        -- so that a narrow screen cuts the query, not the pid or the ages), and how to end it.
        -- A walsender's transaction start means nothing (it streams for days): like a slot, it
        -- is rated by its xmin age.
        SELECT 'session' AS kind, CASE WHEN a.backend_type <> 'walsender' THEN now() - a.xact_start END AS age,
               greatest(age(a.backend_xmin), age(a.backend_xid)) AS xmin_age, true AS pins,
               'pid ' || a.pid || ' '
                   || COALESCE('open ' || date_trunc('second', now() - a.xact_start), a.backend_type, '?')
                   || ', xmin age ' || greatest(age(a.backend_xmin), age(a.backend_xid))
                   || ', user ' || COALESCE(a.usename::text, '?')
                   || COALESCE(', app ' || NULLIF(a.application_name, ''), '')
                   || ', ' || COALESCE(a.state, '?')
                   || ': ' || left(regexp_replace(COALESCE(a.query, ''), '\s+', ' ', 'g'), 200) AS label,
               'SELECT pg_terminate_backend(' || a.pid || ')' AS stop
        FROM pg_stat_activity AS a
        WHERE (a.backend_xmin IS NOT NULL OR a.backend_xid IS NOT NULL)
          AND a.pid <> pg_backend_pid()
          -- A walsender's xmin (hot_standby_feedback without a slot) pins every database.
          AND (a.datname = current_database() OR a.backend_type = 'walsender')
          AND a.backend_type <> 'autovacuum worker'  -- vacuum's own snapshot pins nothing
        UNION ALL
        SELECT 'slot', NULL, age(COALESCE(r.xmin, r.catalog_xmin)), r.xmin IS NOT NULL,
               'slot ' || r.slot_name || ' (' || r.slot_type || ', ' || CASE WHEN r.active THEN 'active' ELSE 'inactive' END
                   || ') ' || CASE WHEN r.xmin IS NOT NULL THEN 'xmin age ' || age(r.xmin)
                                   ELSE 'catalog_xmin age ' || age(r.catalog_xmin) || ' (system catalogs only)' END
                   || COALESCE(', database ' || r.database, ''),
               'SELECT pg_drop_replication_slot(' || quote_literal(r.slot_name) || ')'
        FROM pg_replication_slots AS r
        WHERE r.xmin IS NOT NULL OR r.catalog_xmin IS NOT NULL
        UNION ALL
        SELECT 'prepared', now() - p.prepared, age(p.transaction), true,
               'gid ' || quote_literal(p.gid) || ' prepared ' || date_trunc('second', now() - p.prepared)
                   || ' ago, xmin age ' || age(p.transaction) || ', owner ' || p.owner,
               'ROLLBACK PREPARED ' || quote_literal(p.gid)
        FROM pg_prepared_xacts AS p
        WHERE p.database = current_database()
    ),
    rated AS (
        SELECT h.*,
               CASE WHEN h.age IS NULL THEN  -- slots and walsenders: no start time, an xmin age
                        CASE WHEN h.xmin_age > 100000000 THEN 'critical' WHEN h.xmin_age > 10000000 THEN 'warn'
                             ELSE 'ok' END
                    WHEN h.age > l.critical THEN 'critical'
                    WHEN h.age > l.warn THEN 'warn'
                    ELSE 'ok' END AS status
        FROM holders AS h CROSS JOIN limits AS l
    ),
    oldest AS (
        -- Per kind, the holder with the oldest xmin, and how many others there are.
        SELECT DISTINCT ON (r.kind) r.kind, r.label, r.stop, r.status, count(*) OVER (PARTITION BY r.kind) - 1 AS others
        FROM rated AS r
        ORDER BY r.kind, r.xmin_age DESC NULLS LAST
    ),
    pinned AS (
        -- What keeps skiplock.job's dead rows: the oldest holder past its threshold that pins user
        -- tables (a slot's xmin pins them whatever its age: it stays until the slot is consumed
        -- or dropped). NULL when the horizon is free, or held only briefly.
        SELECT r.label, r.stop FROM rated AS r
        WHERE r.pins AND (r.status <> 'ok' OR r.kind = 'slot')
        ORDER BY r.xmin_age DESC NULLS LAST
        LIMIT 1
    ),
    parts AS (
        SELECT count(*) AS n,
               max(to_date(substring(c.relname FROM 'job_history_p(\d{8})$'), 'YYYYMMDD')) AS last_day,
               sum(pg_table_size(c.oid)) AS bytes
        FROM pg_inherits AS i
        JOIN pg_class AS c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'skiplock.job_history'::regclass AND c.relname ~ '^job_history_p\d{8}$'
    ),
    expired AS (
        SELECT count(*) AS n FROM skiplock.job AS j
        WHERE j.state = 'running' AND j.lease_expires_at < now() - interval '1 minute'
    ),
    checks AS (
        -- Dead rows weighed against live ones: a queue of 85 live jobs behind 96,817 dead row
        -- versions claims slowly although no fixed count says so.
        SELECT 'dead_tuples' AS name,
               h.n_dead_tup::text || ' dead, ' || h.n_live_tup || ' live'
                   || CASE WHEN h.n_dead_tup > greatest(1000, h.n_live_tup) AND p.label IS NOT NULL
                           THEN '; cannot be removed: pinned by ' || p.label ELSE '' END AS value,
               CASE WHEN h.n_dead_tup > greatest(100000, 10 * h.n_live_tup) THEN 'critical'
                    WHEN h.n_dead_tup > greatest(1000, h.n_live_tup) THEN 'warn'
                    ELSE 'ok' END AS status,
               'skiplock.job, the hot table: dead rows slow every claim until vacuum removes them, and vacuum'
                   || ' cannot remove those that the oldest snapshot (the xmin horizon) may still see' AS detail,
               COALESCE('end what pins the horizon: ' || p.stop,
                        'VACUUM skiplock.job; check that autovacuum runs (last_vacuum below)') AS fix
        FROM hot AS h LEFT JOIN pinned AS p ON true
        UNION ALL
        SELECT 'hot_table_size', pg_size_pretty(h.table_bytes) || ' + ' || pg_size_pretty(h.index_bytes) || ' indexes',
               CASE WHEN h.table_bytes + h.index_bytes > 8 * 1024^3 THEN 'warn' ELSE 'ok' END,
               'skiplock.job holds live jobs only; it stays small unless a backlog builds or vacuum falls behind',
               'drain the backlog; a table bloated after an incident shrinks with VACUUM FULL skiplock.job (locks it)'
        FROM hot AS h
        UNION ALL
        SELECT 'last_vacuum', COALESCE(to_char(now() - h.vacuumed_at, 'HH24:MI:SS') || ' ago', 'never'),
               CASE WHEN h.n_dead_tup > 100000 AND (h.vacuumed_at IS NULL OR h.vacuumed_at < now() - interval '1 hour')
                    THEN 'warn' ELSE 'ok' END,
               'the last (auto)vacuum of skiplock.job',
               'check autovacuum is on and has workers free (autovacuum_max_workers); VACUUM skiplock.job by hand meanwhile'
        FROM hot AS h
        UNION ALL
        SELECT 'autovacuum_settings', COALESCE(array_to_string(h.reloptions, ', '), 'defaults'),
               CASE WHEN h.reloptions @> ARRAY['autovacuum_vacuum_scale_factor=0'] THEN 'ok' ELSE 'warn' END,
               'skiplock.job is vacuumed by dead-row count (scale factor 0), not by a fraction of its size',
               'ALTER TABLE skiplock.job SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000)'
        FROM hot AS h
        UNION ALL
        SELECT 'oldest_transaction',
               COALESCE(x.label || COALESCE(' (+' || NULLIF(x.others, 0) || ' more)', ''), 'none'),
               COALESCE(x.status, 'ok'),
               'the session of this database with the oldest snapshot: no row deleted after it can be vacuumed',
               COALESCE('end it: ' || x.stop || '; and set idle_in_transaction_session_timeout', 'nothing to do')
        FROM (SELECT 1) AS one LEFT JOIN oldest AS x ON x.kind = 'session'
        UNION ALL
        SELECT 'replication_slots',
               COALESCE(x.label || COALESCE(' (+' || NULLIF(x.others, 0) || ' more)', ''), 'none holding xmin'),
               COALESCE(x.status, 'ok'),
               'a slot whose consumer lags or is gone holds back vacuum like a long transaction (xmin: every'
                   || ' table; catalog_xmin: the system catalogs) and keeps WAL',
               COALESCE('consume it, or drop it: ' || x.stop, 'nothing to do')
        FROM (SELECT 1) AS one LEFT JOIN oldest AS x ON x.kind = 'slot'
        UNION ALL
        SELECT 'prepared_transactions',
               COALESCE(x.label || COALESCE(' (+' || NULLIF(x.others, 0) || ' more)', ''), 'none'),
               COALESCE(x.status, 'ok'),
               'a forgotten two-phase transaction holds the xmin horizon and its locks until it is finished',
               COALESCE('finish it (COMMIT PREPARED, or roll it back): ' || x.stop, 'nothing to do')
        FROM (SELECT 1) AS one LEFT JOIN oldest AS x ON x.kind = 'prepared'
        UNION ALL
        SELECT 'partitions_ahead',
               COALESCE((p.last_day - (now() AT TIME ZONE 'UTC')::date)::text || ' days ahead, ' || p.n
                        || ' partitions, ' || pg_size_pretty(p.bytes), 'no partitions'),
               CASE WHEN p.last_day IS NULL OR p.last_day < (now() AT TIME ZONE 'UTC')::date THEN 'critical'
                    WHEN p.last_day < (now() AT TIME ZONE 'UTC')::date + 1 THEN 'warn' ELSE 'ok' END,
               'daily history partitions created ahead by worker maintenance; finished jobs land in the default partition without them',
               'run a worker with maintenance on, or SELECT skiplock.ensure_partitions(3)'
        FROM parts AS p
        UNION ALL
        SELECT 'default_partition', count(*)::text || ' rows',
               CASE WHEN count(*) > 0 THEN 'warn' ELSE 'ok' END,
               'finished jobs that found no daily partition',
               'SELECT skiplock.ensure_partitions(3) moves them into proper partitions'
        FROM (SELECT 1 FROM skiplock.job_history_default LIMIT 10000) AS d
        UNION ALL
        SELECT 'history_retention',
               COALESCE('oldest partition ' || min(to_date(substring(c.relname FROM 'job_history_p(\d{8})$'), 'YYYYMMDD')),
                        'no partitions'),
               CASE WHEN min(to_date(substring(c.relname FROM 'job_history_p(\d{8})$'), 'YYYYMMDD'))
                         < (now() AT TIME ZONE 'UTC')::date - 60 THEN 'warn' ELSE 'ok' END,
               'worker maintenance drops history partitions older than the retention (7 days by default)',
               'run a worker with maintenance on, or SELECT skiplock.drop_partitions(interval ''7 days'')'
        FROM pg_inherits AS i
        JOIN pg_class AS c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'skiplock.job_history'::regclass AND c.relname ~ '^job_history_p\d{8}$'
        UNION ALL
        SELECT 'notify_queue', round((pg_notification_queue_usage() * 100)::numeric, 2) || '% used',
               CASE WHEN pg_notification_queue_usage() > 0.5 THEN 'critical'
                    WHEN pg_notification_queue_usage() > 0.1 THEN 'warn' ELSE 'ok' END,
               'the NOTIFY queue fills when a session LISTENs but never reads; NOTIFY fails when it is full',
               'find the LISTENing session that stopped reading (pg_stat_activity) and end it'
        UNION ALL
        SELECT 'expired_leases', e.n || ' running jobs past their lease by over a minute',
               CASE WHEN e.n > 0 THEN 'warn' ELSE 'ok' END,
               'jobs whose worker died, not yet returned by a reaper',
               'run at least one worker (every worker reaps), or SELECT * FROM skiplock.reap()'
        FROM expired AS e
        UNION ALL
        SELECT 'stale_workers', count(*) FILTER (WHERE w.stale) || ' of ' || count(*) || ' silent over a minute',
               CASE WHEN count(*) FILTER (WHERE w.stale) > 0 THEN 'warn' ELSE 'ok' END,
               'registered workers that stopped heartbeating (crashed or hung); forgotten after 10 minutes',
               'check those hosts; their jobs come back when their leases expire'
        FROM skiplock.workers AS w
    )
    -- CREATE OR REPLACE VIEW cannot change a column's collation, and texts built from slot,
    -- role and database names (type name, collation "C") take theirs: the columns keep the
    -- collations the view was first created with (value "C", fix the default).
    SELECT c.name, c.status, c.value COLLATE "C" AS value, c.detail, c.fix COLLATE "default" AS fix
    FROM checks AS c;

-- webhooks: the registered webhooks, without their secrets.
CREATE OR REPLACE VIEW skiplock.webhooks AS
    SELECT w.id, w.url, w.events, w.queues, w.tasks, w.active, w.created_at
    FROM skiplock.webhook AS w;
