-- name: migration_lock :exec
SELECT pg_advisory_xact_lock(7245839263515170101);

-- name: migration_bootstrap :exec
CREATE SCHEMA IF NOT EXISTS skiplock;
CREATE TABLE IF NOT EXISTS skiplock.migration (
    version    integer     NOT NULL PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
-- The files of sql/functions as last applied (repeatable migrations: re-applied when changed).
CREATE TABLE IF NOT EXISTS skiplock.migration_file (
    name       text        NOT NULL PRIMARY KEY,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: migration_applied :many
-- returns: version integer, name text, checksum text, applied_at timestamptz
SELECT version, name, checksum, applied_at
FROM skiplock.migration
ORDER BY version;

-- name: migration_record :exec
INSERT INTO skiplock.migration (version, name, checksum)
VALUES (%(version)s::integer, %(name)s::text, %(checksum)s::text);

-- name: migration_forget :exec
DELETE FROM skiplock.migration WHERE version = ANY(%(versions)s::integer[]);

-- name: migration_files_applied :many
-- returns: name text, checksum text, applied_at timestamptz
SELECT name, checksum, applied_at
FROM skiplock.migration_file
ORDER BY name;

-- name: migration_file_record :exec
INSERT INTO skiplock.migration_file (name, checksum)
VALUES (%(name)s::text, %(checksum)s::text)
ON CONFLICT (name) DO UPDATE SET checksum = excluded.checksum, applied_at = now();

-- name: migration_file_forget :exec
DELETE FROM skiplock.migration_file WHERE NOT (name = ANY(%(names)s::text[]));

-- name: migration_file_present :one
-- returns: present boolean
SELECT to_regclass('skiplock.migration_file') IS NOT NULL AS present;

-- name: schema_exists :one
-- returns: present boolean
SELECT to_regclass('skiplock.migration') IS NOT NULL AS present;

-- name: create_roles :exec
SELECT skiplock._create_roles();

-- name: grant_roles :many
-- returns: role_name text?, granted boolean?
SELECT role_name, granted
FROM skiplock._grant_roles();
