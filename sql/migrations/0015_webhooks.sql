-- 0015_webhooks: HTTP callbacks when jobs finish, delivered by workers as ordinary jobs.
--
-- A webhook names a URL, a secret (for the HMAC-SHA256 signature), the final states it wants
-- (completed, failed, cancelled) and optionally the queues and tasks it is about. When a job
-- reaches one of those states, a delivery job (task skiplock.deliver_webhook, queue
-- skiplock.webhooks) is enqueued in the same transaction, so deliveries get retries, backoff and
-- dead letters like any job, and a rolled-back completion sends nothing. Workers started with
-- webhooks on (`skiplock worker --webhooks`) deliver them; the secret stays in this table and
-- never enters a job's arguments.
--
-- The trigger that enqueues deliveries exists only while an active webhook does, so a database
-- without webhooks pays nothing. It is SECURITY DEFINER (with a pinned search_path): workers
-- complete jobs without any INSERT privilege on skiplock.job.
--
-- Migrations note: creates a table and functions; no trigger until a webhook is added.

CREATE TABLE skiplock.webhook (
    id         bigint      GENERATED ALWAYS AS IDENTITY,
    url        text        NOT NULL,
    secret     text        NOT NULL,
    events     text[]      NOT NULL,
    queues     text[],
    tasks      text[],
    active     boolean     NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhook_pkey PRIMARY KEY (id),
    CONSTRAINT webhook_url CHECK (url ~ '^https?://[^[:space:]]+$' AND octet_length(url) <= 2048),
    CONSTRAINT webhook_secret CHECK (octet_length(secret) BETWEEN 16 AND 512),
    CONSTRAINT webhook_events CHECK (events <@ ARRAY['completed', 'failed', 'cancelled'] AND cardinality(events) > 0)
);

CREATE FUNCTION skiplock._webhooks_enqueue()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    INSERT INTO skiplock.job (queue, task, args, state, priority, max_attempts, run_at, created_at)
    SELECT 'skiplock.webhooks', 'skiplock.deliver_webhook',
           jsonb_build_object('webhook_id', w.id, 'event', h.state::text, 'job_id', h.id, 'queue', h.queue,
                              'task', h.task, 'at', h.finished_at),
           'available', 0, 12, now(), now()
    FROM new_rows AS h
    JOIN skiplock.webhook AS w
      ON w.active AND h.state::text = ANY (w.events)
     AND (w.queues IS NULL OR h.queue = ANY (w.queues))
     AND (w.tasks IS NULL OR h.task = ANY (w.tasks))
    WHERE h.queue <> 'skiplock.webhooks';  -- a delivery finishing never calls a webhook
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM pg_notify('skiplock_insert', 'skiplock.webhooks');
    END IF;
    RETURN NULL;
END;
$$;

-- _webhooks_sync: create the trigger while an active webhook exists, drop it otherwise.
CREATE FUNCTION skiplock._webhooks_sync()
RETURNS void
LANGUAGE plpgsql
SET lock_timeout = '5s'
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM skiplock.webhook AS w WHERE w.active) THEN
        IF NOT EXISTS (SELECT 1 FROM pg_trigger AS t WHERE t.tgname = 'skiplock_webhooks'
                       AND t.tgrelid = 'skiplock.job_history'::regclass) THEN
            CREATE TRIGGER skiplock_webhooks AFTER INSERT ON skiplock.job_history
                REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION skiplock._webhooks_enqueue();
        END IF;
    ELSE
        DROP TRIGGER IF EXISTS skiplock_webhooks ON skiplock.job_history;
    END IF;
END;
$$;

-- add_webhook: call `url` with a signed POST when a job reaches one of `events` (completed,
-- failed, cancelled), for the given queues and tasks (NULL: all). Returns the webhook's id. Bad
-- input raises 22023 and changes nothing.
CREATE FUNCTION skiplock.add_webhook(
    url    text,
    secret text,
    events text[] DEFAULT ARRAY['completed', 'failed'],
    queues text[] DEFAULT NULL,
    tasks  text[] DEFAULT NULL
)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    new_id bigint;
BEGIN
    IF add_webhook.url IS NULL OR add_webhook.url !~ '^https?://[^[:space:]]+$' OR octet_length(add_webhook.url) > 2048 THEN
        PERFORM skiplock._invalid(format('webhook url must be an http(s) URL of at most 2048 bytes, got %s',
                                         skiplock._show(add_webhook.url)));
    END IF;
    IF add_webhook.secret IS NULL OR octet_length(add_webhook.secret) NOT BETWEEN 16 AND 512 THEN
        PERFORM skiplock._invalid('webhook secret must be 16-512 bytes');
    END IF;
    IF add_webhook.events IS NULL OR cardinality(add_webhook.events) = 0
       OR NOT add_webhook.events <@ ARRAY['completed', 'failed', 'cancelled'] THEN
        PERFORM skiplock._invalid(format('webhook events must be some of completed, failed, cancelled, got %s',
                                         skiplock._show(array_to_string(add_webhook.events, ','))));
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(add_webhook.queues) AS q WHERE NOT skiplock._is_queue_name(q)) THEN
        PERFORM skiplock._invalid('webhook queues must be valid queue names');
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(add_webhook.tasks) AS t WHERE NOT skiplock._is_task_name(t)) THEN
        PERFORM skiplock._invalid('webhook tasks must be valid task names');
    END IF;
    INSERT INTO skiplock.webhook (url, secret, events, queues, tasks)
    VALUES (add_webhook.url, add_webhook.secret, add_webhook.events, add_webhook.queues, add_webhook.tasks)
    RETURNING id INTO new_id;
    PERFORM skiplock._webhooks_sync();
    RETURN new_id;
END;
$$;

-- remove_webhook: delete a webhook (deliveries already enqueued still run, then find it gone
-- and fail). Returns whether it existed.
CREATE FUNCTION skiplock.remove_webhook(webhook_id bigint)
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    found_it boolean;
BEGIN
    DELETE FROM skiplock.webhook AS w WHERE w.id = remove_webhook.webhook_id;
    found_it := FOUND;
    PERFORM skiplock._webhooks_sync();
    RETURN found_it;
END;
$$;

-- webhooks: the registered webhooks, without their secrets.
CREATE VIEW skiplock.webhooks AS
    SELECT w.id, w.url, w.events, w.queues, w.tasks, w.active, w.created_at
    FROM skiplock.webhook AS w;

-- _grant_roles: as in 0011, plus the webhook table: workers read it (to sign deliveries), the
-- monitor does not (secrets); it reads the webhooks view like every other view.
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
        -- Delivering a webhook signs it with the webhook's secret (0015).
        GRANT SELECT ON skiplock.webhook TO skiplock_worker;
    END IF;

    IF to_regrole('skiplock_monitor') IS NOT NULL THEN
        GRANT SELECT ON ALL TABLES IN SCHEMA skiplock TO skiplock_monitor;
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

SELECT * FROM skiplock._grant_roles();
