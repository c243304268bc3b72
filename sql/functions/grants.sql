-- sql/functions/grants.sql: The least-privilege group roles and their privileges.
-- The current definitions (CREATE OR REPLACE), applied by the migrator in the order of
-- manifest.txt and re-applied when this file changes.

-- _create_roles: create the missing group roles skiplock_producer, skiplock_worker and
-- skiplock_monitor (NOLOGIN), as far as the current user may (CREATEROLE); a role it may not
-- create is reported with a NOTICE and skipped. Roles are cluster-wide and outlive the database.
-- Only `skiplock migrate --roles` (Migrator.grant_roles) calls it: migrating never creates roles.
CREATE OR REPLACE FUNCTION skiplock._create_roles()
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['skiplock_producer', 'skiplock_worker', 'skiplock_monitor'] LOOP
        CONTINUE WHEN to_regrole(r) IS NOT NULL;
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        EXCEPTION
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'skiplock: role % does not exist and % may not create roles (needs CREATEROLE); skipped',
                    r, current_user
                    USING HINT = format('have a DBA run CREATE ROLE %I NOLOGIN, then run skiplock migrate --roles', r);
            WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created by a concurrent session (another database of the cluster migrating)
        END;
    END LOOP;
END;
$$;

-- _grant_roles: make each existing group role's privileges exactly the ones below: everything a
-- role holds in the schema is revoked first, so a rerun also takes back what a newer version no
-- longer grants (extra privileges belong on the login roles, not on these groups). Creates no
-- role (see _create_roles). Returns one row per role: whether it exists, and so has its
-- privileges now. Idempotent; safe while workers run (GRANT and REVOKE only touch the catalog).
-- Executable by the owner (and superusers) only; the migrator runs it after every change.
--   skiplock_producer  enqueues (enqueue, enqueue_many; stage_jobs and enqueue_staged, with a COPY
--                      into the session's staging table between them) and reads jobs (the jobs
--                      view) and the workflows it enqueued (job_graph, parent_results); no table
--                      access.
--   skiplock_worker    what the worker runtime runs: claim, complete, fail, heartbeat, release,
--                      set_progress, reap, the worker registry, cron, partition maintenance,
--                      enqueue for follow-up jobs, and reading webhooks to sign deliveries. No
--                      DDL, no DELETE on history, no purge, retry, cancel, pause or limits.
--   skiplock_monitor   reads every table and view except the webhook secrets; executes nothing.
CREATE OR REPLACE FUNCTION skiplock._grant_roles()
RETURNS TABLE (role_name text, granted boolean)
LANGUAGE plpgsql
AS $$
DECLARE
    roles   text[] := ARRAY['skiplock_producer', 'skiplock_worker', 'skiplock_monitor'];
    r       text;
    definer text;
BEGIN
    REVOKE ALL ON ALL FUNCTIONS IN SCHEMA skiplock FROM PUBLIC;

    FOREACH r IN ARRAY roles LOOP
        CONTINUE WHEN to_regrole(r) IS NULL;
        EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA skiplock FROM %I', r);
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA skiplock FROM %I', r);
        EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA skiplock FROM %I', r);
        EXECUTE format('REVOKE ALL ON SCHEMA skiplock FROM %I', r);
        EXECUTE format('GRANT USAGE ON SCHEMA skiplock TO %I', r);
        -- Migrator.check() (workers run it at start) reads the bookkeeping tables.
        EXECUTE format('GRANT SELECT ON skiplock.migration, skiplock.migration_file TO %I', r);
    END LOOP;

    IF to_regrole('skiplock_producer') IS NOT NULL THEN
        -- Both run as their owner: no table privilege, no helper function needed.
        GRANT EXECUTE ON FUNCTION skiplock.enqueue, skiplock.enqueue_many TO skiplock_producer;
        -- Batch enqueue through COPY (copy.sql): the staging table is the session's own.
        GRANT EXECUTE ON FUNCTION skiplock.stage_jobs, skiplock.enqueue_staged TO skiplock_producer;
        GRANT SELECT ON skiplock.jobs TO skiplock_producer;
        -- Inspecting the workflows it enqueued (both run as their owner).
        GRANT EXECUTE ON FUNCTION skiplock.job_graph, skiplock.parent_results TO skiplock_producer;
    END IF;

    IF to_regrole('skiplock_worker') IS NOT NULL THEN
        -- The worker runtime's statements (sql/queries: job, worker, schedule, queue.rate_limits)
        -- and the helpers their bodies call as the invoker.
        GRANT EXECUTE ON FUNCTION
            skiplock.claim, skiplock.complete, skiplock.fail, skiplock.heartbeat, skiplock.release,
            skiplock.set_progress, skiplock.reap,
            skiplock.register_worker, skiplock.worker_heartbeat, skiplock.deregister_worker,
            skiplock.upsert_schedule, skiplock.fire_schedule,
            skiplock.ensure_partitions, skiplock.drop_partitions,
            skiplock.enqueue, skiplock.enqueue_many, skiplock.stage_jobs, skiplock.enqueue_staged,
            skiplock.parent_results, skiplock.job_graph,
            skiplock.backoff, skiplock.retry_delay,
            skiplock._check_job, skiplock._check_cron, skiplock._cron_error, skiplock._check_tz, skiplock._error_entry,
            skiplock._invalid, skiplock._is_queue_name, skiplock._is_task_name, skiplock._limit_key,
            skiplock._notify, skiplock._notify_done, skiplock._setting, skiplock._show,
            skiplock._at, skiplock._history_row
        TO skiplock_worker;
        -- complete/fail/release/reap move rows out of job (DELETE) into history (INSERT ... RETURNING
        -- needs SELECT); claim and heartbeat update job; claim locks queue rows (FOR UPDATE needs
        -- UPDATE) and spends tokens; new jobs only come through enqueue, so no INSERT on job.
        -- The history trigger that resolves dependencies runs as its owner.
        GRANT SELECT, UPDATE, DELETE ON skiplock.job TO skiplock_worker;
        GRANT SELECT, INSERT ON skiplock.job_history TO skiplock_worker;
        GRANT SELECT, UPDATE ON skiplock.queue TO skiplock_worker;
        GRANT SELECT, INSERT, UPDATE, DELETE ON skiplock.queue_key_bucket TO skiplock_worker;
        GRANT SELECT, INSERT, UPDATE, DELETE ON skiplock.worker TO skiplock_worker;
        GRANT SELECT, INSERT, UPDATE ON skiplock.schedule TO skiplock_worker;
        -- It may read all of these tables already; the views add no data.
        GRANT SELECT ON skiplock.jobs, skiplock.queue_stats, skiplock.workers TO skiplock_worker;
        -- Delivering a webhook signs it with the webhook's secret.
        GRANT SELECT ON skiplock.webhook TO skiplock_worker;
    END IF;

    IF to_regrole('skiplock_monitor') IS NOT NULL THEN
        GRANT SELECT ON ALL TABLES IN SCHEMA skiplock TO skiplock_monitor;
        GRANT EXECUTE ON FUNCTION skiplock.job_graph, skiplock.parent_results TO skiplock_monitor;
        -- Webhook secrets are not monitoring data: the monitor reads skiplock.webhooks instead.
        REVOKE SELECT ON skiplock.webhook FROM skiplock_monitor;
        -- History partitions created later (by ensure_partitions, as its owner) are readable too.
        SELECT pg_get_userbyid(p.proowner) INTO definer
        FROM pg_proc AS p
        WHERE p.oid = 'skiplock.ensure_partitions(integer, timestamptz)'::regprocedure;
        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA skiplock GRANT SELECT ON TABLES TO skiplock_monitor',
                       definer);
    END IF;

    RETURN QUERY
    SELECT x.r, to_regrole(x.r) IS NOT NULL
    FROM unnest(roles) WITH ORDINALITY AS x(r, ord)
    ORDER BY x.ord;
END;
$$;
