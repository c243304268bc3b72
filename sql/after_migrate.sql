-- Run by the migrator at the end of every migration that applied a versioned migration or a
-- changed file of sql/functions, in the same transaction. Each statement is idempotent.

-- The next days' history partitions, before the first job finishes (workers keep them ahead).
SELECT skiplock.ensure_partitions(3);

-- Privileges of the skiplock_producer, skiplock_worker and skiplock_monitor roles that exist,
-- covering functions and views created or replaced just now. Creates no role.
SELECT * FROM skiplock._grant_roles();

-- The webhook triggers match the active webhooks (their functions may have been replaced).
SELECT skiplock._webhooks_sync();
