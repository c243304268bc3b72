-- 0011_roles: least-privilege group roles for the three kinds of client.
--
-- skiplock_producer  enqueues (enqueue, enqueue_many) and reads jobs (the jobs view: get_job,
--                    wait, result). It cannot touch the tables: no INSERT, UPDATE or DELETE, no
--                    claim, complete, cancel, retry or purge.
-- skiplock_worker    what the worker runtime runs: claim, complete, fail, heartbeat, release,
--                    set_progress, reap, the worker registry, cron (upsert_schedule,
--                    fire_schedule), partition maintenance, and enqueue for follow-up jobs. No
--                    DDL, no DELETE on history, no purge, retry, cancel, pause or limits.
-- skiplock_monitor   reads every table and view of the schema; executes no function.
-- The owner is whoever runs the migrations; admin operations (cancel, retry, purge, pause_queue,
-- set_queue_limits, schedules by hand) stay with it.
--
-- The roles are NOLOGIN groups: grant them to login roles (GRANT skiplock_worker TO app_worker).
-- Roles are cluster-wide, so every skiplock database of a cluster shares them; the privileges are
-- per database. Creating a role needs CREATEROLE: a migrator without it gets a NOTICE and the
-- missing roles are skipped, not an error; once a DBA has created them, `skiplock migrate --roles`
-- (or SELECT * FROM skiplock._grant_roles()) applies their privileges.
--
-- SECURITY DEFINER: enqueue and enqueue_many run as their owner, so a producer needs no privilege
-- on skiplock.job at all (with INSERT it could write a row in any state, with any lease token)
-- and the dedupe-window undo (a DELETE of its own fresh insert) needs no DELETE. They already
-- went through the fmgr hook that applies their SET plan_cache_mode, so this adds no call
-- overhead to speak of. ensure_partitions and drop_partitions run as their owner because
-- partition maintenance is DDL the worker must not be able to run by itself. All four pin
-- search_path to pg_catalog, pg_temp (pg_temp last: a caller's temporary objects can never
-- shadow anything), which their bodies allow: every skiplock object in them is schema-qualified.
-- CREATE OR REPLACE resets both attributes: a later migration that replaces one of these
-- functions must restate SECURITY DEFINER SET search_path = pg_catalog, pg_temp.
--
-- Future functions: PostgreSQL grants EXECUTE to PUBLIC on every new function, and default
-- privileges cannot take that back for one schema only (ALTER DEFAULT PRIVILEGES IN SCHEMA ...
-- REVOKE ... FROM PUBLIC is a no-op; a global one would change every function the owner creates
-- in any schema). So _grant_roles() revokes PUBLIC's EXECUTE on all of the schema's functions
-- each time it runs, and a migration that adds or replaces functions ends with
--     SELECT * FROM skiplock._grant_roles();
-- after replacing _grant_roles() itself when the roles' privileges change.
--
-- Migrations note: no table is touched and no lock taken beyond the catalog. Safe to run before
-- the deploy. Login roles other than the owner that used skiplock functions through PUBLIC's
-- EXECUTE lose it: grant them one of the roles (or EXECUTE) when you upgrade.

ALTER FUNCTION skiplock.enqueue(text, text, jsonb, integer, timestamptz, interval, integer, text, timestamptz,
                                interval, jsonb)
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

ALTER FUNCTION skiplock.enqueue_many(text[], text[], jsonb[], integer[], timestamptz[], interval[], integer[],
                                     text[], timestamptz, interval[], jsonb[])
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

ALTER FUNCTION skiplock.ensure_partitions(integer, timestamptz)
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

ALTER FUNCTION skiplock.drop_partitions(interval, timestamptz)
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

-- _grant_roles: create the missing group roles where the caller may (CREATEROLE), then make each
-- existing role's privileges exactly the ones below: everything a role holds in the schema is
-- revoked first, so a rerun also takes back what a newer version no longer grants (extra
-- privileges belong on the login roles, not on these groups). Returns one row per role: whether
-- it exists, and so has its privileges now. Idempotent; safe while workers run (GRANT and REVOKE
-- only touch the catalog). Executable by the owner (and superusers) only.
CREATE FUNCTION skiplock._grant_roles()
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

    FOREACH r IN ARRAY roles LOOP
        CONTINUE WHEN to_regrole(r) IS NULL;
        EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA skiplock FROM %I', r);
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA skiplock FROM %I', r);
        EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA skiplock FROM %I', r);
        EXECUTE format('REVOKE ALL ON SCHEMA skiplock FROM %I', r);
        EXECUTE format('GRANT USAGE ON SCHEMA skiplock TO %I', r);
        -- Migrator.check() (workers run it at start) reads the bookkeeping table.
        EXECUTE format('GRANT SELECT ON skiplock.migration TO %I', r);
    END LOOP;

    IF to_regrole('skiplock_producer') IS NOT NULL THEN
        -- Both run as their owner: no table privilege, no helper function needed.
        GRANT EXECUTE ON FUNCTION skiplock.enqueue, skiplock.enqueue_many TO skiplock_producer;
        GRANT SELECT ON skiplock.jobs TO skiplock_producer;
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
            skiplock.enqueue, skiplock.enqueue_many,
            skiplock.backoff, skiplock.retry_delay,
            skiplock._check_job, skiplock._check_cron, skiplock._check_tz, skiplock._error_entry,
            skiplock._invalid, skiplock._is_queue_name, skiplock._is_task_name, skiplock._limit_key,
            skiplock._notify, skiplock._notify_done, skiplock._setting, skiplock._show
        TO skiplock_worker;
        -- complete/fail/release/reap move rows out of job (DELETE) into history (INSERT ... RETURNING
        -- needs SELECT); claim and heartbeat update job; claim locks queue rows (FOR UPDATE needs
        -- UPDATE) and spends tokens; new jobs only come through enqueue, so no INSERT on job.
        GRANT SELECT, UPDATE, DELETE ON skiplock.job TO skiplock_worker;
        GRANT SELECT, INSERT ON skiplock.job_history TO skiplock_worker;
        GRANT SELECT, UPDATE ON skiplock.queue TO skiplock_worker;
        GRANT SELECT, INSERT, UPDATE, DELETE ON skiplock.queue_key_bucket TO skiplock_worker;
        GRANT SELECT, INSERT, UPDATE, DELETE ON skiplock.worker TO skiplock_worker;
        GRANT SELECT, INSERT, UPDATE ON skiplock.schedule TO skiplock_worker;
        -- It may read all of these tables already; the views add no data.
        GRANT SELECT ON skiplock.jobs, skiplock.queue_stats, skiplock.workers TO skiplock_worker;
    END IF;

    IF to_regrole('skiplock_monitor') IS NOT NULL THEN
        GRANT SELECT ON ALL TABLES IN SCHEMA skiplock TO skiplock_monitor;
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

DO $$
BEGIN
    PERFORM * FROM skiplock._grant_roles();
END;
$$;
