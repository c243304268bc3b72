-- 0009_key_rate_limits: a token bucket per key inside a queue (one per tenant, per API
-- account), next to the per-key concurrency limit of 0002.
--
-- A queue with key_arg may now carry
--   key_rate_limit  at most this many claims per second on average for each value of the job
--   key_rate_burst  argument key_arg, with at most this many at once (each key's bucket size).
-- Each key's bucket is a row of skiplock.queue_key_bucket, refilled lazily by claim() from the
-- database clock; a key without a row has a full bucket. Claimers of the queue hold its row
-- lock (as in 0002), so buckets are spent by one claimer at a time, across every worker.
-- Buckets that have refilled are deleted now and then by claim(), so the table holds only the
-- keys that spent tokens recently.
--
-- Migrations note: adds nullable columns to skiplock.queue (no rewrite) and a small table;
-- replaces set_queue_limits() (two more parameters), claim() (same signature) and
-- queue_stats (one more column at the end).

ALTER TABLE skiplock.queue
    ADD COLUMN key_rate_limit double precision,
    ADD COLUMN key_rate_burst integer,
    DROP CONSTRAINT queue_key_limit_with_arg,
    ADD CONSTRAINT queue_key_rate_limit_range CHECK (key_rate_limit > 0 AND key_rate_limit <= 1000000),
    ADD CONSTRAINT queue_key_rate_burst_range CHECK (key_rate_burst BETWEEN 1 AND 1000000),
    ADD CONSTRAINT queue_key_rate_burst_with_rate CHECK ((key_rate_limit IS NULL) = (key_rate_burst IS NULL)),
    ADD CONSTRAINT queue_key_limit_with_arg
        CHECK ((key_arg IS NULL) = (key_concurrency_limit IS NULL AND key_rate_limit IS NULL));

CREATE TABLE skiplock.queue_key_bucket (
    queue     text             NOT NULL REFERENCES skiplock.queue (name) ON DELETE CASCADE,
    key       text             NOT NULL,
    tokens    double precision NOT NULL,
    tokens_at timestamptz      NOT NULL,
    CONSTRAINT queue_key_bucket_pkey PRIMARY KEY (queue, key)
);

-- _limit_key: the key a job is limited under: the value of its argument, or (beyond 200 bytes,
-- which no tenant id needs) a digest of it, so a hostile argument cannot overflow an index entry.
CREATE FUNCTION skiplock._limit_key(value text)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT CASE WHEN octet_length(_limit_key.value) <= 200 THEN _limit_key.value
                ELSE 'md5:' || md5(_limit_key.value) END;
$$;

DROP FUNCTION skiplock.set_queue_limits(text, integer, double precision, integer, text, integer, timestamptz);

-- set_queue_limits: set (or, with NULL, remove) the limits of `queue` for every worker at once.
-- burst defaults to one second's worth of jobs (at least 1), key_burst likewise for key_rate.
-- Changing the rate refills the bucket; setting the limits refills every key's bucket. per_key
-- and key_rate limit the jobs of each value of the job argument `key_arg`: running at once, and
-- started per second. Returns the queue row. Bad values raise 22023 and change nothing.
CREATE FUNCTION skiplock.set_queue_limits(
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

-- claim: as in 0002, plus each key's token bucket. Under the queue's row lock the claimer
-- looks at most max(10 x the claim, 10,000) due jobs deep, in claim order, and picks from each
-- key only what both its running jobs (per_key) and its bucket (key_rate) leave free; after
-- claiming it spends one token per job from its key's bucket. Jobs without the argument are
-- not limited by key.
CREATE OR REPLACE FUNCTION skiplock.claim(
    queues    text[],
    worker_id uuid,
    max_jobs  integer     DEFAULT 1,
    lease     interval    DEFAULT '30 seconds',
    as_of     timestamptz DEFAULT now()
)
RETURNS SETOF skiplock.job
LANGUAGE plpgsql
AS $$
DECLARE
    q         text;
    remaining integer := claim.max_jobs;
    want      integer;
    got       integer;
    cfg       skiplock.queue;
    running   integer;
    bucket    double precision;  -- tokens in the queue's bucket after refilling
    picked    bigint[];          -- per-key limits: the jobs they allow, or NULL
BEGIN
    IF claim.max_jobs IS NULL OR claim.max_jobs < 1 OR claim.max_jobs > skiplock._setting('max_batch_size', 10000) THEN
        PERFORM skiplock._invalid(format('max_jobs must be between 1 and %s, got %s',
                                         skiplock._setting('max_batch_size', 10000), claim.max_jobs));
    END IF;
    IF claim.lease IS NULL OR claim.lease <= interval '0' THEN
        PERFORM skiplock._invalid(format('lease must be positive, got %s', claim.lease));
    END IF;
    IF claim.worker_id IS NULL THEN
        PERFORM skiplock._invalid('worker_id must not be NULL');
    END IF;
    IF claim.queues IS NULL OR cardinality(claim.queues) = 0 THEN
        PERFORM skiplock._invalid('queues must be a non-empty array');
    END IF;

    FOREACH q IN ARRAY claim.queues LOOP
        EXIT WHEN remaining <= 0;
        want := remaining;
        bucket := NULL;
        cfg := NULL;
        SELECT * INTO cfg FROM skiplock.queue AS qu WHERE qu.name = q;
        IF FOUND THEN
            CONTINUE WHEN cfg.paused_at IS NOT NULL AND (cfg.paused_until IS NULL OR cfg.paused_until > claim.as_of);
            IF cfg.concurrency_limit IS NOT NULL OR cfg.rate_limit IS NOT NULL OR cfg.key_arg IS NOT NULL THEN
                -- One claimer at a time per limited queue; re-read the limits under the lock.
                SELECT * INTO cfg FROM skiplock.queue AS qu WHERE qu.name = q FOR UPDATE;
                IF cfg.concurrency_limit IS NOT NULL THEN
                    SELECT count(*) INTO running FROM skiplock.job AS j WHERE j.queue = q AND j.state = 'running';
                    want := least(want, cfg.concurrency_limit - running);
                END IF;
                IF cfg.rate_limit IS NOT NULL THEN
                    bucket := least(cfg.rate_burst::double precision,
                                    COALESCE(cfg.tokens, cfg.rate_burst)
                                    + cfg.rate_limit * greatest(0, extract(epoch FROM claim.as_of - cfg.tokens_at)));
                    want := least(want, floor(bucket)::integer);
                END IF;
                CONTINUE WHEN want <= 0;
            END IF;
        END IF;

        -- Promote what has come due. SKIP LOCKED: concurrent claimers split the work.
        WITH due AS MATERIALIZED (
            SELECT j.id FROM skiplock.job AS j
            WHERE j.queue = q AND j.state IN ('scheduled', 'retryable') AND j.run_at <= claim.as_of
            ORDER BY j.run_at
            LIMIT 1000
            FOR UPDATE SKIP LOCKED
        )
        UPDATE skiplock.job AS j SET state = 'available'
        FROM due WHERE j.id = due.id;

        picked := NULL;
        IF cfg.key_arg IS NOT NULL THEN
            WITH busy AS (
                SELECT skiplock._limit_key(j.args ->> cfg.key_arg) AS k, count(*) AS n
                FROM skiplock.job AS j
                WHERE cfg.key_concurrency_limit IS NOT NULL
                  AND j.queue = q AND j.state = 'running' AND j.args ? cfg.key_arg
                GROUP BY 1
            ),
            due AS (
                SELECT j.id, j.priority, j.run_at, skiplock._limit_key(j.args ->> cfg.key_arg) AS k
                FROM skiplock.job AS j
                WHERE j.queue = q AND j.state = 'available' AND j.run_at <= claim.as_of
                ORDER BY j.priority DESC, j.run_at, j.id
                LIMIT greatest(want * 10, 10000)
            ),
            ranked AS (
                SELECT d.id, d.k,
                       row_number() OVER (PARTITION BY d.k ORDER BY d.priority DESC, d.run_at, d.id) AS rn
                FROM due AS d
            ),
            tokens AS (
                SELECT kb.key AS k,
                       least(cfg.key_rate_burst::double precision,
                             kb.tokens + cfg.key_rate_limit
                                         * greatest(0, extract(epoch FROM claim.as_of - kb.tokens_at))) AS n
                FROM skiplock.queue_key_bucket AS kb
                WHERE cfg.key_rate_limit IS NOT NULL AND kb.queue = q
                  AND kb.key IN (SELECT d.k FROM due AS d WHERE d.k IS NOT NULL)
            )
            SELECT COALESCE(array_agg(r.id), '{}') INTO picked
            FROM ranked AS r
            LEFT JOIN busy AS b ON b.k = r.k
            LEFT JOIN tokens AS t ON t.k = r.k
            WHERE r.k IS NULL
               OR ((cfg.key_concurrency_limit IS NULL OR r.rn <= cfg.key_concurrency_limit - COALESCE(b.n, 0))
                   AND (cfg.key_rate_limit IS NULL OR r.rn <= floor(COALESCE(t.n, cfg.key_rate_burst))));
        END IF;

        IF cfg.key_rate_limit IS NULL THEN
            RETURN QUERY
            WITH candidate AS MATERIALIZED (
                SELECT j.id FROM skiplock.job AS j
                WHERE j.queue = q AND j.state = 'available' AND j.run_at <= claim.as_of
                  AND (picked IS NULL OR j.id = ANY (picked))   -- per-key limit: only what it picked
                ORDER BY j.priority DESC, j.run_at, j.id        -- higher priority first
                LIMIT want
                FOR UPDATE SKIP LOCKED
            )
            UPDATE skiplock.job AS j
            SET state = 'running',
                attempt = j.attempt + 1,
                attempted_at = claim.as_of,
                worker_id = claim.worker_id,
                lease_token = gen_random_uuid(),
                lease_expires_at = claim.as_of + claim.lease
            FROM candidate
            WHERE j.id = candidate.id
            RETURNING j.*;
            GET DIAGNOSTICS got = ROW_COUNT;
        ELSE
            -- The same claim, spending each claimed job's token from its key's bucket.
            RETURN QUERY
            WITH candidate AS MATERIALIZED (
                SELECT j.id FROM skiplock.job AS j
                WHERE j.queue = q AND j.state = 'available' AND j.run_at <= claim.as_of
                  AND j.id = ANY (picked)
                ORDER BY j.priority DESC, j.run_at, j.id
                LIMIT want
                FOR UPDATE SKIP LOCKED
            ),
            claimed AS (
                UPDATE skiplock.job AS j
                SET state = 'running',
                    attempt = j.attempt + 1,
                    attempted_at = claim.as_of,
                    worker_id = claim.worker_id,
                    lease_token = gen_random_uuid(),
                    lease_expires_at = claim.as_of + claim.lease
                FROM candidate
                WHERE j.id = candidate.id
                RETURNING j.*
            ),
            spent AS (
                -- A new row starts from a full bucket; EXCLUDED.tokens carries burst - spent.
                INSERT INTO skiplock.queue_key_bucket AS kb (queue, key, tokens, tokens_at)
                SELECT q, c.k, cfg.key_rate_burst - c.n, claim.as_of
                FROM (SELECT skiplock._limit_key(c.args ->> cfg.key_arg) AS k, count(*) AS n
                      FROM claimed AS c
                      WHERE c.args ->> cfg.key_arg IS NOT NULL
                      GROUP BY 1) AS c
                ON CONFLICT (queue, key) DO UPDATE
                SET tokens = least(cfg.key_rate_burst::double precision,
                                   kb.tokens + cfg.key_rate_limit
                                               * greatest(0, extract(epoch FROM claim.as_of - kb.tokens_at)))
                             - (cfg.key_rate_burst - EXCLUDED.tokens),
                    tokens_at = greatest(kb.tokens_at, claim.as_of)
            )
            SELECT * FROM claimed;
            GET DIAGNOSTICS got = ROW_COUNT;
            -- Now and then forget buckets that have refilled: a missing row is a full bucket.
            IF random() < 0.02 THEN
                DELETE FROM skiplock.queue_key_bucket AS kb
                WHERE kb.queue = q
                  AND kb.tokens + cfg.key_rate_limit * extract(epoch FROM claim.as_of - kb.tokens_at)
                      >= cfg.key_rate_burst;
            END IF;
        END IF;
        remaining := remaining - got;
        IF bucket IS NOT NULL THEN
            UPDATE skiplock.queue AS qu
            SET tokens = bucket - got, tokens_at = greatest(qu.tokens_at, claim.as_of)
            WHERE qu.name = q;
        END IF;
    END LOOP;
END;
$$;

-- queue_stats: as in 0002, plus the rate limit per key.
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
