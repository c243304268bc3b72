-- Named statements over the schedule functions (0003_schedules).

-- name: upsert_schedule :one
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
SELECT tick, job_id
FROM skiplock.fire_schedule(name => %(name)s::text, ticks => %(ticks)s::timestamptz[],
                            as_of => coalesce(%(as_of)s::timestamptz, now()));

-- name: list_schedules :many
SELECT s.*, now() AS db_now
FROM skiplock.schedule AS s
ORDER BY s.name;

-- name: pause_schedule :one
SELECT skiplock.pause_schedule(name => %(name)s::text) AS found;

-- name: resume_schedule :one
SELECT skiplock.resume_schedule(name => %(name)s::text) AS found;

-- name: delete_schedule :one
SELECT skiplock.delete_schedule(name => %(name)s::text) AS found;
