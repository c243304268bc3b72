-- sql/functions/partitions.sql: History partitions and retention.
-- The current definitions (CREATE OR REPLACE), applied by the migrator in the order of
-- manifest.txt and re-applied when this file changes.

-- ensure_partitions: make sure daily history partitions exist from as_of's day (UTC) through
-- days_ahead days later; rows that landed in the default partition for those days are moved in.
-- Returns the names of partitions created.
-- Concurrency: serialised by an advisory lock; DDL waits at most lock_timeout (5 s) for the
-- parent table lock and fails rather than queueing behind long transactions.
-- SECURITY DEFINER: partition maintenance is DDL that only the owner may run; workers call this
-- function and cannot run the DDL themselves. search_path is pinned (every name is qualified).
CREATE OR REPLACE FUNCTION skiplock.ensure_partitions(
    days_ahead integer     DEFAULT 3,
    as_of      timestamptz DEFAULT now()
)
RETURNS SETOF text
LANGUAGE plpgsql
SECURITY DEFINER
SET lock_timeout = '5s'
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    day   date;
    part  text;
    lo    timestamptz;
    hi    timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('skiplock.partitions'));
    FOR i IN 0..greatest(ensure_partitions.days_ahead, 0) LOOP
        day  := (ensure_partitions.as_of AT TIME ZONE 'UTC')::date + i;
        part := 'job_history_p' || to_char(day, 'YYYYMMDD');
        CONTINUE WHEN to_regclass('skiplock.' || part) IS NOT NULL;
        lo := day::timestamp AT TIME ZONE 'UTC';
        hi := (day + 1)::timestamp AT TIME ZONE 'UTC';
        IF EXISTS (SELECT 1 FROM skiplock.job_history_default AS d
                   WHERE d.finished_at >= lo AND d.finished_at < hi) THEN
            -- Move the day's rows out of the default partition first, or ATTACH would fail.
            EXECUTE format('CREATE TABLE skiplock.%I (LIKE skiplock.job_history INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
            EXECUTE format('WITH moved AS (DELETE FROM skiplock.job_history_default AS d
                                           WHERE d.finished_at >= $1 AND d.finished_at < $2 RETURNING d.*)
                            INSERT INTO skiplock.%I SELECT * FROM moved', part) USING lo, hi;
            EXECUTE format('ALTER TABLE skiplock.job_history ATTACH PARTITION skiplock.%I FOR VALUES FROM (%L) TO (%L)',
                           part, lo, hi);
        ELSE
            EXECUTE format('CREATE TABLE skiplock.%I PARTITION OF skiplock.job_history FOR VALUES FROM (%L) TO (%L)',
                           part, lo, hi);
        END IF;
        RETURN NEXT part;
    END LOOP;
END;
$$;

-- drop_partitions: retention. Drop whole daily history partitions whose day ended more than
-- `retention` before as_of (never a mass DELETE), delete expired rows from the default
-- partition, and delete the dependency edges older than the retention whose child has finished
-- (their history goes with the partitions). Returns the names of partitions dropped.
-- Concurrency: serialised by an advisory lock; waits at most lock_timeout (5 s).
-- SECURITY DEFINER, as ensure_partitions.
CREATE OR REPLACE FUNCTION skiplock.drop_partitions(
    retention interval    DEFAULT '7 days',
    as_of     timestamptz DEFAULT now()
)
RETURNS SETOF text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '5s'
AS $$
DECLARE
    part   text;
    cutoff timestamptz := drop_partitions.as_of - drop_partitions.retention;
BEGIN
    IF drop_partitions.retention IS NULL OR drop_partitions.retention < interval '0' THEN
        PERFORM skiplock._invalid(format('retention must not be negative, got %s', drop_partitions.retention));
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('skiplock.partitions'));
    FOR part IN
        SELECT c.relname
        FROM pg_inherits AS i
        JOIN pg_class AS c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'skiplock.job_history'::regclass
          AND c.relname ~ '^job_history_p[0-9]{8}$'
          AND ((to_date(substr(c.relname, 14), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC') <= cutoff
        ORDER BY c.relname
    LOOP
        EXECUTE format('DROP TABLE skiplock.%I', part);
        RETURN NEXT part;
    END LOOP;
    DELETE FROM skiplock.job_history_default AS d WHERE d.finished_at < cutoff;
    DELETE FROM skiplock.job_dependency AS d
    WHERE d.created_at < cutoff
      AND NOT EXISTS (SELECT 1 FROM skiplock.job AS j WHERE j.id = d.child_id);
END;
$$;
