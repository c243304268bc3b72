-- sql/functions/schedule.sql: Cron schedules stored in the database, each tick enqueued once.
-- The current definitions (CREATE OR REPLACE), applied by the migrator in the order of
-- manifest.txt and re-applied when this file changes.

-- _cron_error: what is wrong with a cron expression, or NULL when nothing this function can see
-- is: 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first; each field a
-- comma-separated list of *, n, n-m, with an optional /step (1 or more), names (jan, mon) and the
-- L, W, # and ? forms; every number within its field's range (second and minute 0-59, hour
-- 0-23, day-of-month 1-31, month 1-12, day-of-week 0-7). The schedulers' cron library has the
-- last word (it also rejects a day that never comes, such as 30 February), but a value out of
-- range never reaches the table.
CREATE OR REPLACE FUNCTION skiplock._cron_error(cron text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
AS $$
DECLARE
    fields text[];
    names  text[];
    lo     integer[];
    hi     integer[];
    item   text;
    step   text;
    num    text;
    k      integer;
BEGIN
    IF _cron_error.cron IS NULL OR length(_cron_error.cron) > 200
       OR _cron_error.cron !~ '^[\sA-Za-z0-9*/,?#LW-]+$' THEN
        RETURN format('invalid cron expression %s', skiplock._show(_cron_error.cron));
    END IF;
    fields := regexp_split_to_array(btrim(_cron_error.cron), '\s+');
    IF cardinality(fields) = 6 THEN
        names := ARRAY['second', 'minute', 'hour', 'day-of-month', 'month', 'day-of-week'];
        lo := ARRAY[0, 0, 0, 1, 1, 0];
        hi := ARRAY[59, 59, 23, 31, 12, 7];
    ELSIF cardinality(fields) = 5 THEN
        names := ARRAY['minute', 'hour', 'day-of-month', 'month', 'day-of-week'];
        lo := ARRAY[0, 0, 1, 1, 0];
        hi := ARRAY[59, 23, 31, 12, 7];
    ELSE
        RETURN format('invalid cron expression %s: it has %s fields, not 5 or 6',
                      skiplock._show(_cron_error.cron), cardinality(fields));
    END IF;
    FOR k IN 1..cardinality(fields) LOOP
        FOREACH item IN ARRAY string_to_array(fields[k], ',') LOOP
            IF item = '' THEN
                RETURN format('%s field %s has an empty list item in %s', names[k],
                              skiplock._show(fields[k]), skiplock._show(_cron_error.cron));
            END IF;
            step := substring(item FROM '/(.*)$');
            IF step IS NOT NULL AND (step !~ '^[0-9]{1,9}$' OR step::integer < 1) THEN
                RETURN format('%s field %s has step %s; a step is a whole number of 1 or more, in %s',
                              names[k], skiplock._show(fields[k]), skiplock._show(step),
                              skiplock._show(_cron_error.cron));
            END IF;
            -- The numbers of the range (before any /step, and before # in day-of-week's n#k).
            FOR num IN SELECT m[1] FROM regexp_matches(split_part(split_part(item, '/', 1), '#', 1), '([0-9]+)', 'g') AS m
            LOOP
                IF length(num) > 9 OR num::integer NOT BETWEEN lo[k] AND hi[k] THEN
                    RETURN format('%s field %s is out of range %s-%s in %s', names[k], num, lo[k], hi[k],
                                  skiplock._show(_cron_error.cron));
                END IF;
            END LOOP;
        END LOOP;
    END LOOP;
    RETURN NULL;
END;
$$;

-- _check_cron: the expression, trimmed, or 22023 with what _cron_error found.
CREATE OR REPLACE FUNCTION skiplock._check_cron(cron text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
AS $$
DECLARE
    problem text := skiplock._cron_error(_check_cron.cron);
BEGIN
    IF problem IS NOT NULL THEN
        PERFORM skiplock._invalid(problem,
            'use 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first');
    END IF;
    RETURN btrim(_check_cron.cron);
END;
$$;

-- _check_tz: an IANA time zone name the server knows. Raises 22023.
CREATE OR REPLACE FUNCTION skiplock._check_tz(tz text)
RETURNS text
LANGUAGE plpgsql
STABLE
AS $$
BEGIN
    IF _check_tz.tz IS NULL OR NOT EXISTS (SELECT 1 FROM pg_timezone_names AS z WHERE z.name = _check_tz.tz) THEN
        PERFORM skiplock._invalid(format('unknown time zone %s', skiplock._show(_check_tz.tz)),
                                  'use an IANA name such as UTC or Europe/Paris');
    END IF;
    RETURN _check_tz.tz;
END;
$$;

-- upsert_schedule: create or change schedule `name`: enqueue `task` on `queue` with `args` at
-- every tick of `cron` in time zone `tz`. A new schedule starts from as_of (no ticks before it
-- are made up); changing an existing one keeps its last_tick, so no tick fires twice.
-- Bad input raises 22023 and changes nothing.
CREATE OR REPLACE FUNCTION skiplock.upsert_schedule(
    name         text,
    cron         text,
    task         text,
    queue        text        DEFAULT 'default',
    args         jsonb       DEFAULT '{}',
    tz           text        DEFAULT 'UTC',
    priority     integer     DEFAULT 0,
    max_attempts integer     DEFAULT 10,
    catch_up     interval    DEFAULT '1 hour',
    as_of        timestamptz DEFAULT now()
)
RETURNS skiplock.schedule
LANGUAGE plpgsql
AS $$
DECLARE
    s skiplock.schedule;
BEGIN
    IF NOT skiplock._is_task_name(upsert_schedule.name) THEN
        PERFORM skiplock._invalid(format('invalid schedule name %s', skiplock._show(upsert_schedule.name)),
            'schedule names follow the task name rules: 1-200 characters of letters, digits and _ . : - < >');
    END IF;
    PERFORM skiplock._check_job(upsert_schedule.queue, upsert_schedule.task, COALESCE(upsert_schedule.args, '{}'),
                                upsert_schedule.priority, NULL, upsert_schedule.max_attempts, NULL);
    IF upsert_schedule.catch_up IS NULL OR upsert_schedule.catch_up < interval '0'
       OR upsert_schedule.catch_up > interval '31 days' THEN
        PERFORM skiplock._invalid(format('catch_up must be between 0 and 31 days, got %s', upsert_schedule.catch_up));
    END IF;
    INSERT INTO skiplock.schedule AS x (name, cron, tz, task, queue, args, priority, max_attempts, catch_up,
                                        last_tick, created_at, updated_at)
    VALUES (upsert_schedule.name, skiplock._check_cron(upsert_schedule.cron), skiplock._check_tz(upsert_schedule.tz),
            upsert_schedule.task, upsert_schedule.queue, COALESCE(upsert_schedule.args, '{}'),
            COALESCE(upsert_schedule.priority, 0), COALESCE(upsert_schedule.max_attempts, 10),
            upsert_schedule.catch_up, upsert_schedule.as_of, upsert_schedule.as_of, upsert_schedule.as_of)
    ON CONFLICT ON CONSTRAINT schedule_pkey DO UPDATE
    SET cron = EXCLUDED.cron, tz = EXCLUDED.tz, task = EXCLUDED.task, queue = EXCLUDED.queue,
        args = EXCLUDED.args, priority = EXCLUDED.priority, max_attempts = EXCLUDED.max_attempts,
        catch_up = EXCLUDED.catch_up, updated_at = EXCLUDED.updated_at
    RETURNING x.* INTO s;
    RETURN s;
END;
$$;

-- fire_schedule: enqueue the given ticks of schedule `name` that are due (<= as_of), newer than
-- its last_tick and within its catch_up window, each as one job with run_at = its tick; move
-- last_tick past every due tick given (skipped ones too). Returns (tick, job_id) per job made.
-- Concurrency: any number of schedulers; the schedule's row lock serializes them and a tick at
-- or before last_tick is never enqueued again, so each tick becomes exactly one job. A paused
-- or deleted schedule fires nothing.
CREATE OR REPLACE FUNCTION skiplock.fire_schedule(
    name  text,
    ticks timestamptz[],
    as_of timestamptz DEFAULT now()
)
RETURNS TABLE (tick timestamptz, job_id bigint)
LANGUAGE plpgsql
AS $$
DECLARE
    s      skiplock.schedule;
    due    timestamptz[];
    fresh  timestamptz[];
BEGIN
    SELECT * INTO s FROM skiplock.schedule AS x WHERE x.name = fire_schedule.name FOR UPDATE;
    IF NOT FOUND OR s.paused THEN
        RETURN;
    END IF;
    SELECT array_agg(DISTINCT t ORDER BY t) INTO due
    FROM unnest(fire_schedule.ticks) AS t
    WHERE t > s.last_tick AND t <= fire_schedule.as_of;
    IF due IS NULL THEN
        RETURN;
    END IF;
    SELECT array_agg(t ORDER BY t) INTO fresh FROM unnest(due) AS t WHERE t >= fire_schedule.as_of - s.catch_up;
    UPDATE skiplock.schedule AS x SET last_tick = due[cardinality(due)] WHERE x.name = s.name;
    IF fresh IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT f.t, e.id
    FROM unnest(fresh) WITH ORDINALITY AS f(t, ord)
    JOIN skiplock.enqueue_many(ARRAY[s.queue], ARRAY[s.task], ARRAY[s.args], ARRAY[s.priority::integer],
                               fresh, NULL, ARRAY[s.max_attempts], NULL, fire_schedule.as_of)
         WITH ORDINALITY AS e(id, ord) ON e.ord = f.ord;
END;
$$;

-- pause_schedule / resume_schedule: stop and restart firing. Ticks missed while paused are made
-- up on resume only within catch_up. delete_schedule removes it. Each returns whether the
-- schedule exists.
CREATE OR REPLACE FUNCTION skiplock._set_schedule_paused(name text, paused boolean)
RETURNS boolean
LANGUAGE sql
AS $$
    WITH u AS (UPDATE skiplock.schedule AS x SET paused = _set_schedule_paused.paused, updated_at = now()
               WHERE x.name = _set_schedule_paused.name RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM u);
$$;

CREATE OR REPLACE FUNCTION skiplock.pause_schedule(name text)
RETURNS boolean
LANGUAGE sql
AS $$ SELECT skiplock._set_schedule_paused(pause_schedule.name, true); $$;

CREATE OR REPLACE FUNCTION skiplock.resume_schedule(name text)
RETURNS boolean
LANGUAGE sql
AS $$ SELECT skiplock._set_schedule_paused(resume_schedule.name, false); $$;

CREATE OR REPLACE FUNCTION skiplock.delete_schedule(name text)
RETURNS boolean
LANGUAGE sql
AS $$
    WITH d AS (DELETE FROM skiplock.schedule AS x WHERE x.name = delete_schedule.name RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM d);
$$;
