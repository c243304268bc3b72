-- sql/functions/webhook.sql: Webhooks: delivery jobs enqueued by triggers that exist only while a webhook does.
-- The current definitions (CREATE OR REPLACE), applied by the migrator in the order of
-- manifest.txt and re-applied when this file changes.

-- _webhooks_enqueue: AFTER INSERT ... FOR EACH STATEMENT on job_history (the final states):
-- one delivery job per finished job and matching webhook. SECURITY DEFINER with a pinned
-- search_path: workers complete jobs without any INSERT privilege on skiplock.job.
CREATE OR REPLACE FUNCTION skiplock._webhooks_enqueue()
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

-- _webhooks_enqueue_inserted: AFTER INSERT ... FOR EACH STATEMENT on job (enqueued). Deliveries
-- (queue skiplock.webhooks) never call webhooks themselves.
CREATE OR REPLACE FUNCTION skiplock._webhooks_enqueue_inserted()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    -- The deliveries a trigger inserts fire this trigger again (a statement trigger fires even
    -- for zero rows): they are never about a job of interest, so stop there.
    IF pg_trigger_depth() > 1 THEN
        RETURN NULL;
    END IF;
    INSERT INTO skiplock.job (queue, task, args, state, priority, max_attempts, run_at, created_at)
    SELECT 'skiplock.webhooks', 'skiplock.deliver_webhook',
           jsonb_build_object('webhook_id', w.id, 'event', 'enqueued', 'job_id', j.id, 'queue', j.queue,
                              'task', j.task, 'at', j.created_at),
           'available', 0, 12, now(), now()
    FROM new_rows AS j
    JOIN skiplock.webhook AS w
      ON w.active AND 'enqueued' = ANY (w.events)
     AND (w.queues IS NULL OR j.queue = ANY (w.queues))
     AND (w.tasks IS NULL OR j.task = ANY (w.tasks))
    WHERE j.queue <> 'skiplock.webhooks';
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM pg_notify('skiplock_insert', 'skiplock.webhooks');
    END IF;
    RETURN NULL;
END;
$$;

-- _webhooks_enqueue_updated: AFTER UPDATE ... FOR EACH STATEMENT on job (started, retried,
-- progress), from the old and new transition tables.
CREATE OR REPLACE FUNCTION skiplock._webhooks_enqueue_updated()
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
           jsonb_build_object('webhook_id', w.id, 'event', c.event, 'job_id', c.id, 'queue', c.queue,
                              'task', c.task, 'at', now()),
           'available', 0, 12, now(), now()
    FROM (
        SELECT n.id, n.queue, n.task,
               CASE WHEN n.state = 'running' AND o.state <> 'running' THEN 'started'
                    WHEN n.state = 'retryable' AND o.state = 'running' THEN 'retried'
                    WHEN n.state = 'available' AND o.state = 'running' AND n.attempt = o.attempt THEN 'retried'
                    WHEN n.state = 'running' AND n.progress IS DISTINCT FROM o.progress THEN 'progress'
               END AS event
        FROM new_rows AS n JOIN old_rows AS o ON o.id = n.id
        WHERE n.queue <> 'skiplock.webhooks'
    ) AS c
    JOIN skiplock.webhook AS w
      ON w.active AND c.event = ANY (w.events)
     AND (w.queues IS NULL OR c.queue = ANY (w.queues))
     AND (w.tasks IS NULL OR c.task = ANY (w.tasks));
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM pg_notify('skiplock_insert', 'skiplock.webhooks');
    END IF;
    RETURN NULL;
END;
$$;

-- _webhooks_sync: each trigger exists while an active webhook wants one of its events.
CREATE OR REPLACE FUNCTION skiplock._webhooks_sync()
RETURNS void
LANGUAGE plpgsql
SET lock_timeout = '5s'
AS $$
DECLARE
    wanted text[] := ARRAY(SELECT DISTINCT e FROM skiplock.webhook AS w, unnest(w.events) AS e WHERE w.active);
BEGIN
    DROP TRIGGER IF EXISTS skiplock_webhooks ON skiplock.job_history;
    DROP TRIGGER IF EXISTS skiplock_webhooks_inserted ON skiplock.job;
    DROP TRIGGER IF EXISTS skiplock_webhooks_updated ON skiplock.job;
    IF wanted && ARRAY['completed', 'failed', 'cancelled'] THEN
        CREATE TRIGGER skiplock_webhooks AFTER INSERT ON skiplock.job_history
            REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION skiplock._webhooks_enqueue();
    END IF;
    IF 'enqueued' = ANY (wanted) THEN
        CREATE TRIGGER skiplock_webhooks_inserted AFTER INSERT ON skiplock.job
            REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION skiplock._webhooks_enqueue_inserted();
    END IF;
    IF wanted && ARRAY['started', 'retried', 'progress'] THEN
        CREATE TRIGGER skiplock_webhooks_updated AFTER UPDATE ON skiplock.job
            REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION skiplock._webhooks_enqueue_updated();
    END IF;
END;
$$;

-- add_webhook: call `url` with a signed POST when a job reaches one of `events` (enqueued,
-- started, retried, progress, completed, failed, cancelled), for the given queues and tasks
-- (NULL: all). Returns the webhook's id. Bad input raises 22023 and changes nothing.
CREATE OR REPLACE FUNCTION skiplock.add_webhook(
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
    kinds  text[] := ARRAY['enqueued', 'started', 'retried', 'progress', 'completed', 'failed', 'cancelled'];
BEGIN
    IF add_webhook.url IS NULL OR add_webhook.url !~ '^https?://[^[:space:]]+$' OR octet_length(add_webhook.url) > 2048 THEN
        PERFORM skiplock._invalid(format('webhook url must be an http(s) URL of at most 2048 bytes, got %s',
                                         skiplock._show(add_webhook.url)));
    END IF;
    IF add_webhook.secret IS NULL OR octet_length(add_webhook.secret) NOT BETWEEN 16 AND 512 THEN
        PERFORM skiplock._invalid('webhook secret must be 16-512 bytes');
    END IF;
    IF add_webhook.events IS NULL OR cardinality(add_webhook.events) = 0 OR NOT add_webhook.events <@ kinds THEN
        PERFORM skiplock._invalid(format('webhook events must be some of %s, got %s', array_to_string(kinds, ', '),
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
CREATE OR REPLACE FUNCTION skiplock.remove_webhook(webhook_id bigint)
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
