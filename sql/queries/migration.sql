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

-- name: migration_applied :many
SELECT version, name, checksum, applied_at
FROM skiplock.migration
ORDER BY version;

-- name: migration_record :exec
INSERT INTO skiplock.migration (version, name, checksum)
VALUES (%(version)s, %(name)s, %(checksum)s);

-- name: schema_exists :one
SELECT to_regclass('skiplock.migration') IS NOT NULL AS present;

-- name: grant_roles :many
SELECT role_name, granted
FROM skiplock._grant_roles();
