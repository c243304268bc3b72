-- 0001_baseline: the skiplock tables, types and indexes.
--
-- This migration holds data definitions only. Every function, trigger, view and grant is in
-- sql/functions/ (one current file per concept), applied after the versioned migrations in the
-- order of sql/functions/manifest.txt; sql/schema.sql is the whole engine as one generated file.
--
-- Layout:
--   skiplock.job              live jobs only (waiting, scheduled, available, running, retryable):
--                             small and hot.
--   skiplock.job_history      finished jobs (completed, failed, cancelled), range-partitioned by
--                             day on finished_at. A row is written once and never updated, so the
--                             partition key never changes under a contended row; retention is DROP
--                             of old partitions.
--   skiplock.job_dependency   workflow edges (parent -> child), kept for inspection until the
--                             parent's history partition is dropped.
--   skiplock.queue            per-queue switches: pause, concurrency and rate limits.
--   skiplock.queue_key_bucket the token bucket of each key of a rate-limited queue.
--   skiplock.schedule         cron schedules.
--   skiplock.webhook          HTTP callbacks on job events.
--   skiplock.worker           worker registry and heartbeats.
--
-- Every state transition is a function in sql/functions/. Python (and any other language) calls
-- those functions and never writes DML against these tables itself.
--
-- Squashed before the first release from the pre-release migrations 0001-0018; a database
-- migrated by them is recognised by their checksums (sql/migrations/legacy.sha256) and upgraded
-- without running this file (docs/architecture.md, "Versioned and repeatable SQL").

CREATE TYPE skiplock.job_state AS ENUM (
    'waiting',     -- waiting for its parents (workflows)
    'scheduled',   -- waiting for run_at
    'available',   -- due, can be claimed
    'running',     -- leased to a worker until lease_expires_at
    'retryable',   -- failed an attempt, waiting for its backoff (run_at)
    'completed',   -- finished successfully (history)
    'failed',      -- attempts exhausted or non-retryable: the dead-letter set (history)
    'cancelled'    -- cancelled before finishing (history)
);

CREATE SEQUENCE skiplock.job_id_seq AS bigint;

-- fillfactor 80: leave room on each page so lease extensions (heartbeats), which change no
-- indexed column, stay HOT updates and do not grow the indexes.
CREATE TABLE skiplock.job (
    id               bigint      NOT NULL DEFAULT nextval('skiplock.job_id_seq'),
    queue            text        NOT NULL,
    task             text        NOT NULL,
    args             jsonb       NOT NULL DEFAULT '{}',
    state            skiplock.job_state NOT NULL DEFAULT 'available',
    priority         smallint    NOT NULL DEFAULT 0,
    attempt          integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL DEFAULT 10,
    run_at           timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    attempted_at     timestamptz,
    lease_token      uuid,
    lease_expires_at timestamptz,
    worker_id        uuid,
    dedupe_key       text,
    cancel_requested boolean     NOT NULL DEFAULT false,
    errors           jsonb       NOT NULL DEFAULT '[]',
    -- what a running job last reported (0-100, and a short message); changes no indexed column,
    -- so progress updates stay HOT
    progress         double precision,
    progress_message text,
    -- the job's own retry backoff (see skiplock.retry_delay); NULL: its task's or the default
    retry_policy     jsonb,
    -- a W3C traceparent, taken from the enqueuing transaction's skiplock.traceparent setting, so
    -- every enqueue path (any language, a trigger) carries the producer's trace without a parameter
    trace_parent     text        DEFAULT NULLIF(left(current_setting('skiplock.traceparent', true), 256), ''),
    -- how many of a waiting job's parents have not finished; each finishing parent decrements it
    pending_parents  integer     NOT NULL DEFAULT 0,
    CONSTRAINT job_pkey PRIMARY KEY (id),
    CONSTRAINT job_live_state CHECK (state NOT IN ('completed', 'failed', 'cancelled')),
    CONSTRAINT job_args_object CHECK (jsonb_typeof(args) = 'object'),
    CONSTRAINT job_attempts_range CHECK (max_attempts >= 1 AND attempt >= 0),
    CONSTRAINT job_lease_when_running CHECK (
        (state = 'running') = (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL)
    ),
    CONSTRAINT job_progress_range CHECK (progress BETWEEN 0 AND 100)
) WITH (
    fillfactor = 80,
    -- The hot table churns constantly; vacuum it by dead-row count, not by a fraction of its size.
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 5000
);

ALTER SEQUENCE skiplock.job_id_seq OWNED BY skiplock.job.id;

-- claim: one range scan per queue in priority order. Only due, unleased rows are in it.
CREATE INDEX job_claim_idx ON skiplock.job (queue, priority DESC, run_at, id)
    WHERE state = 'available';

-- promotion of scheduled/retryable jobs whose run_at has come: an empty range scan when none are due.
CREATE INDEX job_scheduled_idx ON skiplock.job (queue, run_at)
    WHERE state IN ('scheduled', 'retryable');

-- running jobs only: the reaper's scan, and the per-id probes of complete/heartbeat/release. Keyed
-- on id so that, when statistics say few jobs run, the planner's favourite small index is still
-- a lookup and not a filter over every running job. lease_expires_at is deliberately not
-- indexed, so heartbeats change no indexed column and stay HOT.
CREATE INDEX job_running_idx ON skiplock.job (id)
    WHERE state = 'running';

-- dedupe keys are unique among live jobs; a finished job frees its key.
CREATE UNIQUE INDEX job_dedupe_key_idx ON skiplock.job (dedupe_key)
    WHERE dedupe_key IS NOT NULL;

CREATE TABLE skiplock.job_history (
    id               bigint      NOT NULL,
    queue            text        NOT NULL,
    task             text        NOT NULL,
    args             jsonb       NOT NULL,
    state            skiplock.job_state NOT NULL,
    priority         smallint    NOT NULL,
    attempt          integer     NOT NULL,
    max_attempts     integer     NOT NULL,
    run_at           timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    attempted_at     timestamptz,
    worker_id        uuid,
    dedupe_key       text,
    errors           jsonb       NOT NULL,
    finished_at      timestamptz NOT NULL,
    result           jsonb,
    CONSTRAINT job_history_final_state CHECK (state IN ('completed', 'failed', 'cancelled'))
) PARTITION BY RANGE (finished_at);

-- Safety net: a finished job is never lost because its day's partition does not exist yet.
-- ensure_partitions() moves any rows found here into a proper partition.
CREATE TABLE skiplock.job_history_default PARTITION OF skiplock.job_history DEFAULT;

CREATE INDEX job_history_id_idx ON skiplock.job_history (id);

-- BRIN: finished_at is append-ordered, so a block-range index costs almost nothing per insert.
CREATE INDEX job_history_finished_idx ON skiplock.job_history USING brin (finished_at);

-- the dead-letter set stays cheap to count and list however large history grows.
CREATE INDEX job_history_failed_idx ON skiplock.job_history (queue, finished_at)
    WHERE state = 'failed';

-- Completed jobs that carried a dedupe key, newest first per key: the dedupe window's lookup.
CREATE INDEX job_history_dedupe_idx ON skiplock.job_history (dedupe_key, finished_at)
    WHERE dedupe_key IS NOT NULL AND state = 'completed';

-- One row per workflow edge. `resolved` is set when the parent finishes; rows are kept for
-- inspection (job_graph, parent_results) and pruned by drop_partitions with history. Parents
-- always have smaller ids than their children: a graph cannot have a cycle.
CREATE TABLE skiplock.job_dependency (
    parent_id  bigint      NOT NULL,
    child_id   bigint      NOT NULL,
    on_failure text        NOT NULL DEFAULT 'cancel',
    resolved   boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT job_dependency_pkey PRIMARY KEY (parent_id, child_id),
    CONSTRAINT job_dependency_on_failure CHECK (on_failure IN ('cancel', 'run')),
    CONSTRAINT job_dependency_order CHECK (parent_id < child_id)
);

CREATE INDEX job_dependency_child_idx ON skiplock.job_dependency (child_id);

-- Edges whose parent has not finished: what a finishing statement looks up. Small (only work in
-- flight), and empty when no workflow is running, which makes the history trigger's check one probe.
CREATE INDEX job_dependency_pending_idx ON skiplock.job_dependency (parent_id) WHERE NOT resolved;

CREATE INDEX job_dependency_created_idx ON skiplock.job_dependency USING brin (created_at);

-- A queue may carry
--   concurrency_limit  at most this many of its jobs running at once, across every worker;
--   rate_limit         at most this many claims per second on average (a token bucket),
--   rate_burst         with at most this many at once (the bucket size);
--   key_arg            a job argument whose values (a tenant, an account, an API) are limited
--                      separately, by
--   key_concurrency_limit  at most this many running at once per value, and/or
--   key_rate_limit, key_rate_burst  a token bucket per value (skiplock.queue_key_bucket).
-- The queue's bucket lives on its row (tokens, tokens_at) and is refilled lazily by claim() from
-- the database clock. Claimers of a limited queue take its row lock for the length of their
-- claim, so limits hold across any number of workers; unlimited queues never touch the row lock.
CREATE TABLE skiplock.queue (
    name                  text             NOT NULL,
    paused_at             timestamptz,
    paused_until          timestamptz,
    created_at            timestamptz      NOT NULL DEFAULT now(),
    concurrency_limit     integer,
    rate_limit            double precision,
    rate_burst            integer,
    tokens                double precision,
    tokens_at             timestamptz,
    key_arg               text,
    key_concurrency_limit integer,
    key_rate_limit        double precision,
    key_rate_burst        integer,
    CONSTRAINT queue_pkey PRIMARY KEY (name),
    CONSTRAINT queue_concurrency_limit_range CHECK (concurrency_limit BETWEEN 1 AND 1000000),
    CONSTRAINT queue_rate_limit_range CHECK (rate_limit > 0 AND rate_limit <= 1000000),
    CONSTRAINT queue_rate_burst_range CHECK (rate_burst BETWEEN 1 AND 1000000),
    CONSTRAINT queue_rate_burst_with_rate CHECK ((rate_limit IS NULL) = (rate_burst IS NULL)),
    CONSTRAINT queue_key_concurrency_range CHECK (key_concurrency_limit BETWEEN 1 AND 1000000),
    CONSTRAINT queue_key_rate_limit_range CHECK (key_rate_limit > 0 AND key_rate_limit <= 1000000),
    CONSTRAINT queue_key_rate_burst_range CHECK (key_rate_burst BETWEEN 1 AND 1000000),
    CONSTRAINT queue_key_rate_burst_with_rate CHECK ((key_rate_limit IS NULL) = (key_rate_burst IS NULL)),
    CONSTRAINT queue_key_limit_with_arg
        CHECK ((key_arg IS NULL) = (key_concurrency_limit IS NULL AND key_rate_limit IS NULL))
);

-- A key without a row has a full bucket; claim() deletes rows that have refilled, so the table
-- holds only the keys that spent tokens recently.
CREATE TABLE skiplock.queue_key_bucket (
    queue     text             NOT NULL REFERENCES skiplock.queue (name) ON DELETE CASCADE,
    key       text             NOT NULL,
    tokens    double precision NOT NULL,
    tokens_at timestamptz      NOT NULL,
    CONSTRAINT queue_key_bucket_pkey PRIMARY KEY (queue, key)
);

CREATE TABLE skiplock.worker (
    id           uuid        NOT NULL,
    host         text        NOT NULL,
    pid          integer     NOT NULL,
    queues       text[]      NOT NULL,
    concurrency  integer     NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    jobs_done    bigint      NOT NULL DEFAULT 0,
    CONSTRAINT worker_pkey PRIMARY KEY (id)
);

-- Cron expressions are evaluated by the schedulers (every worker runs one), which hand the ticks
-- they found due to fire_schedule(); under the schedule's row lock only ticks later than
-- last_tick become jobs, so however many schedulers race, each tick is enqueued once.
CREATE TABLE skiplock.schedule (
    name         text        NOT NULL,
    cron         text        NOT NULL,
    tz           text        NOT NULL DEFAULT 'UTC',
    task         text        NOT NULL,
    queue        text        NOT NULL DEFAULT 'default',
    args         jsonb       NOT NULL DEFAULT '{}',
    priority     smallint    NOT NULL DEFAULT 0,
    max_attempts integer     NOT NULL DEFAULT 10,
    catch_up     interval    NOT NULL DEFAULT '1 hour',
    paused       boolean     NOT NULL DEFAULT false,
    last_tick    timestamptz NOT NULL,  -- every tick up to here has been enqueued or skipped
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schedule_pkey PRIMARY KEY (name),
    CONSTRAINT schedule_args_object CHECK (jsonb_typeof(args) = 'object'),
    CONSTRAINT schedule_catch_up_range CHECK (catch_up >= interval '0' AND catch_up <= interval '31 days')
);

-- A webhook names a URL, a secret (for the HMAC-SHA256 signature), the events it wants and
-- optionally the queues and tasks it is about. Deliveries are ordinary jobs (queue
-- skiplock.webhooks); the secret stays in this table and never enters a job's arguments.
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
    CONSTRAINT webhook_events CHECK (
        events <@ ARRAY['enqueued', 'started', 'retried', 'progress', 'completed', 'failed', 'cancelled']
        AND cardinality(events) > 0)
);
