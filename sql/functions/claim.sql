-- sql/functions/claim.sql: Claiming due jobs under leases, within the queues' concurrency and rate limits.
-- The current definitions (CREATE OR REPLACE), applied by the migrator in the order of
-- manifest.txt and re-applied when this file changes.

-- _limit_key: the key a job is limited under: the value of its argument, or (beyond 200 bytes,
-- which no tenant id needs) a digest of it, so a hostile argument cannot overflow an index entry.
CREATE OR REPLACE FUNCTION skiplock._limit_key(value text)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT CASE WHEN octet_length(_limit_key.value) <= 200 THEN _limit_key.value
                ELSE 'md5:' || md5(_limit_key.value) END;
$$;

-- claim: lease up to max_jobs due jobs from `queues` (taken in the given order: earlier queues
-- first, then priority DESC, run_at, id within a queue) to worker_id until as_of + lease.
-- Each returned job carries a fresh lease_token: complete/fail/heartbeat/release need it.
-- Paused queues yield nothing. Scheduled and retryable jobs whose run_at has come are promoted
-- to available first.
-- Limits (skiplock.queue): for a limited queue the claimer locks the queue row, counts its
-- running jobs (a scan of the running-jobs index, paid by limited queues only), refills the
-- queue's bucket from tokens_at to as_of, claims at most what both allow and spends one token per
-- job. With key_arg, it looks at most max(10 x the claim, 10,000) due jobs deep, in claim order,
-- and takes from each key only what its running jobs (key_concurrency_limit) and its bucket
-- (key_rate_limit) leave free, then spends one token per job from each key's bucket. Jobs without
-- the argument are not limited by key.
-- Concurrency: any number of callers; FOR UPDATE SKIP LOCKED means no two callers ever get the
-- same job and none waits on another (claimers of a limited queue queue on its row). The
-- candidate step is MATERIALIZED so the planner cannot re-run the LIMIT subquery and lock more
-- rows than asked. The update finds the candidates by primary key (id = ANY of an array), not
-- by a join: a join's plan depends on the statistics, and a hash join would read the whole job
-- table on every claim when ANALYZE last saw it small. Cost: one job_claim_idx range scan of
-- max_jobs entries per queue, max_jobs primary-key probes (plus an empty job_scheduled_idx
-- probe), flat in backlog and history size.
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
            WHERE j.id = ANY (ARRAY(SELECT c.id FROM candidate AS c))  -- by primary key, see above
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
                WHERE j.id = ANY (ARRAY(SELECT c.id FROM candidate AS c))
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
