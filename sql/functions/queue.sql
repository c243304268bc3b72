-- sql/functions/queue.sql: Queues: pause, resume and limits.
-- The current definitions (CREATE OR REPLACE), applied by the migrator in the order of
-- manifest.txt and re-applied when this file changes.

-- _check_queue: a valid queue name, or an invalid_parameter_value error.
CREATE OR REPLACE FUNCTION skiplock._check_queue(queue text)
RETURNS text
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT CASE WHEN skiplock._is_queue_name(_check_queue.queue) THEN _check_queue.queue
                ELSE skiplock._invalid(format('invalid queue name %s', skiplock._show(_check_queue.queue)),
                     'queue names are 1-63 characters of letters, digits and _ . : - and start with a letter or digit')
           END;
$$;

-- pause_queue: stop all workers everywhere from claiming jobs of `queue` (running jobs finish),
-- until resume_queue or, when given, until `until`. Enqueue keeps working.
CREATE OR REPLACE FUNCTION skiplock.pause_queue(
    queue text,
    until timestamptz DEFAULT NULL,
    as_of timestamptz DEFAULT now()
)
RETURNS skiplock.queue
LANGUAGE sql
AS $$
    INSERT INTO skiplock.queue AS q (name, paused_at, paused_until, created_at)
    VALUES (skiplock._check_queue(pause_queue.queue), pause_queue.as_of, pause_queue.until, pause_queue.as_of)
    ON CONFLICT (name) DO UPDATE
    SET paused_at = EXCLUDED.paused_at, paused_until = EXCLUDED.paused_until
    RETURNING q.*;
$$;

-- resume_queue: let workers claim from `queue` again and wake them.
CREATE OR REPLACE FUNCTION skiplock.resume_queue(queue text)
RETURNS skiplock.queue
LANGUAGE sql
AS $$
    WITH upserted AS (
        INSERT INTO skiplock.queue AS q (name)
        VALUES (skiplock._check_queue(resume_queue.queue))
        ON CONFLICT (name) DO UPDATE SET paused_at = NULL, paused_until = NULL
        RETURNING q.*
    ),
    woken AS (
        SELECT skiplock._notify(ARRAY[resume_queue.queue]) AS n
    )
    SELECT u.* FROM upserted AS u, woken;
$$;

-- set_queue_limits: set (or, with NULL, remove) the limits of `queue` for every worker at once.
-- burst defaults to one second's worth of jobs (at least 1), key_burst likewise for key_rate.
-- Changing the rate refills the bucket; setting the limits refills every key's bucket. per_key
-- and key_rate limit the jobs of each value of the job argument `key_arg`: running at once, and
-- started per second. Returns the queue row. Bad values raise 22023 and change nothing.
CREATE OR REPLACE FUNCTION skiplock.set_queue_limits(
    queue       text,
    concurrency integer          DEFAULT NULL,
    rate        double precision DEFAULT NULL,
    burst       integer          DEFAULT NULL,
    key_arg     text             DEFAULT NULL,
    per_key     integer          DEFAULT NULL,
    key_rate    double precision DEFAULT NULL,
    key_burst   integer          DEFAULT NULL,
    as_of       timestamptz      DEFAULT now()
)
RETURNS skiplock.queue
LANGUAGE plpgsql
AS $$
DECLARE
    q  skiplock.queue;
    b  integer;
    kb integer;
BEGIN
    PERFORM skiplock._check_queue(set_queue_limits.queue);
    IF set_queue_limits.concurrency IS NOT NULL AND set_queue_limits.concurrency NOT BETWEEN 1 AND 1000000 THEN
        PERFORM skiplock._invalid(format('concurrency limit must be between 1 and 1000000, got %s',
                                         set_queue_limits.concurrency));
    END IF;
    IF set_queue_limits.rate IS NOT NULL
       AND (set_queue_limits.rate <= 0 OR set_queue_limits.rate > 1000000 OR set_queue_limits.rate = 'NaN') THEN
        PERFORM skiplock._invalid(format('rate limit must be more than 0 and at most 1000000 jobs per second, got %s',
                                         set_queue_limits.rate));
    END IF;
    IF set_queue_limits.burst IS NOT NULL AND set_queue_limits.rate IS NULL THEN
        PERFORM skiplock._invalid('burst needs a rate limit');
    END IF;
    IF set_queue_limits.burst IS NOT NULL AND set_queue_limits.burst NOT BETWEEN 1 AND 1000000 THEN
        PERFORM skiplock._invalid(format('burst must be between 1 and 1000000, got %s', set_queue_limits.burst));
    END IF;
    IF set_queue_limits.key_arg IS NULL AND (set_queue_limits.per_key IS NOT NULL OR set_queue_limits.key_rate IS NOT NULL) THEN
        PERFORM skiplock._invalid('per_key and key_rate need key_arg: the job argument that names the key');
    END IF;
    IF set_queue_limits.key_arg IS NOT NULL AND set_queue_limits.per_key IS NULL AND set_queue_limits.key_rate IS NULL THEN
        PERFORM skiplock._invalid('key_arg needs a limit per key: per_key, key_rate or both');
    END IF;
    IF set_queue_limits.per_key IS NOT NULL AND set_queue_limits.per_key NOT BETWEEN 1 AND 1000000 THEN
        PERFORM skiplock._invalid(format('per_key must be between 1 and 1000000, got %s', set_queue_limits.per_key));
    END IF;
    IF set_queue_limits.key_rate IS NOT NULL
       AND (set_queue_limits.key_rate <= 0 OR set_queue_limits.key_rate > 1000000 OR set_queue_limits.key_rate = 'NaN') THEN
        PERFORM skiplock._invalid(format('key_rate must be more than 0 and at most 1000000 jobs per second, got %s',
                                         set_queue_limits.key_rate));
    END IF;
    IF set_queue_limits.key_burst IS NOT NULL AND set_queue_limits.key_rate IS NULL THEN
        PERFORM skiplock._invalid('key_burst needs key_rate');
    END IF;
    IF set_queue_limits.key_burst IS NOT NULL AND set_queue_limits.key_burst NOT BETWEEN 1 AND 1000000 THEN
        PERFORM skiplock._invalid(format('key_burst must be between 1 and 1000000, got %s', set_queue_limits.key_burst));
    END IF;
    IF set_queue_limits.key_arg IS NOT NULL AND set_queue_limits.key_arg !~ '^[A-Za-z_][A-Za-z0-9_]{0,62}$' THEN
        PERFORM skiplock._invalid(format('key_arg must be an argument name, got %s', skiplock._show(set_queue_limits.key_arg)));
    END IF;
    -- Computed only after the checks: ceil() of a bad rate would fail with a less clear error.
    IF set_queue_limits.rate IS NOT NULL THEN
        b := COALESCE(set_queue_limits.burst, greatest(1, ceil(set_queue_limits.rate))::integer);
    END IF;
    IF set_queue_limits.key_rate IS NOT NULL THEN
        kb := COALESCE(set_queue_limits.key_burst, greatest(1, ceil(set_queue_limits.key_rate))::integer);
    END IF;
    INSERT INTO skiplock.queue AS x (name, created_at, concurrency_limit, rate_limit, rate_burst, tokens, tokens_at,
                                     key_arg, key_concurrency_limit, key_rate_limit, key_rate_burst)
    VALUES (set_queue_limits.queue, set_queue_limits.as_of, set_queue_limits.concurrency, set_queue_limits.rate,
            b, b, set_queue_limits.as_of, set_queue_limits.key_arg, set_queue_limits.per_key,
            set_queue_limits.key_rate, kb)
    ON CONFLICT (name) DO UPDATE
    SET concurrency_limit = EXCLUDED.concurrency_limit,
        key_arg = EXCLUDED.key_arg,
        key_concurrency_limit = EXCLUDED.key_concurrency_limit,
        key_rate_limit = EXCLUDED.key_rate_limit,
        key_rate_burst = EXCLUDED.key_rate_burst,
        rate_limit = EXCLUDED.rate_limit,
        rate_burst = EXCLUDED.rate_burst,
        tokens = EXCLUDED.tokens,
        tokens_at = EXCLUDED.tokens_at
    RETURNING x.* INTO q;
    DELETE FROM skiplock.queue_key_bucket AS kb2 WHERE kb2.queue = set_queue_limits.queue;
    -- Raised or removed limits may let waiting jobs run now.
    PERFORM skiplock._notify(ARRAY[set_queue_limits.queue]);
    RETURN q;
END;
$$;
