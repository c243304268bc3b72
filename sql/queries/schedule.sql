-- Named statements over the schedule functions (0003_schedules).

-- name: upsert_schedule :one
-- nullable: max_attempts
-- returns: name text, cron text, tz text, task text, queue text, args jsonb, priority smallint
-- returns: max_attempts integer, catch_up interval, paused boolean, last_tick timestamptz
-- returns: created_at timestamptz, updated_at timestamptz
SELECT *
FROM skiplock.upsert_schedule(
    name => %(name)s::text,
    cron => %(cron)s::text,
    task => %(task)s::text,
    queue => %(queue)s::text,
    args => %(args)s::jsonb,
    tz => %(tz)s::text,
    priority => %(priority)s::integer,
    max_attempts => %(max_attempts)s::integer,
    catch_up => %(catch_up)s::interval
);

-- name: fire_schedule :many
-- returns: tick timestamptz?, job_id bigint?
SELECT tick, job_id
FROM skiplock.fire_schedule(name => %(name)s::text, ticks => %(ticks)s::timestamptz[],
                            as_of => coalesce(%(as_of)s::timestamptz, now()));

-- name: list_schedules :many
-- returns: name text, cron text, tz text, task text, queue text, args jsonb, priority smallint
-- returns: max_attempts integer, catch_up interval, paused boolean, last_tick timestamptz
-- returns: created_at timestamptz, updated_at timestamptz, db_now timestamptz?
SELECT s.*, now() AS db_now
FROM skiplock.schedule AS s
ORDER BY s.name;

-- name: pause_schedule :one
-- returns: found boolean
SELECT skiplock.pause_schedule(name => %(name)s::text) AS found;

-- name: resume_schedule :one
-- returns: found boolean
SELECT skiplock.resume_schedule(name => %(name)s::text) AS found;

-- name: delete_schedule :one
-- returns: found boolean
SELECT skiplock.delete_schedule(name => %(name)s::text) AS found;
